"""Midjourney's canvas tools under an upscaled image, over the local Discord: Zoom Out 2x / 1.5x / Custom,
Make Square, the four pans, Vary (Region) (a select, or a box in a form) and Upscale (Creative). Each is a
job like any other: charged, owner-only, answered after a restart, with its own provenance. The trained
`shapes` model is used where a picture must be judged (bot/shapes/analyser.py reads it back)."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from bot.service.provenance import read_parameters
from bot.shapes.analyser import analyse

# a wide prompt, so Make Square is offered too
FAMILIES = ["tiny", "tiny-xl", "tiny-sd3", "tiny-flux", "tiny-zimage"]


def png(message, index=0) -> Image.Image:
    return Image.open(io.BytesIO(message.attachments[index].data)).convert("RGB")


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def job_id_of(message) -> int:
    return int(re.findall(r"job #(\d+)", message.content)[-1])


async def upscaled(dreamgrid, user, prompt, index=1):
    _, grid = await dreamgrid.grid(user, prompt)
    _, big = await dreamgrid.click(user, grid, f"dg:upscale:{job_id_of(grid)}:{index}")
    return grid, big


def image_of(dreamgrid, job_id, index) -> Image.Image:
    return Image.open(dreamgrid.settings.data_dir / "images" / str(job_id) / f"{index}.png").convert("RGB")


@pytest.mark.parametrize("model", FAMILIES)
async def test_every_tool_runs_on_each_family_and_costs_what_it_makes(dreamgrid, model):
    store = dreamgrid.app.store
    alice = dreamgrid.discord.add_user("alice")
    grid, big = await upscaled(dreamgrid, alice, f"a harbour --ar 2:1 --model {model}")
    width, height = (await store.get_job(job_id_of(big))).recipe.width, (await store.get_job(job_id_of(big))).recipe.height
    job = job_id_of(big)
    assert {f"dg:{action}:{job}:0" for action in ("creative", "zoom2", "zoom15", "zoomc", "square", "panleft",
                                                   "panright", "panup", "pandown")} <= set(big.custom_ids())
    used = await store.used(alice.id)
    sizes = {}
    for action in ("zoom2", "square", "panleft", "panup", "creative"):
        _, made = await dreamgrid.click(alice, big, f"dg:{action}:{job}:0")
        sizes[action] = png(made).size
        assert f"`{model}`" in made.content
    select = await dreamgrid.discord.select(alice, big.id, f"dg:region:{job}", ["top-left"])
    region = await select.wait_original(lambda m: bool(m.attachments), timeout=60)

    assert sizes["zoom2"] == (2 * width, 2 * height)  # a grid of four at the image's own size
    assert sizes["square"] == (2 * width, 2 * width)  # padded to its long side
    assert sizes["panleft"][0] > 2 * width and sizes["panup"][1] > 2 * height  # the canvas grew
    assert sizes["creative"] == png(big).size  # one image, at the upscale's size
    assert png(region).size == (2 * width, 2 * height)
    assert await store.used(alice.id) == used + 4 * 5 + 1  # four grids and a region grid; one image


async def test_pan_keeps_every_source_pixel_and_extends_its_background(dreamgrid):
    bob = dreamgrid.discord.add_user("bob")
    grid, big = await upscaled(dreamgrid, bob, "a red circle on the right on a blue background --model shapes --seed 4")
    source = image_of(dreamgrid, job_id_of(grid), 1)  # the image at the size it was generated at (64x64)
    _, panned = await dreamgrid.click(bob, big, f"dg:panleft:{job_id_of(big)}:0")
    job = await dreamgrid.app.store.get_job(job_id_of(panned))
    assert (job.kind, job.recipe.canvas, job.recipe.width, job.recipe.height) == ("pan", "pan left", 96, 64)
    for index in range(1, 5):
        image = image_of(dreamgrid, job.id, index)
        assert np.array_equal(pixels(image)[:, 32:], pixels(source))  # the kept part, exactly
        strip = analyse(image.crop((0, 0, 32, 64)))
        assert strip.background_colour == "blue" and strip.shape is None  # no second circle

    text = read_parameters(panned.attachments[0].data)
    assert "Pan: left" in text and f"Dreamgrid job: {job.id}" in text


async def test_zoom_out_puts_the_picture_small_at_the_centre_of_its_own_background(dreamgrid):
    carol = dreamgrid.discord.add_user("carol")
    grid, big = await upscaled(dreamgrid, carol, "a yellow square in the middle on a green background --model shapes --seed 9")
    source = image_of(dreamgrid, job_id_of(grid), 1)
    _, zoomed = await dreamgrid.click(carol, big, f"dg:zoom2:{job_id_of(big)}:0")
    job_id = job_id_of(zoomed)
    inner = source.resize((32, 32), Image.Resampling.LANCZOS)
    for index in range(1, 5):
        image = image_of(dreamgrid, job_id, index)
        assert np.array_equal(pixels(image.crop((16, 16, 48, 48))), pixels(inner))
        seen = analyse(image)
        assert seen.background_colour == "green" and seen.shape_colour == "yellow"
    assert "Zoom: 2" in read_parameters(zoomed.attachments[0].data)


async def test_vary_region_repaints_only_the_region(dreamgrid):
    dave = dreamgrid.discord.add_user("dave")
    grid, big = await upscaled(dreamgrid, dave, "a lighthouse --seed 2")
    source = pixels(image_of(dreamgrid, job_id_of(grid), 1))
    select = await dreamgrid.discord.select(dave, big.id, f"dg:region:{job_id_of(big)}", ["bottom-right"])
    region = await select.wait_original(lambda m: bool(m.attachments), timeout=60)
    image = pixels(image_of(dreamgrid, job_id_of(region), 2))
    outside = np.ones(source.shape[:2], bool)
    outside[32:, 32:] = False
    assert np.array_equal(image[outside], source[outside])
    assert not np.array_equal(image[32:, 32:], source[32:, 32:])
    assert "Mask: bottom-right" in read_parameters(region.attachments[0].data)


async def test_custom_zoom_and_a_box_of_ones_own_come_from_forms(dreamgrid):
    erin = dreamgrid.discord.add_user("erin")
    grid, big = await upscaled(dreamgrid, erin, "a lighthouse --seed 5")
    shown = await dreamgrid.discord.click(erin, big.id, f"dg:zoomc:{job_id_of(big)}:0")
    assert (await shown.wait_modal())["custom_id"] == f"dg:canvas:zoom:{job_id_of(big)}"
    sent = await dreamgrid.discord.submit_modal(erin, shown, {"value": "1.25", "prompt": "a lighthouse at night"})
    zoomed = await sent.wait_original(lambda m: bool(m.attachments), timeout=60)
    job = await dreamgrid.app.store.get_job(job_id_of(zoomed))
    assert job.recipe.canvas == "zoom 1.25" and job.prompt == "a lighthouse at night"

    box = await dreamgrid.discord.select(erin, big.id, f"dg:region:{job_id_of(big)}", ["box"])
    await box.wait_modal()
    bad = await dreamgrid.discord.submit_modal(erin, box, {"value": "80,10,20,90", "prompt": "a lighthouse"})
    refused = await bad.wait_original(lambda m: not m.loading, timeout=30)
    assert refused.flags & 64 and "left before right" in refused.content
    box = await dreamgrid.discord.select(erin, big.id, f"dg:region:{job_id_of(big)}", ["box"])
    await box.wait_modal()
    good = await dreamgrid.discord.submit_modal(erin, box, {"value": "10,10,50,50", "prompt": "a lighthouse"})
    painted = await good.wait_original(lambda m: bool(m.attachments), timeout=60)
    assert (await dreamgrid.app.store.get_job(job_id_of(painted))).recipe.canvas == "region 10,10,50,50"


async def test_creative_upscale_differs_from_subtle_which_is_u(dreamgrid):
    frank = dreamgrid.discord.add_user("frank")
    grid, big = await upscaled(dreamgrid, frank, "a lighthouse --seed 6")
    _, creative = await dreamgrid.click(frank, big, f"dg:creative:{job_id_of(big)}:0")
    assert png(creative).size == png(big).size == (128, 128)  # 2x the grid's image
    assert not np.array_equal(pixels(png(creative)), pixels(png(big)))
    assert "Hires upscale: 2, Denoising strength: 0.3" in read_parameters(creative.attachments[0].data)
    assert f"dg:creative:{job_id_of(creative)}:0" not in creative.custom_ids()  # not again on itself
    assert f"dg:zoom2:{job_id_of(creative)}:0" in creative.custom_ids()  # the canvas tools are there


async def test_tools_are_the_owners_survive_a_restart_and_open_remix(dreamgrid):
    gina, mallory = dreamgrid.discord.add_user("gina"), dreamgrid.discord.add_user("mallory")
    grid, big = await upscaled(dreamgrid, gina, "a lighthouse --seed 8")
    job = job_id_of(big)
    await dreamgrid.restart()
    nope = await dreamgrid.discord.click(mallory, big.id, f"dg:panright:{job}:0")
    said = await nope.wait_original(lambda m: not m.loading, timeout=30)
    assert said.flags & 64 and await dreamgrid.app.store.used(mallory.id) == 0
    _, panned = await dreamgrid.click(gina, big, f"dg:panright:{job}:0")  # after the restart
    assert "Pan right" in panned.content

    await dreamgrid.app.accounts.update_preferences(gina.id, remix=True)
    shown = await dreamgrid.discord.click(gina, big.id, f"dg:zoom15:{job}:0")
    assert (await shown.wait_modal())["custom_id"] == f"dg:remix:zoom15:{job}:0"
    sent = await dreamgrid.discord.submit_modal(gina, shown, {"prompt": "a lighthouse in the fog"})
    zoomed = await sent.wait_original(lambda m: bool(m.attachments), timeout=60)
    made = await dreamgrid.app.store.get_job(job_id_of(zoomed))
    assert made.recipe.canvas == "zoom 1.5" and made.prompt == "a lighthouse in the fog"

    # 🔄 under a zoomed grid zooms again
    await dreamgrid.app.accounts.update_preferences(gina.id, remix=False)
    _, again = await dreamgrid.click(gina, zoomed, f"dg:reroll:{made.id}:0")
    rerolled = await dreamgrid.app.store.get_job(job_id_of(again))
    assert rerolled.recipe.canvas == "zoom 1.5" and rerolled.parent_job_id == job


async def test_a_canvas_job_that_fails_is_refunded_and_says_why(dreamgrid):
    hana = dreamgrid.discord.add_user("hana")
    grid, big = await upscaled(dreamgrid, hana, "a lighthouse --seed 1")
    used = await dreamgrid.app.store.used(hana.id)
    box = await dreamgrid.discord.select(hana, big.id, f"dg:region:{job_id_of(big)}", ["box"])
    await box.wait_modal()
    sent = await dreamgrid.discord.submit_modal(hana, box, {"value": "0,0,50,50", "prompt": "a lighthouse --model broken"})
    failed = await sent.wait_original(lambda m: "failed" in m.content, timeout=60)
    assert "refunded" in failed.content and not failed.attachments
    job = (await dreamgrid.app.store.recent_jobs(hana.id))[0]
    assert job.status == "failed" and job.kind == "region"
    assert await dreamgrid.app.store.used(hana.id) == used
