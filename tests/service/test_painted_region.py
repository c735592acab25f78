"""Vary (Region) with a brush, at the service's door (`Jobs.paint_region`), no Discord: the painted mask is
kept by digest in the recipe (retention keeps it), the painted area is repainted and every pixel outside it
is the source's, exactly, as the region select's jobs; a 🔄 paints the same mask again; masks that paint
nothing, everything, or another shape are refused with what to do; and the one ownership rule."""

from __future__ import annotations

import dataclasses
import io
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bot.app import App
from bot.recipe import JobKind, JobStatus
from bot.service import Requester, UserError
from bot.service.actions import ACTIONS, acting_for, may_act_on
from bot.service.provenance import read_parameters
from bot.service.sources import SourceImages
from bot.settings import Settings
from bot.store.pictures import Pictures
from bot.web.actions import PageOnly

ALICE = Requester(user_id=11, name="alice", guild_id=5, channel_id=6)


@pytest.fixture
async def app(tmp_path, models_dir):
    settings = dataclasses.replace(Settings.load(env={}, env_file=None), data_dir=tmp_path / "data",
                                   models_dir=models_dir, web_port=0, progress_interval=0.0,
                                   preview_interval=0.0, daily_images=100)
    opened = await App.open(settings)
    yield opened
    await opened.close()


async def run(app, accepted):
    """Start an accepted job with no one listening but the page, and wait for its end."""
    assert not isinstance(accepted, list) or len(accepted) == 1
    job = accepted[0] if isinstance(accepted, list) else accepted
    await app.jobs.start(job, PageOnly())
    return await app.jobs.get(job.id)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


async def upscaled(app):
    grid = await run(app, await app.jobs.imagine(ALICE, "a lighthouse --seed 2"))
    big = await run(app, await app.jobs.upscale(ALICE, grid, 1))
    assert (grid.status, big.status) == (JobStatus.DONE, JobStatus.DONE)
    return grid, big


async def test_a_painted_mask_repaints_its_area_and_keeps_every_other_pixel(app):
    grid, big = await upscaled(app)
    width, height = big.recipe.width * 2, big.recipe.height * 2  # painted on the upscaled image (128x128)
    painted = Image.new("L", (width, height), 0)
    ImageDraw.Draw(painted).ellipse((10, 14, 70, 60), fill=255)  # a blob near the top left
    used = await app.store.used(ALICE.user_id)

    job = await run(app, await app.jobs.paint_region(ALICE, big, png(painted), "a lighthouse at night"))

    assert job.status is JobStatus.DONE, job.error
    assert job.delivered_at is not None and job.message_id is None  # shown by the page alone: no message
    assert (job.kind, job.recipe.canvas, job.parent_job_id) == (JobKind.REGION, "region painted", big.id)
    assert job.prompt == "a lighthouse at night"  # the prompt goes through Remix, as in the Discord form
    assert await app.store.used(ALICE.user_id) == used + 4  # a grid, as every Vary (Region)
    sources = SourceImages(app.settings.data_dir)
    mask = np.asarray(sources.open(job.recipe.mask).convert("L"))  # kept by digest, at the generation size
    assert mask.shape == (big.recipe.height, big.recipe.width) and set(np.unique(mask)) == {0, 255}
    expected = np.asarray(painted.resize((64, 64), Image.Resampling.BILINEAR)) >= 128
    assert np.array_equal(mask == 255, expected)

    source = pixels(app.settings.data_dir / "images" / str(grid.id) / "1.png")
    keep, paint = mask == 0, mask == 255
    for index in range(1, 5):
        image = pixels(app.settings.data_dir / "images" / str(job.id) / f"{index}.png")
        assert np.array_equal(image[keep], source[keep])  # outside the mask: the source's pixels, exactly
        assert not np.array_equal(image[paint], source[paint])  # inside: repainted
    text = read_parameters(app.jobs.result_file(job))
    assert f"Mask: painted {job.recipe.mask[:12]}" in text
    assert job.recipe.mask in await Pictures(app.store).in_use(datetime.now(timezone.utc) + timedelta(days=1))

    again = await run(app, await app.jobs.reroll(ALICE, job))  # 🔄 paints the same mask again
    assert (again.kind, again.recipe.canvas, again.recipe.mask) == (JobKind.REGION, "region painted", job.recipe.mask)
    assert again.status is JobStatus.DONE
    vary = await app.jobs.vary(ALICE, job, 2, "subtle")  # V of a region grid is a plain variation
    assert vary.recipe.mask is None and vary.recipe.canvas is None


async def test_masks_that_cannot_be_painted_are_refused_with_what_to_do(app):
    grid, big = await upscaled(app)
    used = await app.store.used(ALICE.user_id)
    cases = {
        "is empty": Image.new("L", (128, 128), 0),
        "covers the whole image": Image.new("L", (128, 128), 255),
        "does not have the image's shape": Image.new("L", (128, 64), 255),
    }
    for why, mask in cases.items():
        with pytest.raises(UserError, match=why):
            await app.jobs.paint_region(ALICE, big, png(mask))
    with pytest.raises(UserError, match="not a picture"):
        await app.jobs.paint_region(ALICE, big, b"not a png")
    stripe = Image.new("L", (128, 128), 0)
    stripe.paste(255, (0, 0, 128, 30))
    with pytest.raises(UserError, match="is a grid"):
        await app.jobs.paint_region(ALICE, grid, png(stripe))
    # The Discord box form cannot ask for a painted region it has no mask for.
    with pytest.raises(UserError, match="needs its mask"):
        await app.jobs.canvas(ALICE, big, "region painted", "a lighthouse")
    assert await app.store.used(ALICE.user_id) == used  # nothing charged


async def test_the_ownership_rule_and_the_action_table_are_the_services(app):
    grid, big = await upscaled(app)
    assert may_act_on(grid, ALICE.user_id, is_admin=False)
    assert not may_act_on(grid, 99, is_admin=False)
    assert may_act_on(grid, 99, is_admin=True)
    assert ACTIONS["upscale"].fits(grid, 2) and not ACTIONS["upscale"].fits(grid, 5)
    assert not ACTIONS["upscale"].fits(big, 1) and ACTIONS["subtle"].fits(big, 0)
    assert not ACTIONS["reroll"].fits(big, 0) and not ACTIONS["vary"].fits(grid, 0)
    who = acting_for(Requester(user_id=99, name="admin", guild_id=None, channel_id=0), grid)
    assert (who.user_id, who.guild_id, who.channel_id) == (99, grid.guild_id, grid.channel_id)
