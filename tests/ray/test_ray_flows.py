"""The main flows over the local Discord with ENGINE=ray: the real bot (the shared `dreamgrid` fixture) with
its pictures made by the Serve application on the session's local Ray cluster (one replica, shapes model).

The last test kills the replica; Serve starts another for the tests after it."""

from __future__ import annotations

import asyncio
import os
import re
import signal

import pytest

from bot.engine.remote import RemotePool

pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray")]  # one worker, one cluster

EPHEMERAL = 64


def job_id_of(message) -> int:
    return int(re.findall(r"[Jj]ob #(\d+)", message.content)[-1])


async def reply(dreamgrid, user, command, options=None, until=None):
    """A command's private reply, once it is more than "thinking…" (and `until` holds)."""
    ix = await dreamgrid.discord.slash(user, command, options or {})
    return await ix.wait_original(until or (lambda m: not m.loading), timeout=60)


async def queue_job(dreamgrid, user, prompt, state, model=None):
    """/imagine (on `model`, as the server's default for this one job) and wait until it shows `state` (or
    one of several, "a|b")."""
    policy = dreamgrid.app.jobs.policy
    policy.default_model = model or "shapes"
    try:
        ix = await dreamgrid.discord.slash(user, "imagine", {"prompt": prompt})
        return ix, await ix.wait_original(lambda m: any(s in m.content for s in state.split("|")), timeout=60)
    finally:
        policy.default_model = "shapes"


async def test_imagine_upscale_vary_and_reroll_through_ray(dreamgrid):
    assert isinstance(dreamgrid.app.pool, RemotePool)
    alice = dreamgrid.discord.add_user("alice")
    ix, grid = await dreamgrid.grid(alice, "a red circle")
    assert "`shapes`" in grid.content and grid.attachments[0].filename.endswith(".png")
    contents = [m.content for m in ix.original_history]
    assert any(re.search(r"Generating… \d+%", c) for c in contents)  # progress streamed back
    job = job_id_of(grid)
    assert len(await dreamgrid.app.store.images(job)) == 4

    _, upscaled = await dreamgrid.click(alice, grid, f"dg:upscale:{job}:2")
    up_job = await dreamgrid.app.store.get_job(job_id_of(upscaled))
    assert (up_job.kind, up_job.status) == ("upscale", "done")
    _, varied = await dreamgrid.click(alice, grid, f"dg:vary:{job}:3")
    _, rerolled = await dreamgrid.click(alice, grid, f"dg:reroll:{job}:0")
    for message in (varied, rerolled):
        assert (await dreamgrid.app.store.get_job(job_id_of(message))).status == "done"
    assert await dreamgrid.app.store.used(alice.id) == 4 + 1 + 4 + 4
    assert dreamgrid.app.pool.retries == 0


async def test_cancel_a_running_job_stops_it_on_the_replica_and_refunds_it(dreamgrid):
    d, store = dreamgrid.discord, dreamgrid.app.store
    alice = d.add_user("alice")
    running_ix, running = await queue_job(dreamgrid, alice, "the job that holds the replica", "Generating…",
                                          model="slow")
    said = await reply(dreamgrid, alice, "cancel", {"job": job_id_of(running)})
    assert f"Job #{job_id_of(running)} is cancelled" in said.content
    await running_ix.wait_original(lambda m: "cancelled" in m.content, timeout=30)
    job = await store.get_job(job_id_of(running))
    assert job.status == "cancelled" and job.started_at
    assert await store.used(alice.id) == 0
    # The replica stopped at its next step (999 steps would take minutes): the next job runs now.
    _, grid = await dreamgrid.grid(alice, "the next one", timeout=30)
    assert grid.attachments and await store.used(alice.id) == 4


async def test_model_use_load_unload_and_stats_on_the_multiplexed_model_set(dreamgrid):
    d = dreamgrid.discord
    alice, boss = d.add_user("alice"), d.add_user("boss", manage_guild=True)
    answer = await reply(dreamgrid, boss, "model use", {"name": "other"}, until=lambda m: "⏳" not in m.content)
    assert answer.flags & EPHEMERAL and "`other` is now this server's default" in answer.content
    pool = dreamgrid.app.pool
    (replica,) = pool.replicas
    assert {"shapes", "other"} <= {model["name"] for model in replica["models"]}
    _, grid = await dreamgrid.grid(alice, "after the switch")
    assert "Model `other`" in grid.content

    stats = await reply(dreamgrid, boss, "stats")
    assert re.search(rf"{re.escape(replica['device'])} \d+\.\d MB \(.*`other`.*\)", stats.content)

    freed = await reply(dreamgrid, boss, "model unload", {"name": "shapes"}, until=lambda m: "⏳" not in m.content)
    assert f"was unloaded from {replica['device']}" in freed.content
    assert "shapes" not in {model["name"] for model in pool.replicas[0]["models"]}
    assert "shapes" not in (await pool.refresh())["enabled"]
    back = await reply(dreamgrid, boss, "model use", {"name": "shapes"}, until=lambda m: "⏳" not in m.content)
    assert "`shapes` is now this server's default" in back.content


async def test_users_take_turns_in_the_same_order_as_the_local_pool(dreamgrid):
    d, store = dreamgrid.discord, dreamgrid.app.store
    alice, bob, carol = (d.add_user(name) for name in ("alice", "bob", "carol"))
    await queue_job(dreamgrid, carol, "the job that holds the replica", "Generating…", model="slow")
    alices = [await queue_job(dreamgrid, alice, f"alice number {n}", "Queued (#|Starting") for n in range(3)]
    _, bobs = await queue_job(dreamgrid, bob, "bob's only one", "Queued (#")
    # Next after alice's first, not after all her jobs. Her first has left the bot's line already: one call
    # more than the replicas is sent, to wait in Serve's queue (its autoscaler's signal), so bob is #1 here
    # where the local pool says #2 — the same order.
    assert "Queued (#1 in line)" in bobs.content

    await reply(dreamgrid, carol, "cancel")
    ids = [job_id_of(message) for _, message in alices] + [job_id_of(bobs)]
    for job_id in ids:
        await d.wait_for_message(lambda m, job_id=job_id: m.attachments and f"job #{job_id}" in m.content,
                                 timeout=60)
    jobs = [await store.get_job(job_id) for job_id in ids]
    order = [job.id for job in sorted(jobs, key=lambda job: job.started_at)]
    assert order == [ids[0], ids[3], ids[1], ids[2]]  # alice, bob, alice, alice: FairQueue's order


async def test_describe_runs_on_the_replica_and_says_what_the_in_process_describer_says(dreamgrid):
    from bot.engine import png_bytes
    from bot.engine.describers import Describers
    from bot.shapes.world import make_example

    d = dreamgrid.discord
    jane = d.add_user("jane")
    picture, _ = make_example(3, shape="square", shape_colour="green", background_colour="white", position="center")
    answer = await reply(dreamgrid, jane, "describe", {"image": d.upload("source.png", png_bytes(picture))},
                         until=lambda m: "1." in m.content)
    prompts = re.findall(r"\*\*\d\.\*\* (.+)", answer.content)
    # The bot's RemotePool has no describer of its own: the replica wrote these.
    assert prompts == Describers(dreamgrid.settings.models_dir, "cpu").describe("shapes-describer", picture)
    assert all("green" in p and "square" in p for p in prompts)


async def test_a_replica_killed_mid_job_is_replaced_and_the_job_is_done_once_or_refunded(dreamgrid):
    d, store, pool = dreamgrid.discord, dreamgrid.app.store, dreamgrid.app.pool
    alice = d.add_user("alice")
    ix, running = await queue_job(dreamgrid, alice, "a job whose replica dies", "Generating…", model="long")
    (replica,) = pool.replicas
    os.kill(replica["pid"], signal.SIGKILL)

    message = await ix.wait_original(lambda m: bool(m.attachments) or "refunded" in m.content, timeout=120)
    job = await store.get_job(job_id_of(running))
    assert pool.retries == 1
    if message.attachments:  # done on the replica Serve started instead
        assert job.status == "done" and job.delivered_at
        assert [row["reason"] for row in await store.ledger(alice.id)] == ["charge"]
    else:
        assert job.status == "failed"
        assert [row["reason"] for row in await store.ledger(alice.id)] == ["charge", "refund"]
    await asyncio.sleep(0.5)
    shown = [m for m in d.messages.values() if not m.deleted and m.attachments and f"job #{job.id}" in m.content]
    assert len(shown) <= 1  # never delivered twice
    assert pool.replicas and pool.replicas[0]["replica"] != replica["replica"]
