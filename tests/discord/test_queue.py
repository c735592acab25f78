"""The fair queue as users see it over the local Discord: turns, relax mode, cancel, limits, 200 at once.

A `slow` model (the tiny one with 999 denoising steps) holds the single worker while a test lines jobs
up, so what waits and in which order does not depend on timing; cancelling it lets the queue move.
"""

from __future__ import annotations

import asyncio
import re

import pytest

NO_MORE_STEPS = 999  # the most the scheduler allows: far longer than any test waits


@pytest.fixture
def models_dir(models_dir, tmp_path):
    """The test models plus `slow`: the tiny model's weights with a step count nobody waits for."""
    folder = tmp_path / "models"
    folder.mkdir()
    for model in models_dir.iterdir():
        if model.is_dir():
            (folder / model.name).symlink_to(model)
    catalog = (models_dir / "catalog.toml").read_text()
    slow = re.search(r"\[models\.tiny\].*?(?=\n\[|\Z)", catalog, re.S).group(0)
    slow = slow.replace("[models.tiny]", "[models.slow]").replace("steps = 4", f"steps = {NO_MORE_STEPS}")
    (folder / "catalog.toml").write_text(catalog + "\n" + slow + "\n")
    return folder


def job_id_of(message) -> int:
    return int(re.findall(r"[Jj]ob #(\d+)", message.content)[-1])


async def reply(dreamgrid, user, command, options=None):
    """A command's private reply, once it is more than "thinking…"."""
    ix = await dreamgrid.discord.slash(user, command, options or {})
    return await ix.wait_original(lambda m: not m.loading, timeout=30)


async def queue_job(dreamgrid, user, prompt, state):
    """/imagine and wait until its message shows `state` ("Queued (#", "Generating…")."""
    ix = await dreamgrid.discord.slash(user, "imagine", {"prompt": prompt})
    message = await ix.wait_original(lambda m: state in m.content, timeout=30)
    return ix, message


def answer(ix):
    """What the user sees: the job's message, or a private refusal (a follow-up, when the bot had to defer
    first because the burst kept it busy)."""
    refusal = next((m for m in ix.followups if m.flags & 64), None)
    original = ix.original
    return refusal or (original if original is not None and not original.deleted and not original.loading else None)


async def hold_the_worker(dreamgrid, user):
    """A job that keeps the only worker busy until it is cancelled."""
    service = dreamgrid.app.jobs.policy
    service.default_model = "slow"
    try:
        return await queue_job(dreamgrid, user, "the job that holds the worker", "Generating…")
    finally:
        service.default_model = "tiny"


async def started_order(store, job_ids):
    jobs = [await store.get_job(job_id) for job_id in job_ids]
    return [job.id for job in sorted((j for j in jobs if j.started_at), key=lambda j: j.started_at)]


async def test_users_take_turns_and_relax_waits_for_every_fast_job(dreamgrid):
    d, store = dreamgrid.discord, dreamgrid.app.store
    alice, bob, carol, dave = (d.add_user(name) for name in ("alice", "bob", "carol", "dave"))
    await hold_the_worker(dreamgrid, carol)

    assert "Relax mode is on" in (await reply(dreamgrid, bob, "relax")).content
    _, relaxed = await queue_job(dreamgrid, bob, "bob is in no hurry", "Queued (#1 in line)")
    alices = [await queue_job(dreamgrid, alice, f"alice number {n}", "Queued (#") for n in range(10)]
    _, daves = await queue_job(dreamgrid, dave, "dave's only one", "Queued (#")

    # Dave's first job goes right after alice's first, not after all ten; relax goes after every fast job.
    assert "Queued (#2 in line)" in daves.content
    info = await reply(dreamgrid, bob, "info")
    assert "Mode:** relax" in info.content and f"#{job_id_of(relaxed)} queued, #12 in line (relax)" in info.content

    await reply(dreamgrid, carol, "cancel")  # the worker is free: the queue moves
    await d.wait_for_message(lambda m: m.attachments and f"job #{job_id_of(daves)}" in m.content, timeout=60)
    await reply(dreamgrid, alice, "cancel")  # alice gives up the rest: now bob's relax job may run
    await d.wait_for_message(lambda m: m.attachments and f"job #{job_id_of(relaxed)}" in m.content, timeout=60)

    alice_ids = [job_id_of(message) for _, message in alices]
    order = await started_order(store, [*alice_ids, job_id_of(daves), job_id_of(relaxed)])
    assert order[:2] == [alice_ids[0], job_id_of(daves)]
    assert order[-1] == job_id_of(relaxed)
    # Every fast job either started before the relax job or was cancelled while it waited.
    for job_id in alice_ids:
        job = await store.get_job(job_id)
        assert job.started_at or job.status == "cancelled"
    # Relax cost nothing; the cancelled fast jobs were refunded.
    assert await store.used(bob.id) == 0 and await store.ledger(bob.id) == []
    done = [j for j in [await store.get_job(i) for i in alice_ids] if j.status == "done"]
    assert await store.used(alice.id) == 4 * len(done)


async def test_cancel_a_queued_job_by_its_button_and_a_running_one_by_command(dreamgrid):
    d, store = dreamgrid.discord, dreamgrid.app.store
    alice = d.add_user("alice")
    running_ix, running = await hold_the_worker(dreamgrid, alice)
    queued_ix, queued = await queue_job(dreamgrid, alice, "a job to cancel while it waits", "Queued (#1 in line)")
    assert queued.custom_ids() == [f"dg:cancel:{job_id_of(queued)}:0"]
    assert (await store.used(alice.id)) == 8

    click = await d.click(alice, queued.id, f"dg:cancel:{job_id_of(queued)}:0")
    said = await click.wait_original(lambda m: not m.loading, timeout=30)
    assert said.flags & 64 and f"Job #{job_id_of(queued)} is cancelled" in said.content and "refunded" in said.content
    cancelled = await queued_ix.wait_original(lambda m: "cancelled" in m.content, timeout=30)
    assert cancelled.custom_ids() == [] and "refunded" in cancelled.content

    said = await reply(dreamgrid, alice, "cancel", {"job": job_id_of(running)})
    assert f"Job #{job_id_of(running)} is cancelled" in said.content
    stopped = await running_ix.wait_original(lambda m: "cancelled" in m.content, timeout=30)
    assert stopped.custom_ids() == []
    job = await store.get_job(job_id_of(running))
    assert job.status == "cancelled" and job.started_at  # it had been running
    assert await store.used(alice.id) == 0
    assert [row["reason"] for row in await store.ledger(alice.id)] == ["charge", "charge", "refund", "refund"]

    # The worker goes on with the next job.
    _, grid = await dreamgrid.grid(alice, "the next one")
    assert grid.attachments and await store.used(alice.id) == 4


async def test_only_the_owner_or_an_admin_can_cancel(dreamgrid):
    d = dreamgrid.discord
    alice, bob = d.add_user("alice"), d.add_user("bob")
    running_ix, running = await hold_the_worker(dreamgrid, alice)
    job_id = job_id_of(running)

    refusal = await (await d.click(bob, running.id, f"dg:cancel:{job_id}:0")).wait_original(timeout=10)
    assert refusal.flags & 64 and "not your job" in refusal.content
    said = await reply(dreamgrid, bob, "cancel", {"job": job_id})
    assert f"no job #{job_id}" in said.content
    assert (await dreamgrid.app.store.get_job(job_id)).active

    await reply(dreamgrid, alice, "cancel")
    await running_ix.wait_original(lambda m: "cancelled" in m.content, timeout=30)


@pytest.mark.parametrize("dreamgrid, accepted, refusal", [
    ({"daily_images": 400, "max_waiting_per_user": 10}, 10, "You already have 10 jobs waiting"),
    ({"daily_images": 22, "max_waiting_per_user": 10}, 5, "2 images left"),
], indirect=["dreamgrid"], ids=["waiting-limit", "allowance"])
async def test_200_concurrent_imagines_never_pass_a_limit(dreamgrid, accepted, refusal):
    d, store = dreamgrid.discord, dreamgrid.app.store
    alice, carol = d.add_user("alice"), d.add_user("carol")
    await hold_the_worker(dreamgrid, carol)  # nothing of alice's starts: what waits is what was accepted

    sent = await asyncio.gather(*(d.slash(alice, "imagine", {"prompt": f"burst {n}"}) for n in range(200)))
    answers = await asyncio.gather(*(d.wait_until(lambda ix=ix: answer(ix), 60, "an answer") for ix in sent))

    refused = [m for m in answers if m.flags & 64]
    assert len(refused) == 200 - accepted
    assert all(refusal in m.content and "Nothing was queued or charged" in m.content for m in refused)
    jobs = await store.active_jobs(alice.id)
    assert len(jobs) == accepted
    ledger = await store.ledger(alice.id)
    assert [row["reason"] for row in ledger] == ["charge"] * accepted  # once per accepted job, never more
    assert sorted(row["job_id"] for row in ledger) == sorted(job.id for job in jobs)

    # The ledger sums to what /info shows.
    info = await reply(dreamgrid, alice, "info")
    allowance = dreamgrid.settings.daily_images
    assert f"{allowance - sum(row['amount'] for row in ledger)} of {allowance} images left" in info.content
    assert info.content.count("queued, #") == accepted


async def test_a_waiting_jobs_place_in_line_is_kept_up_to_date(dreamgrid):
    d = dreamgrid.discord
    alice, bob, carol = (d.add_user(name) for name in ("alice", "bob", "carol"))
    await hold_the_worker(dreamgrid, carol)
    _, alices = await queue_job(dreamgrid, alice, "alice goes first", "Queued (#1 in line)")
    bobs_ix, bobs = await queue_job(dreamgrid, bob, "bob's turn", "Queued (#2 in line)")

    await (await d.click(alice, alices.id, f"dg:cancel:{job_id_of(alices)}:0")).wait_acked()

    moved = await bobs_ix.wait_original(lambda m: "Queued (#1 in line)" in m.content, timeout=10)
    assert moved.custom_ids() == [f"dg:cancel:{job_id_of(bobs)}:0"]  # still cancellable while it waits
    await reply(dreamgrid, carol, "cancel")  # the worker is free: bob's job runs and shows its grid
    done = await bobs_ix.wait_original(lambda m: m.attachments, timeout=60)
    assert "Queued" not in done.content


async def test_after_a_restart_a_job_finishes_in_its_own_message_and_a_private_one_by_direct_message(dreamgrid):
    """A stop loses no job, and recovery keeps the conversation tidy: the job's original message gets the
    grid (no second message), and a job whose owner wants private replies is never posted in public."""
    d = dreamgrid.discord
    alice, bob, carol = (d.add_user(name) for name in ("alice", "bob", "carol"))
    await dreamgrid.app.accounts.update_preferences(bob.id, private=True)
    await hold_the_worker(dreamgrid, carol)
    alices_ix, alices = await queue_job(dreamgrid, alice, "alice waits through a restart", "Queued (#1 in line)")
    _, bobs = await queue_job(dreamgrid, bob, "bob waits privately", "Queued (#2 in line)")
    assert bobs.flags & 64

    await dreamgrid.restart()
    await reply(dreamgrid, carol, "cancel")  # the recovered job that holds the worker

    done = await alices_ix.wait_original(lambda m: bool(m.attachments), timeout=60)
    assert done.id == alices.id and f"job #{job_id_of(alices)}" in done.content
    assert not [m for m in d.channel_messages() if f"job #{job_id_of(alices)}" in m.content and m.id != alices.id]
    direct = await d.wait_for_message(
        lambda m: m.attachments and m.guild_id is None and f"job #{job_id_of(bobs)}" in m.content, timeout=60)
    assert d.channels[direct.channel_id].recipient.id == bob.id
    assert not [m for m in d.channel_messages() if f"job #{job_id_of(bobs)}" in m.content and not m.flags & 64]
    assert (await dreamgrid.app.store.get_job(job_id_of(bobs))).status == "done"
