"""Pictures in, over the local Discord (which serves uploads and the bot's own images from its CDN route):
image prompts with --iw, --sref/--oref through an IP-Adapter, /blend and /describe. Each is charged like any
job, survives a restart without fetching again, and every bad picture is a private refusal that charges
nothing. The trained `shapes` model is used where a picture must be judged (bot/shapes/analyser.py)."""

from __future__ import annotations

import dataclasses
import io
import random
import re

import pytest
from PIL import Image

from bot.engine import png_bytes
from bot.service.provenance import read_parameters
from bot.service.retention import prune_images
from bot.shapes.analyser import analyse
from bot.shapes.world import make_example
from bot.store import utcnow

SOURCE = dict(shape="square", shape_colour="green", background_colour="white", position="center")
# Names the shape only: the colours come from the image prompt, or (at --iw 0) from wherever the model goes.
PROMPT = "a square --model shapes"


def job_id_of(message) -> int:
    return int(re.findall(r"job #(\d+)", message.content)[-1])


def images_of(dreamgrid, job_id) -> list[Image.Image]:
    folder = dreamgrid.settings.data_dir / "images" / str(job_id)
    return [Image.open(folder / f"{index}.png").convert("RGB") for index in range(1, 5)]


def share(images, attribute, value) -> float:
    return sum(getattr(analyse(image), attribute) == value for image in images) / len(images)


def source_png(seed=3, **fixed) -> bytes:
    image, _ = make_example(seed, **{**SOURCE, **fixed})
    return png_bytes(image)


async def imagine(dreamgrid, user, prompt, image=None):
    options = {"prompt": prompt, **({"image": image} if image is not None else {})}
    ix = await dreamgrid.discord.slash(user, "imagine", options)
    return ix, await ix.wait_original(lambda m: bool(m.attachments) or "❌" in m.content, timeout=90)


async def refused(dreamgrid, user, command, options) -> str:
    """The private answer: the first response, or (after a public "thinking…", deleted) a followup."""
    ix = await dreamgrid.discord.slash(user, command, options)

    def answer():
        messages = [ix.original] if ix.original is not None else []
        return next((m for m in [*messages, *ix.followups] if not m.deleted and m.content), None)

    message = await dreamgrid.discord.wait_until(answer, 30, "a refusal")
    assert message.flags & 64, f"a refusal is private: {message.content}"
    return message.content


async def test_an_image_prompt_keeps_its_colours_at_iw_2_and_is_free_at_iw_0(dreamgrid):
    d = dreamgrid.discord
    alice = d.add_user("alice")
    up = d.upload("source.png", source_png())
    _, kept = await imagine(dreamgrid, alice, f"{PROMPT} --iw 2 --seed 11", up)
    _, free = await imagine(dreamgrid, alice, f"{PROMPT} --iw 0 --seed 11", d.upload("source.png", source_png()))
    kept_images, free_images = images_of(dreamgrid, job_id_of(kept)), images_of(dreamgrid, job_id_of(free))
    assert share(kept_images, "background_colour", "white") >= 0.75
    assert share(kept_images, "shape_colour", "green") >= 0.75
    assert share(free_images, "background_colour", "white") <= 0.25  # free: the colours are the model's own
    assert share(free_images, "shape", "square") >= 0.75  # and the prompt still holds
    assert "🖼️ image prompt" in kept.content and "--iw 2" in kept.content
    job = await dreamgrid.app.store.get_job(job_id_of(kept))
    digest = job.recipe.image_prompts[0]
    assert (dreamgrid.settings.data_dir / "sources" / digest[:2] / f"{digest}.png").is_file()
    text = read_parameters(dreamgrid.settings.data_dir / "images" / str(job.id) / "grid.png")
    assert f"Image prompt: {digest[:12]}, Image weight: 2" in text
    # The same upload twice is kept once (content-addressed).
    assert len(list((dreamgrid.settings.data_dir / "sources").glob("*/*.png"))) == 1
    assert await dreamgrid.app.store.used(alice.id) == 8


async def test_reroll_keeps_the_image_prompt_across_a_restart_without_fetching_it_again(dreamgrid):
    d = dreamgrid.discord
    bob = d.add_user("bob")
    _, grid = await imagine(dreamgrid, bob, f"{PROMPT} --iw 2", d.upload("source.png", source_png()))
    await dreamgrid.restart()
    d.faults.fail(None, status=404, path=r"/ephemeral-attachments/.*", cdn=True)  # the upload's link expired
    _, again = await dreamgrid.click(bob, grid, f"dg:reroll:{job_id_of(grid)}:0")
    job = await dreamgrid.app.store.get_job(job_id_of(again))
    assert job.recipe.image_prompts == (await dreamgrid.app.store.get_job(job_id_of(grid))).recipe.image_prompts
    assert share(images_of(dreamgrid, job.id), "background_colour", "white") >= 0.75


async def test_a_remixed_prompt_keeps_the_pictures_it_does_not_replace(dreamgrid):
    d = dreamgrid.discord
    mia = d.add_user("mia")
    await dreamgrid.app.accounts.update_preferences(mia.id, remix=True)
    _, grid = await imagine(dreamgrid, mia, f"{PROMPT} --iw 2", d.upload("source.png", source_png()))
    shown = await d.click(mia, grid.id, f"dg:reroll:{job_id_of(grid)}:0")
    await shown.wait_modal()
    ix = await d.submit_modal(mia, shown, {"prompt": "a square --iw 3 --model shapes"})
    remixed = await ix.wait_original(lambda m: bool(m.attachments), timeout=60)
    store = dreamgrid.app.store
    job, parent = await store.get_job(job_id_of(remixed)), await store.get_job(job_id_of(grid))
    assert job.recipe.image_prompts == parent.recipe.image_prompts and job.recipe.image_weight == 3


async def test_a_link_to_an_image_on_discord_is_an_image_prompt_and_other_links_are_refused(dreamgrid):
    d = dreamgrid.discord
    carol = d.add_user("carol")
    _, grid = await imagine(dreamgrid, carol, "a green square on a white background --model shapes")
    link = grid.attachments[0].url  # the bot's own grid, on Discord's CDN
    _, linked = await imagine(dreamgrid, carol, f"{link} {PROMPT} --iw 2")
    assert "🖼️ image prompt" in linked.content
    used = await dreamgrid.app.store.used(carol.id)
    for bad in ("https://example.com/cat.png", "http://127.0.0.1:9/cat.png", "https://cdn.discordapp.com@evil.example/x.png"):
        text = await refused(dreamgrid, carol, "imagine", {"prompt": f"{bad} a cat --model shapes"})
        assert "only reads images uploaded to Discord" in text
    text = await refused(dreamgrid, carol, "imagine", {"prompt": "a cat --iw 2 --model shapes"})
    assert "`--iw`" in text and "has none" in text
    assert await dreamgrid.app.store.used(carol.id) == used  # nothing charged


async def test_bad_uploads_are_refused_privately_and_charge_nothing(dreamgrid):
    d = dreamgrid.discord
    dave = d.add_user("dave")
    text = await refused(dreamgrid, dave, "imagine", {"prompt": "a cat", "image": d.upload("notes.png", b"hello")})
    assert "PNG, JPEG, WebP or GIF" in text and "/" not in text.split("`")[0]
    bmp = io.BytesIO()
    Image.new("RGB", (8, 8)).save(bmp, format="BMP")
    text = await refused(dreamgrid, dave, "imagine", {"prompt": "a cat", "image": d.upload("x.bmp", bmp.getvalue())})
    assert "PNG, JPEG, WebP or GIF" in text
    d.faults.redirect("http://169.254.169.254/latest/meta-data", path=r"/ephemeral-attachments/.*")
    text = await refused(dreamgrid, dave, "imagine", {"prompt": "a cat", "image": d.upload("a.png", source_png())})
    assert "leads away from Discord's CDN" in text
    d.faults.chunked(path=r"/ephemeral-attachments/.*", body=b"\0" * 30 * 2**20)  # no length, too long
    text = await refused(dreamgrid, dave, "imagine", {"prompt": "a cat", "image": d.upload("b.png", source_png())})
    assert "is larger than 25 MB, the most the bot reads" in text
    assert await dreamgrid.app.store.used(dave.id) == 0
    assert await dreamgrid.app.store.active_jobs(dave.id) == []


@pytest.mark.parametrize("dreamgrid", [{"max_image_mb": 0.001}], indirect=True)
async def test_an_upload_over_the_size_limit_is_refused_before_it_is_downloaded(dreamgrid):
    d = dreamgrid.discord
    erin = d.add_user("erin")
    noise = Image.frombytes("RGB", (64, 64), random.Random(1).randbytes(64 * 64 * 3))  # ~12 kB as a PNG
    text = await refused(dreamgrid, erin, "imagine", {"prompt": "a cat", "image": d.upload("big.png", png_bytes(noise))})
    assert "MB; the bot reads images up to 0.001 MB" in text
    assert await dreamgrid.app.store.used(erin.id) == 0


async def test_references_are_refused_by_name_on_a_model_without_an_ip_adapter(dreamgrid):
    d = dreamgrid.discord
    frank = d.add_user("frank")
    _, grid = await imagine(dreamgrid, frank, "a green square on a white background --model shapes")
    text = await refused(dreamgrid, frank, "imagine",
                         {"prompt": f"a cat --model shapes --sref {grid.attachments[0].url}"})
    assert "Model `shapes` has no IP-Adapter" in text and "`tiny-ip`" in text


async def test_style_and_object_references_change_the_grid_and_weight_0_changes_nothing(dreamgrid):
    d = dreamgrid.discord
    gina = d.add_user("gina")
    _, plain = await imagine(dreamgrid, gina, "a harbour --model tiny-ip --seed 5")
    link = plain.attachments[0].url
    _, styled = await imagine(dreamgrid, gina, f"a harbour --model tiny-ip --seed 5 --sref {link}")
    _, none = await imagine(dreamgrid, gina, f"a harbour --model tiny-ip --seed 5 --sref {link} --sw 0")
    _, both = await imagine(dreamgrid, gina, f"a harbour --model tiny-ip --seed 5 --sref {link} --oref {link} --ow 300")
    grids = [images_of(dreamgrid, job_id_of(m)) for m in (plain, styled, none, both)]
    assert grids[1][0].tobytes() != grids[0][0].tobytes()  # the style reference changes the picture
    assert grids[2][0].tobytes() == grids[0][0].tobytes()  # --sw 0 is no reference at all
    assert grids[3][0].tobytes() != grids[1][0].tobytes()
    assert "🎨 style reference · 📌 object reference" in both.content
    text = read_parameters(dreamgrid.settings.data_dir / "images" / str(job_id_of(both)) / "grid.png")
    assert "Style reference: " in text and "Object weight: 300" in text


async def test_a_random_style_code_is_shown_and_reusable(dreamgrid):
    d = dreamgrid.discord
    hal = d.add_user("hal")
    _, drawn = await imagine(dreamgrid, hal, "a harbour --model tiny-ip --seed 5 --sref random")
    code = int(re.search(r"--sref (\d+)", drawn.content)[1])
    _, again = await imagine(dreamgrid, hal, f"a harbour --model tiny-ip --seed 5 --sref {code}")
    _, other = await imagine(dreamgrid, hal, f"a harbour --model tiny-ip --seed 5 --sref {(code + 1) % 2**32}")
    first, second, third = (images_of(dreamgrid, job_id_of(m))[0].tobytes() for m in (drawn, again, other))
    assert first == second != third


async def test_blend_mixes_two_pictures_into_a_grid(dreamgrid):
    d = dreamgrid.discord
    ivy = d.add_user("ivy")
    await dreamgrid.app.accounts.update_preferences(ivy.id, model="shapes")  # /blend takes the /settings model
    ups = [d.upload("a.png", source_png(1, shape="circle", shape_colour="red", background_colour="yellow")),
           d.upload("b.png", source_png(2, shape="square", shape_colour="red", background_colour="yellow"))]
    ix = await d.slash(ivy, "blend", {"image1": ups[0], "image2": ups[1], "dimensions": "landscape"})
    grid = await ix.wait_original(lambda m: bool(m.attachments), timeout=90)
    job = await dreamgrid.app.store.get_job(job_id_of(grid))
    assert job.kind == "blend" and len(job.recipe.image_prompts) == 2 and job.recipe.width > job.recipe.height
    assert "Blend of 2 images" in grid.content
    images = images_of(dreamgrid, job.id)
    assert share(images, "background_colour", "yellow") >= 0.75  # both had it: the blend keeps it
    text = read_parameters(dreamgrid.settings.data_dir / "images" / str(job.id) / "grid.png")
    assert 'Blend: "latent interpolation of ' in text
    assert await dreamgrid.app.store.used(ivy.id) == 4
    text = await refused(dreamgrid, ivy, "blend", {"image1": d.upload("a.png", b"nope"), "image2": ups[1]})
    assert "Image 1 (`a.png`)" in text and "PNG, JPEG, WebP or GIF" in text


async def test_describe_gives_four_prompts_whose_buttons_imagine_them(dreamgrid):
    d = dreamgrid.discord
    jane, kim = d.add_user("jane"), d.add_user("kim")
    ix = await d.slash(jane, "describe", {"image": d.upload("source.png", source_png())})
    answer = await ix.wait_original(lambda m: "1." in m.content, timeout=60)
    prompts = re.findall(r"\*\*\d\.\*\* (.+)", answer.content)
    assert len(prompts) == 4 and len(set(prompts)) == 4
    assert all("green" in p and "square" in p and "white" in p for p in prompts)
    buttons = [cid for cid in answer.custom_ids() if cid.startswith("dg:describe:")]
    assert len(buttons) == 4
    await dreamgrid.restart()  # the answer is in SQLite: its buttons outlive the bot
    other = await d.click(kim, answer.id, buttons[0])
    assert "run /describe on your own image" in (await other.wait_original(lambda m: bool(m.content), timeout=10)).content
    _, grid = await dreamgrid.click(jane, answer, buttons[1])
    images = images_of(dreamgrid, job_id_of(grid))
    assert share(images, "background_colour", "white") >= 0.75 and share(images, "shape", "square") >= 0.75
    text = await refused(dreamgrid, jane, "describe", {"link": "https://example.com/x.png"})
    assert "only reads images uploaded to Discord" in text

    # A describer folder that holds none (an operator's mistake): a private message that says so, no path.
    models = dreamgrid.app.catalog.models
    models["shapes"] = dataclasses.replace(shapes := models["shapes"], describer="no-such-describer")
    try:
        text = await refused(dreamgrid, jane, "describe", {"image": d.upload("source.png", source_png())})
    finally:
        models["shapes"] = shapes
    assert "could not be described: not a describer: found nothing there" in text and "tell an admin" in text
    assert str(dreamgrid.settings.models_dir) not in text


async def test_retention_deletes_pictures_no_kept_job_uses(dreamgrid):
    d = dreamgrid.discord
    leo = d.add_user("leo")
    await imagine(dreamgrid, leo, f"{PROMPT} --iw 2", d.upload("source.png", source_png()))
    sources = dreamgrid.settings.data_dir / "sources"
    assert len(list(sources.glob("*/*.png"))) == 1
    from datetime import timedelta
    store, data = dreamgrid.app.store, dreamgrid.settings.data_dir
    await prune_images(store, data, days=30)
    assert len(list(sources.glob("*/*.png"))) == 1  # its job keeps its images: the picture stays
    await prune_images(store, data, days=30, now=utcnow() + timedelta(days=31))
    assert list(sources.glob("*/*.png")) == []
