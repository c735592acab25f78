"""Cross-user batching: jobs of different users with the same key share one pipeline call, and nobody can
tell from their images; progress and cancel still work per job; the tuner keeps the faster batch size."""

import asyncio

import numpy as np
import pytest

from bot.engine import Cancelled, GenerateRequest, Progress, Started, WorkerPool
from bot.engine.batching import BatchTuner, batch_key
from bot.engine.queue import FairQueue

LONG = 200  # steps of the job that holds the worker while the test lines others up
# The tiny model's catalog values: the engine takes requests fully resolved.
TINY = {"steps": 4, "guidance": 5.0}
TINY_SIZE = {"width": 64, "height": 64}  # txt2img only: img2img takes the init image's size


def request(seeds=(1,), prompt="a red circle", **fields) -> GenerateRequest:
    fields = {**TINY, **({} if "init_image" in fields else TINY_SIZE), **fields}
    return GenerateRequest(model=fields.pop("model", "tiny"), prompt=prompt, seeds=tuple(seeds), **fields)


async def within(awaitable, seconds=120):
    return await asyncio.wait_for(awaitable, seconds)


async def started(ticket):
    async for event in ticket.events():
        if isinstance(event, Started):
            return


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


@pytest.fixture
async def batching_pool(engine_catalog, engine_models_dir):
    """Batches of up to 4 jobs, always (no measuring), so which jobs share a call is known."""
    pool = WorkerPool(engine_catalog, engine_models_dir, torch_threads=1, max_batch_jobs=4,
                      adaptive_batching=False, max_running_per_owner=3)
    await within(pool.start(preload=["tiny"]))
    yield pool
    await within(pool.close())


async def hold(pool):
    """A job with a key of its own that keeps the only worker busy until it is cancelled."""
    holder = pool.submit(request(steps=LONG), owner="holder")
    await within(started(holder))
    return holder


async def test_users_share_a_call_and_every_image_is_the_same_as_alone(batching_pool, engine_catalog,
                                                                        engine_models_dir):
    pool = batching_pool
    holder = await hold(pool)
    alice = pool.submit(request(seeds=(1, 2)), owner="alice")
    bob = pool.submit(request(seeds=(3,), prompt="a blue square", negative_prompt="red"), owner="bob")
    carol = pool.submit(request(seeds=(4,), width=48), owner="carol")  # another size: its own call
    dave = pool.submit(request(seeds=(5,), guidance=0.0), owner="dave")  # no guidance: its own call
    holder.cancel()
    results = [await within(ticket.result()) for ticket in (alice, bob, carol, dave)]

    assert [result.batched for result in results] == [2, 2, 1, 1]
    assert [result.seeds for result in results] == [(1, 2), (3,), (4,), (5,)]
    assert [len(result.images) for result in results] == [2, 1, 1, 1]

    alone_pool = WorkerPool(engine_catalog, engine_models_dir, torch_threads=1, max_batch_jobs=1)
    await within(alone_pool.start())
    try:
        for ticket, result in zip((alice, bob), results):
            alone = await within(alone_pool.submit(ticket.request).result())
            assert alone.batched == 1
            for batched_image, alone_image in zip(result.images, alone.images):
                assert np.abs(pixels(batched_image) - pixels(alone_image)).mean() < 0.5  # < 0.5/255
    finally:
        await within(alone_pool.close())
    # Different prompts and seeds in one call still make different pictures.
    assert np.abs(pixels(results[0].images[0]) - pixels(results[1].images[0])).mean() > 5


async def test_img2img_requests_batch_too(batching_pool):
    pool = batching_pool
    init = (await within(pool.submit(request(seeds=(2,))).result())).images[0]
    holder = await hold(pool)
    first = pool.submit(request(seeds=(3,), init_image=init, strength=0.5), owner="a")
    second = pool.submit(request(seeds=(4,), init_image=init.rotate(90), strength=0.5), owner="b")
    stronger = pool.submit(request(seeds=(5,), init_image=init, strength=0.9), owner="c")
    holder.cancel()
    results = [await within(ticket.result()) for ticket in (first, second, stronger)]
    assert [result.batched for result in results] == [2, 2, 1]
    alone = await within(pool.submit(first.request).result())
    assert np.abs(pixels(alone.images[0]) - pixels(results[0].images[0])).mean() < 0.5


async def test_progress_goes_to_every_job_and_cancelling_one_leaves_the_others_running(batching_pool):
    pool = batching_pool
    holder = await hold(pool)
    steps = 40
    alice = pool.submit(request(seeds=(1,), steps=steps), owner="alice")
    bob = pool.submit(request(seeds=(2,), steps=steps), owner="bob")
    holder.cancel()

    alice_events = alice.events()
    async for event in alice_events:
        if isinstance(event, Progress):
            break
    assert alice.cancel() is True
    with pytest.raises(Cancelled):  # at once: it does not wait for the call it shares
        await within(alice.result(), seconds=5)
    assert alice.position() is None and bob.position() == 0

    bob_events = [event async for event in bob.events()]
    result = await within(bob.result())
    assert len(result.images) == 1 and result.batched == 2
    assert [event.fraction for event in bob_events if isinstance(event, Progress)][-1] == 1.0
    assert len([event for event in bob_events if isinstance(event, Progress)]) == steps


async def test_a_call_stops_when_every_job_in_it_is_cancelled(batching_pool):
    pool = batching_pool
    holder = await hold(pool)
    tickets = [pool.submit(request(seeds=(n,), steps=LONG), owner=f"user{n}") for n in range(3)]
    holder.cancel()
    await within(started(tickets[0]))
    for ticket in tickets:
        assert ticket.cancel() is True
    for ticket in tickets:
        with pytest.raises(Cancelled):
            await within(ticket.result(), seconds=10)
    # The worker is free again long before LONG steps would have run.
    after = await within(pool.submit(request(seeds=(9,))).result(), seconds=30)
    assert after.batched == 1


async def test_relax_never_rides_along_with_fast_and_running_limits_hold(engine_catalog, engine_models_dir):
    pool = WorkerPool(engine_catalog, engine_models_dir, torch_threads=1, max_batch_jobs=4,
                      adaptive_batching=False, max_running_per_owner=1)
    await within(pool.start(preload=["tiny"]))
    try:
        holder = await hold(pool)
        fast = [pool.submit(request(seeds=(n,)), owner="alice") for n in range(2)]
        bob = pool.submit(request(seeds=(7,)), owner="bob")
        relaxed = pool.submit(request(seeds=(8,)), owner="carol", lane="relax")
        holder.cancel()
        results = [await within(ticket.result()) for ticket in (*fast, bob, relaxed)]
        # alice may run one job at a time: her first shares a call with bob's, her second runs alone after.
        assert [result.batched for result in results] == [2, 1, 2, 1]
    finally:
        await within(pool.close())


# --- the queue's batch rule, and the tuner, without a model --------------------------------------------


class T:
    def __init__(self, owner, key="k", lane="fast"):
        self.owner, self.key, self.lane = owner, key, lane

    def __repr__(self):
        return f"{self.owner}:{self.key}"


def test_a_batch_takes_same_key_tickets_in_fair_order_and_never_reorders_an_owner():
    queue = FairQueue(max_running_per_owner=2)
    a1, a2, a3 = T("a"), T("a", "other"), T("a")
    b1, c1, d1 = T("b"), T("c", "other"), T("d", lane="relax")
    for ticket in (a1, a2, a3, b1, c1, d1):
        queue.append(ticket)
    batch = queue.popbatch(lambda t: t.key, lambda key: 4)
    # a3 has the key but waits behind a2 (a's own order); c's key differs; d is relax.
    assert batch == [a1, b1]
    assert list(queue) == [c1, a2, a3, d1]  # c was never served: first
    assert queue.popbatch(lambda t: t.key, lambda key: 4) == [c1, a2]  # "other": c, then a (limit 2)
    assert queue.popbatch(lambda t: t.key, lambda key: 4) == [d1]  # a3 cannot run: a has 2 running
    for ticket in (a1, a2):
        queue.done(ticket)
    assert queue.popbatch(lambda t: t.key, lambda key: 1) == [a3]


def test_the_tuner_keeps_batching_where_it_is_faster_and_stops_where_it_is_not():
    small, large = ("tiny", "txt2img", 64, 64, 20), ("tiny", "txt2img", 256, 256, 4)
    tuner = BatchTuner(max_jobs=8)
    # Per image: batching makes 64 px 1.6x faster, up to 4 jobs; at 256 px two jobs are 0.87x.
    per_image = {small: {1: 0.10, 2: 0.07, 4: 0.06, 8: 0.065}, large: {1: 1.0, 2: 1.15, 4: 1.3, 8: 1.8}}
    tried = {small: [], large: []}
    for _ in range(30):
        for shape in (small, large):
            jobs = tuner.jobs_for(shape)
            tried[shape].append(jobs)
            tuner.record(shape, jobs, 4 * jobs, per_image[shape][jobs] * 4 * jobs)
    assert tuner.jobs_for(small) == 4 and tuner.jobs_for(large) == 1
    assert tried[large].count(2) == 2 and 4 not in tried[large]  # one size up was enough to know
    assert tuner.images_per_second(small)[4] == pytest.approx(1 / 0.06, rel=1e-3)


def test_the_tuner_runs_one_job_alone_now_and_then_and_recovers_from_unlucky_first_measurements():
    shape = ("tiny", "txt2img", 256, 256, 4)
    tuner = BatchTuner(max_jobs=2, revisit=4)
    per_image = {1: 0.10, 2: 0.12}  # in truth one job at a time is faster
    for jobs, seconds in ((1, 0.2), (1, 0.2), (2, 0.12), (2, 0.12)):  # a busy machine slowed the first two
        assert tuner.jobs_for(shape) == jobs
        tuner.record(shape, jobs, 4 * jobs, seconds * 4 * jobs)
    assert tuner.jobs_for(shape) == 2
    tried = []
    for _ in range(12):
        jobs = tuner.jobs_for(shape)
        tried.append(jobs)
        tuner.record(shape, jobs, 4 * jobs, per_image[jobs] * 4 * jobs)
    assert tried[:3] == [2, 2, 1]  # the 4th batching call runs one job alone
    assert tried[-1] == 1 and tuner.jobs_for(shape) == 1  # and then it stays alone


def test_a_batch_must_beat_one_job_by_more_than_noise_and_max_one_disables_batching():
    shape = ("tiny", "txt2img", 128, 128, 20)
    tuner = BatchTuner(max_jobs=4)
    for jobs, per_image in ((1, 0.100), (1, 0.100), (2, 0.098), (2, 0.099)):
        assert tuner.jobs_for(shape) == jobs
        tuner.record(shape, jobs, 4 * jobs, per_image * 4 * jobs)
    assert tuner.jobs_for(shape) == 1  # 2% faster is noise
    assert BatchTuner(max_jobs=1).jobs_for(shape) == 1
    assert BatchTuner(max_jobs=4, adaptive=False).jobs_for(shape) == 4


def test_batch_keys():
    key = batch_key(request())
    assert key == batch_key(request(seeds=(5, 6), prompt="other", negative_prompt="x", width=64))
    for different in (request(width=48), request(steps=3), request(guidance=0.0), request(tile=True)):
        assert batch_key(different) != key


# --- live previews ---------------------------------------------------------------------------------------


async def test_previews_come_with_progress_each_of_its_own_images_and_none_when_off(engine_catalog,
                                                                                    engine_models_dir):
    from bot.engine import Preview

    pool = WorkerPool(engine_catalog, engine_models_dir, torch_threads=1, max_batch_jobs=4,
                      adaptive_batching=False, preview_interval=1e-9)
    await within(pool.start(preload=["tiny"]))
    try:
        holder = await hold(pool)
        grid = pool.submit(request(seeds=(1, 2, 3, 4), steps=6), owner="alice")
        single = pool.submit(request(seeds=(5,), steps=6), owner="bob")
        holder.cancel()
        grid_events = [event async for event in grid.events()]
        single_events = [event async for event in single.events()]
        assert (await within(grid.result())).batched == 2
    finally:
        await within(pool.close())
    previews = [event for event in grid_events if isinstance(event, Preview)]
    # One per step but the last (the real grid follows it), each a 2x2 grid at half the final size.
    assert [event.fraction for event in previews] == [n / 6 for n in range(1, 6)]
    assert {event.image.size for event in previews} == {(64, 64)}
    assert {event.image.size for event in single_events if isinstance(event, Preview)} == {(32, 32)}
    assert grid_events.index(previews[0]) > 0 and isinstance(grid_events[0], Started)

    off = WorkerPool(engine_catalog, engine_models_dir, torch_threads=1)  # preview_interval 0: off
    await within(off.start(preload=["tiny"]))
    try:
        ticket = off.submit(request(steps=6))
        assert not any(isinstance(event, Preview) for event in [e async for e in ticket.events()])
    finally:
        await within(off.close())
