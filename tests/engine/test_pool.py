"""WorkerPool end to end: real pipelines on a real worker thread, driven from the event loop."""

import asyncio
import threading

import pytest
import torch
from PIL import Image

from bot.engine import (
    Cancelled,
    CatalogError,
    EngineError,
    GenerateRequest,
    Progress,
    Started,
    UpscaleRequest,
    WorkerPool,
    make_grid,
)

LONG = 200  # steps for a task that must still be running when we cancel it (~0.03 s a step)
# The tiny model's catalog values: the engine takes requests fully resolved.
TINY = {"steps": 4, "guidance": 5.0}
TINY_SIZE = {"width": 64, "height": 64}  # txt2img only: img2img takes the init image's size


def request(seeds=(1,), **fields) -> GenerateRequest:
    fields = {**TINY, **({} if "init_image" in fields else TINY_SIZE), **fields}
    return GenerateRequest(model=fields.pop("model", "tiny"), prompt="a red circle", seeds=tuple(seeds), **fields)


async def within(awaitable, seconds=60):
    return await asyncio.wait_for(awaitable, seconds)


async def collect(ticket) -> list:
    return [event async for event in ticket.events()]


async def next_event(events, kind):
    async for event in events:
        if isinstance(event, kind):
            return event
    raise AssertionError(f"the stream ended before a {kind.__name__} event")


@pytest.fixture
async def pool(engine_catalog, engine_models_dir):
    pool = WorkerPool(engine_catalog, engine_models_dir, devices=["cpu"], torch_threads=1)
    await within(pool.start(preload=["tiny"]))
    yield pool
    await within(pool.close())


async def test_a_grid_of_four_with_progress_events(pool):
    ticket = pool.submit(request(seeds=(1, 2, 3, 4)))
    events = await within(collect(ticket))
    result = await within(ticket.result())

    assert events[0] == Started("cpu")
    assert [event.fraction for event in events[1:]] == [0.25, 0.5, 0.75, 1.0]
    assert all(isinstance(event, Progress) for event in events[1:])
    assert len(result.images) == 4 and result.seeds == (1, 2, 3, 4)
    assert (result.width, result.height, result.device, result.model) == (64, 64, "cpu", "tiny")
    assert make_grid(result.images).size == (128, 128)
    assert ticket.position() is None and ticket.done


async def test_positions_count_down_in_fifo_order(pool):
    first = pool.submit(request(steps=LONG))
    rest = [pool.submit(request(steps=1)) for _ in range(2)]
    tickets = [first, *rest]
    await within(next_event(first.events(), Started))
    assert [ticket.position() for ticket in tickets] == [0, 1, 2]
    assert pool.queued == 2

    started = []

    async def follow(index, ticket):
        async for event in ticket.events():
            if isinstance(event, Started):
                started.append(index)
        await ticket.result()

    followers = [asyncio.create_task(follow(index, ticket)) for index, ticket in enumerate(rest, start=1)]
    first.cancel()
    await within(asyncio.gather(*followers))
    assert started == [1, 2]
    assert [ticket.position() for ticket in tickets] == [None, None, None]
    assert pool.queued == 0


async def test_cancel_queued_then_running_then_serve_the_next(pool):
    running = pool.submit(request(steps=LONG))
    queued = pool.submit(request())
    running_events = running.events()
    await within(next_event(running_events, Progress))

    assert queued.position() == 1
    assert queued.cancel() is True
    assert queued.position() is None and pool.queued == 0
    with pytest.raises(Cancelled):
        await within(queued.result())
    assert await within(collect(queued)) == []

    assert running.cancel() is True
    with pytest.raises(Cancelled):
        await within(running.result(), seconds=10)
    progress = [event async for event in running_events]
    assert len(progress) < LONG - 1  # stopped long before the end
    assert running.cancel() is False  # already finished

    result = await within(pool.submit(request(seeds=(5,))).result())
    assert len(result.images) == 1


async def test_failures_become_engine_errors_and_the_pool_keeps_working(pool):
    with pytest.raises(EngineError, match=r"unknown model 'nope'; available: .*tiny"):
        await within(pool.submit(request(model="nope")).result())
    # A real diffusers failure inside the pipeline.
    with pytest.raises(EngineError, match=r"divisible by 8") as caught:
        await within(pool.submit(request(width=60)).result())
    assert not isinstance(caught.value, Cancelled)
    # A model that cannot be loaded (not in the offline hub cache).
    with pytest.raises(EngineError, match=r"generation failed: .*not-downloaded"):
        await within(pool.submit(request(model="missing")).result())

    ticket = pool.submit(request(seeds=(9,)))
    assert len((await within(ticket.result())).images) == 1


async def test_the_pool_checks_each_request_once(pool, monkeypatch):
    from bot.engine.pipelines import LoadedModel

    tokenised = []
    count = LoadedModel.prompt_tokens
    monkeypatch.setattr(LoadedModel, "prompt_tokens", lambda self, text: tokenised.append(text) or count(self, text))
    await within(pool.submit(request(negative_prompt="blue", steps=1)).result())
    assert tokenised == ["a red circle", "blue"]


async def test_torch_never_runs_on_the_event_loop_thread(pool):
    threads = set()
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: threads.add(threading.get_ident())
    )
    try:
        await within(pool.submit(request(seeds=(1, 2))).result())
        init = Image.new("RGB", (64, 64), (200, 30, 30))
        await within(pool.submit(request(init_image=init)).result())
    finally:
        hook.remove()
    assert threads, "no module ran"
    assert threading.get_ident() not in threads


async def test_img2img_and_upscale_through_the_pool(pool):
    init = (await within(pool.submit(request(seeds=(2,))).result())).images[0]
    variation = await within(pool.submit(request(seeds=(3, 4), init_image=init, strength=0.5)).result())
    assert [image.size for image in variation.images] == [(64, 64), (64, 64)]

    ticket = pool.submit(UpscaleRequest(model="tiny", image=init, scale=2))
    assert await within(collect(ticket)) == [Started("cpu")]
    upscaled = await within(ticket.result())
    assert upscaled.images[0].size == (128, 128) and upscaled.seeds == ()


async def test_close_cancels_waiting_tasks_and_lets_the_running_one_finish(engine_catalog, engine_models_dir):
    pool = WorkerPool(engine_catalog, engine_models_dir, torch_threads=1)
    await within(pool.start())
    running = pool.submit(request(steps=30))  # long enough to still be running when close() starts
    waiting = pool.submit(request())
    await within(next_event(running.events(), Started))
    await within(pool.close())

    with pytest.raises(Cancelled, match="shutting down"):
        await waiting.result()
    assert len((await within(running.result())).images) == 1
    assert not any(thread.is_alive() for thread in pool._threads)
    with pytest.raises(EngineError, match="shutting down"):
        pool.submit(request())


async def test_preload_failures_surface_at_start(engine_catalog, engine_models_dir):
    pool = WorkerPool(engine_catalog, engine_models_dir, torch_threads=1)
    with pytest.raises(CatalogError, match="unknown model 'nope'"):
        await pool.start(preload=["nope"])

    pool = WorkerPool(engine_catalog, engine_models_dir, torch_threads=1)
    with pytest.raises(EngineError, match="could not load a model on cpu"):
        await within(pool.start(preload=["missing"]))
    assert not any(thread.is_alive() for thread in pool._threads)


def test_constructor_rejects_bad_devices(engine_catalog, engine_models_dir):
    with pytest.raises(ValueError, match="at least one device"):
        WorkerPool(engine_catalog, engine_models_dir, devices=[])
    with pytest.raises(ValueError, match="once"):
        WorkerPool(engine_catalog, engine_models_dir, devices=["cpu", "cpu"])
