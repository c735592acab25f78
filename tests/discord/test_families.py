"""The Midjourney loop on every model family the engine serves, over the local Discord: /imagine, U, V,
Vary (Strong), 🔄, --ar and --no, each family from its tiny random-weight folder loaded with
from_pretrained; and what a family cannot do is refused privately, naming the model, before any charge."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

# model, pipeline, the grid for --ar 2:1 on a 64x64 pixel budget (each family's size rule: 8 for UNets,
# 16 for the transformers' 2x2 patches of 8x latents), the negative prompt it takes
FAMILIES = [
    ("tiny", "stable-diffusion", (176, 96), "fog"),
    ("tiny-xl", "stable-diffusion-xl", (176, 96), "fog"),
    ("tiny-sd3", "stable-diffusion-3", (192, 96), "fog"),
    ("tiny-flux", "flux", (192, 96), "fog"),  # FLUX.1-dev has no negative branch: --no runs true CFG
    ("tiny-zimage", "z-image", (192, 96), ""),  # Turbo runs without guidance: no --no (refused, below)
]


def png(message) -> Image.Image:
    (attachment,) = message.attachments
    return Image.open(io.BytesIO(attachment.data))


def job_id_of(message) -> int:
    return int(re.findall(r"job #(\d+)", message.content)[-1])


@pytest.mark.parametrize("model, pipeline, grid_size, negative", FAMILIES)
async def test_imagine_upscale_vary_and_reroll_on_each_family(dreamgrid, model, pipeline, grid_size, negative):
    assert dreamgrid.app.catalog.get(model).pipeline == pipeline
    alice = dreamgrid.discord.add_user("alice")
    no = f"--no {negative}" if negative else ""
    _, grid = await dreamgrid.grid(alice, f"a lighthouse --ar 2:1 {no} --chaos 40 --model {model}")
    assert png(grid).size == grid_size
    job = job_id_of(grid)

    _, upscaled = await dreamgrid.click(alice, grid, f"dg:upscale:{job}:2")
    assert png(upscaled).size == grid_size  # one image at twice its size: the grid's
    _, varied = await dreamgrid.click(alice, grid, f"dg:vary:{job}:3")
    _, strong = await dreamgrid.click(alice, upscaled, f"dg:strong:{job_id_of(upscaled)}:0")
    _, rerolled = await dreamgrid.click(alice, grid, f"dg:reroll:{job}:0")
    for message in (varied, strong, rerolled):
        assert png(message).size == grid_size and f"`{model}`" in message.content
    jobs = [await dreamgrid.app.store.get_job(job_id_of(m)) for m in (grid, upscaled, varied, strong, rerolled)]
    assert all(j.status == "done" and j.model == model and j.negative_prompt == negative for j in jobs)
    assert len({png(m).tobytes() for m in (grid, varied, strong, rerolled)}) == 4


async def refusal(dreamgrid, user, prompt):
    ix = await dreamgrid.discord.slash(user, "imagine", {"prompt": prompt})
    message = await ix.wait_original(lambda m: not m.loading, timeout=30)
    assert message.flags & 64, "a refusal is private"
    return message.content


@pytest.mark.parametrize("model, label", [("tiny-sd3", "SD 3.5"), ("tiny-flux", "FLUX")])
async def test_tile_is_refused_on_a_transformer_naming_the_model_and_costs_nothing(dreamgrid, model, label):
    bob = dreamgrid.discord.add_user("bob")
    said = await refusal(dreamgrid, bob, f"a brick wall --tile --model {model}")
    assert f"`{model}` ({label}) cannot tile" in said and "Remove --tile" in said
    assert await dreamgrid.app.store.used(bob.id) == 0
    assert await dreamgrid.app.store.jobs("WHERE owner_id = ?", (bob.id,)) == []


async def test_no_is_refused_where_a_model_runs_without_guidance(dreamgrid):
    dave = dreamgrid.discord.add_user("dave")
    said = await refusal(dreamgrid, dave, "a quiet harbour --no boats --model tiny-zimage")
    assert "`tiny-zimage` runs without guidance" in said and "Remove --no" in said
    assert await dreamgrid.app.store.used(dave.id) == 0


async def test_a_prompt_longer_than_t5_reads_is_refused_not_cut(dreamgrid):
    carol = dreamgrid.discord.add_user("carol")
    prompt = " ".join(["a tall red lighthouse on a rock"] * 10)  # 71 T5 tokens; tiny-sd3 reads 64
    said = await refusal(dreamgrid, carol, f"{prompt} --model tiny-sd3")
    assert "is 71 tokens long; model `tiny-sd3` reads at most 64" in said
    assert await dreamgrid.app.store.used(carol.id) == 0
    _, grid = await dreamgrid.grid(carol, " ".join(["a tall red lighthouse on a rock"] * 9) + " --model tiny-sd3")
    assert grid.attachments
