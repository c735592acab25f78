"""The Midjourney loop on every model family the engine serves, over the local Discord: /imagine, U, V,
🔄, --ar and --no, each family from its tiny random-weight folder loaded with from_pretrained."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

FAMILIES = [("tiny", "stable-diffusion"), ("tiny-xl", "stable-diffusion-xl")]


def png(message) -> Image.Image:
    (attachment,) = message.attachments
    return Image.open(io.BytesIO(attachment.data))


def job_id_of(message) -> int:
    return int(re.findall(r"job #(\d+)", message.content)[-1])


@pytest.mark.parametrize("model, pipeline", FAMILIES)
async def test_imagine_upscale_vary_and_reroll_on_each_family(dreamgrid, model, pipeline):
    assert dreamgrid.app.catalog.get(model).pipeline == pipeline
    alice = dreamgrid.discord.add_user("alice")
    _, grid = await dreamgrid.grid(alice, f"a lighthouse --ar 2:1 --no fog --model {model}")
    assert png(grid).size == (176, 96)  # four 88x48 images: the family's size rule on its pixel budget
    job = job_id_of(grid)

    _, upscaled = await dreamgrid.click(alice, grid, f"dg:upscale:{job}:2")
    assert png(upscaled).size == (176, 96)
    _, varied = await dreamgrid.click(alice, grid, f"dg:vary:{job}:3")
    _, rerolled = await dreamgrid.click(alice, grid, f"dg:reroll:{job}:0")
    for message in (varied, rerolled):
        assert png(message).size == (176, 96) and f"`{model}`" in message.content
    jobs = [await dreamgrid.app.store.get_job(job_id_of(m)) for m in (grid, upscaled, varied, rerolled)]
    assert all(j.status == "done" and j.model == model and j.negative_prompt == "fog" for j in jobs)
