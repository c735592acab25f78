"""Every family through the worker pool: two users' jobs share one pipeline call and each gets the images
it would get alone, a running job stops at the next step when cancelled, previews come from each latent
layout, and what a family cannot do is refused with the model's name."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bot.engine import Cancelled, EngineError, GenerateRequest, Preview, Progress, WorkerPool
from bot.engine.batching import batch_key
from bot.engine.catalog import load_catalog

MODELS = ["tiny", "tiny-xl", "tiny-sd3", "tiny-flux", "tiny-zimage"]


@pytest.fixture(scope="module")
def catalog(models_dir):
    return load_catalog(models_dir / "catalog.toml")


def request(model, seeds=(1,), prompt="a red circle", **fields) -> GenerateRequest:
    fields = {"steps": 3, "guidance": 3.5, **({} if "init_image" in fields else {"width": 64, "height": 64}),
              **fields}
    return GenerateRequest(model=model, prompt=prompt, seeds=tuple(seeds), **fields)


async def within(awaitable, seconds=120):
    return await asyncio.wait_for(awaitable, seconds)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


@pytest.fixture
async def pool(catalog, models_dir):
    pool = WorkerPool(catalog, models_dir, torch_threads=1, max_batch_jobs=4, adaptive_batching=False,
                      preview_interval=1e-9)
    await within(pool.start())
    yield pool
    await within(pool.close())


async def first(ticket, kind):
    async for event in ticket.events():
        if isinstance(event, kind):
            return event


@pytest.mark.parametrize("model", MODELS)
async def test_two_users_share_a_call_get_previews_and_a_cancel_stops_the_next_step(pool, model):
    holder = pool.submit(request(model, seeds=(1, 2, 3, 4), steps=999), owner="holder")
    preview = await within(first(holder, Preview))
    assert preview.image.size == (2 * 32, 2 * 32)  # a 2x2 grid at half the images' size
    alice = pool.submit(request(model, seeds=(1, 2), negative_prompt="blue"), owner="alice")
    bob = pool.submit(request(model, seeds=(3,), prompt="a blue square", negative_prompt="red"), owner="bob")
    holder.cancel()
    with pytest.raises(Cancelled):
        await within(holder.result(), 30)  # 999 steps, stopped at the next one

    results = [await within(ticket.result()) for ticket in (alice, bob)]
    assert [result.batched for result in results] == [2, 2]
    alone = await within(pool.submit(request(model, seeds=(3,), prompt="a blue square",
                                             negative_prompt="red"), owner="bob").result())
    assert alone.batched == 1
    assert np.abs(pixels(results[1].images[0]) - pixels(alone.images[0])).mean() < 0.5  # < 0.5/255


async def test_flux_jobs_with_and_without_a_negative_prompt_never_share_a_call(pool, catalog):
    flux = catalog.get("tiny-flux").family
    plain, negative = request("tiny-flux"), request("tiny-flux", negative_prompt="fog")
    assert batch_key(plain, flux) != batch_key(negative, flux)  # true CFG: a second pass for the one only
    sd = catalog.get("tiny").family
    assert batch_key(request("tiny"), sd) == batch_key(request("tiny", negative_prompt="fog"), sd)

    holder = pool.submit(request("tiny-flux", steps=999), owner="holder")
    await within(first(holder, Progress))
    tickets = [pool.submit(r, owner=owner) for r, owner in ((plain, "alice"), (negative, "bob"))]
    holder.cancel()
    results = [await within(ticket.result()) for ticket in tickets]
    assert [result.batched for result in results] == [1, 1]
    assert not np.array_equal(pixels(results[0].images[0]), pixels(results[1].images[0]))  # --no did something


@pytest.mark.parametrize("model", ["tiny-sd3", "tiny-flux", "tiny-zimage"])
async def test_chaos_and_img2img_keep_the_size_on_transformer_families(pool, model):
    calm = await within(pool.submit(request(model, seeds=(1, 2, 3, 4), width=96, height=48)).result())
    wild = await within(pool.submit(request(model, seeds=(1, 2, 3, 4), width=96, height=48,
                                            shared_noise=0.5)).result())
    assert all(image.size == (96, 48) for image in calm.images + wild.images)
    # image 0 keeps its own noise; the others take half of theirs from it
    assert np.array_equal(pixels(calm.images[0]), pixels(wild.images[0]))
    assert not np.array_equal(pixels(calm.images[1]), pixels(wild.images[1]))
    varied = await within(pool.submit(request(model, init_image=calm.images[0], strength=0.6)).result())
    assert varied.images[0].size == (96, 48)  # not the pipeline's 1024 (FLUX) or sample size (SD3) default


@pytest.mark.parametrize("model, label", [("tiny-sd3", "SD 3.5"), ("tiny-flux", "FLUX"), ("tiny-zimage", "Z-Image")])
async def test_a_transformer_refuses_tile_and_an_odd_source_size(pool, model, label):
    with pytest.raises(EngineError, match=rf"model `{model}` \({label}\) cannot tile"):
        await within(pool.submit(request(model, tile=True)).result())
    from PIL import Image
    with pytest.raises(EngineError, match="multiples of 16"):
        await within(pool.submit(request(model, init_image=Image.new("RGB", (72, 64)))).result())


@pytest.mark.parametrize("model, lora", [("tiny", "tiny-kohya"), ("tiny-flux", "tiny-flux-style")])
async def test_a_lora_job_and_a_plain_job_never_share_a_call(pool, model, lora):
    plain, styled = request(model), request(model, loras=((lora, 1.0),))
    assert batch_key(plain) != batch_key(styled)
    holder = pool.submit(request(model, steps=999), owner="holder")
    await within(first(holder, Progress))
    tickets = [pool.submit(r, owner=owner) for r, owner in ((plain, "alice"), (styled, "bob"), (plain, "carol"))]
    holder.cancel()
    results = [await within(ticket.result()) for ticket in tickets]
    assert [result.batched for result in results] == [2, 1, 2]  # alice and carol together, bob alone
    assert results[1].loras[0][:2] == (lora, 1.0) and results[0].loras == ()
    assert not np.array_equal(pixels(results[0].images[0]), pixels(results[1].images[0]))
    assert np.array_equal(pixels(results[0].images[0]), pixels(results[2].images[0]))


async def test_a_lora_for_another_family_fails_alone(pool):
    with pytest.raises(EngineError, match="tiny-xl-style"):
        await within(pool.submit(request("tiny", loras=(("tiny-xl-style", 1.0),))).result())
    assert (await within(pool.submit(request("tiny")).result())).images  # the model is fine after it


def test_a_dedicated_inpainting_model_paints_the_canvas_and_keeps_the_rest(catalog, models_dir):
    from dataclasses import replace

    from PIL import Image

    from bot.engine.pipelines import LoadedModel

    model = LoadedModel(catalog.get("tiny-inpainting"), models_dir, "cpu")
    assert model.txt2img.unet.config.in_channels == 4 and model.inpaint.unet.config.in_channels == 9
    source = Image.new("RGB", (64, 64), (20, 90, 200))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    result = model.run(request("tiny-inpainting", seeds=(1, 2), init_image=source, mask_image=mask, strength=1.0),
                       lambda done, total: None)
    for image in result.images:
        assert np.array_equal(pixels(image)[:, 32:], pixels(source)[:, 32:])  # kept, exactly
        assert not np.array_equal(pixels(image)[:, :32], pixels(source)[:, :32])
    with pytest.raises(EngineError, match="not an inpainting model"):
        LoadedModel(replace(catalog.get("tiny"), name="odd", inpaint_source="tiny-sd"), models_dir, "cpu")
