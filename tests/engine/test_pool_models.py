"""WorkerPool.load / unload: models change on the worker threads between jobs, and nothing queued fails."""

import asyncio
from dataclasses import replace

import pytest

from bot.engine import Catalog, CatalogError, EngineError, GenerateRequest, Started, WorkerPool


def request(model="tiny", steps=4) -> GenerateRequest:
    # Size, steps and guidance default to the tiny model's catalog values.
    return GenerateRequest(model=model, prompt="a red circle", seeds=(1,), width=64, height=64, steps=steps,
                           guidance=5.0)


async def within(awaitable, seconds=60):
    return await asyncio.wait_for(awaitable, seconds)


@pytest.fixture
async def pool(engine_catalog, engine_models_dir):
    # `other` is the tiny model under a second name: a second model to load, unload and switch to.
    other = replace(engine_catalog.get("tiny"), name="other")
    catalog = Catalog(default="tiny", models={**engine_catalog.models, "other": other})
    pool = WorkerPool(catalog, engine_models_dir, devices=["cpu"], torch_threads=1)
    await within(pool.start(preload=["tiny"]))
    yield pool
    await within(pool.close())


async def test_load_waits_for_the_running_job_then_reports_the_model_and_its_memory(pool):
    running = pool.submit(request(steps=40))
    async for event in running.events():
        if isinstance(event, Started):
            break

    (state,) = await within(pool.load("other"))

    assert running.done  # the job that was running finished first, untouched
    assert (await running.result()).model == "tiny"
    assert (state.name, state.device) == ("other", "cpu") and state.weight_bytes > 0
    assert {(s.name, s.device) for s in pool.loaded()} == {("tiny", "cpu"), ("other", "cpu")}


async def test_unload_frees_the_model_and_a_job_queued_for_it_still_runs(pool):
    await within(pool.load("other"))
    assert await within(pool.unload("other")) == ["cpu"]
    assert [s.name for s in pool.loaded()] == ["tiny"]
    assert await within(pool.unload("other")) == []  # nothing left to free

    result = await within(pool.submit(request(model="other")).result())
    assert result.model == "other"  # loaded again on demand


async def test_a_model_that_cannot_load_raises_and_the_loaded_ones_keep_serving(pool):
    with pytest.raises(EngineError):
        await within(pool.load("missing"))  # a hub id that is not in the offline cache
    assert [s.name for s in pool.loaded()] == ["tiny"]
    assert (await within(pool.submit(request()).result())).model == "tiny"


async def test_unknown_names_are_refused_before_any_worker_sees_them(pool):
    with pytest.raises(CatalogError):
        await pool.load("../../etc/passwd")
    with pytest.raises(CatalogError):
        await pool.unload("nope")
