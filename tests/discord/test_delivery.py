"""Every accepted job ends delivered, or failed, refunded and reported — through Discord's faults (the local
Discord's switchboard), a stuck pipeline and a full disk. Each test checks what the member sees, the job's
final state, the ledger, and that the next /imagine works."""

from __future__ import annotations

import errno
import re
import time

import pytest

from bot.local import shows_result

UPLOAD_EDIT = r"/webhooks/\d+/[^/]+/messages/@original"  # the job's result replaces its "Generating…"
CALLBACK = r"/interactions/\d+/[^/]+/callback"


def job_id_of(message) -> int:
    return int(re.findall(r"job #(\d+)", message.content)[-1])


def results_of(discord, job_id: int) -> list:
    """Messages that show the job's result: never more than one."""
    return [m for m in discord.messages.values() if not m.deleted and shows_result(m)
            and job_id_of(m) == job_id]


async def delivered(dreamgrid, job_id: int, charged: int = 4) -> None:
    store = dreamgrid.app.store
    job = await store.get_job(job_id)
    assert job.status == "done" and job.delivered_at is not None
    assert len(results_of(dreamgrid.discord, job_id)) == 1
    assert [row["reason"] for row in await store.ledger(job.owner_id) if row["job_id"] == job_id] == ["charge"]
    assert job.cost == charged


async def next_one_works(dreamgrid, user) -> None:
    _, message = await dreamgrid.grid(user, "and the next one works")
    assert shows_result(message)


async def failed_and_refunded(dreamgrid, prompt: str, says: str):
    """/imagine `prompt`: its message says it failed (and why) and was refunded; the next one works."""
    alice = dreamgrid.discord.add_user("alice")
    ix = await dreamgrid.discord.slash(alice, "imagine", {"prompt": prompt})
    message = await ix.wait_original(lambda m: "failed" in m.content, timeout=30)
    assert says in message.content and "refunded" in message.content
    (job,) = await dreamgrid.app.store.recent_jobs(alice.id)
    assert job.status == "failed" and await dreamgrid.app.store.used(alice.id) == 0
    await next_one_works(dreamgrid, alice)
    return job


async def test_a_result_upload_that_fails_five_times_is_retried_until_it_lands(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    dreamgrid.discord.faults.fail(5, status=500, method="PATCH", path=UPLOAD_EDIT, uploads_only=True)
    ix, message = await dreamgrid.grid(alice, "a stubborn upload", timeout=90)
    assert len(dreamgrid.discord.faults.fired) == 5
    await delivered(dreamgrid, job_id_of(message))
    await next_one_works(dreamgrid, alice)


async def test_a_connection_reset_during_the_upload_is_retried(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    dreamgrid.discord.faults.reset(1, method="PATCH", path=UPLOAD_EDIT, uploads_only=True)
    _, message = await dreamgrid.grid(alice, "a reset upload")
    assert [kind for kind, *_ in dreamgrid.discord.faults.fired] == ["reset"]
    await delivered(dreamgrid, job_id_of(message))
    await next_one_works(dreamgrid, alice)


@pytest.mark.parametrize("dreamgrid", [{"delivery_timeout": 2.0}], indirect=True)
async def test_when_its_message_cannot_be_edited_the_result_is_posted_as_a_new_message(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    dreamgrid.discord.faults.fail(1000, status=503, method="PATCH", path=UPLOAD_EDIT, uploads_only=True)
    ix = await dreamgrid.discord.slash(alice, "imagine", {"prompt": "a message that will not change"})
    posted = await dreamgrid.discord.wait_for_message(
        lambda m: shows_result(m) and m.id != ix.original_message_id, timeout=90)
    dreamgrid.discord.faults.clear()
    assert "a message that will not change" in posted.content
    await delivered(dreamgrid, job_id_of(posted))
    await next_one_works(dreamgrid, alice)


@pytest.mark.parametrize("dreamgrid", [{"delivery_timeout": 1.0}], indirect=True)
async def test_a_result_discord_never_takes_is_failed_refunded_and_reported(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    dreamgrid.discord.faults.fail(1000, status=500, uploads_only=True)  # every upload, edits and new messages
    ix = await dreamgrid.discord.slash(alice, "imagine", {"prompt": "a picture nobody will see"})
    report = await ix.wait_original(lambda m: "refunded" in m.content, timeout=120)
    dreamgrid.discord.faults.clear()
    assert "could not show them" in report.content or "would not let the bot show them" in report.content
    (job,) = await dreamgrid.app.store.recent_jobs(alice.id)
    assert job.status == "failed" and job.delivered_at is None
    assert await dreamgrid.app.store.used(alice.id) == 0
    assert [row["reason"] for row in await dreamgrid.app.store.ledger(alice.id)] == ["charge", "refund"]
    await next_one_works(dreamgrid, alice)


async def test_a_job_whose_acceptance_could_not_be_answered_is_delivered_in_the_channel(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    dreamgrid.discord.faults.reset(1, method="POST", path=CALLBACK)  # the defer of /imagine never lands
    ix = await dreamgrid.discord.slash(alice, "imagine", {"prompt": "a grid with no reply"})
    posted = await dreamgrid.discord.wait_for_message(
        lambda m: shows_result(m) and "a grid with no reply" in m.content, timeout=60)
    assert not ix.acked and posted.interaction_metadata is None  # a channel message of its own
    job_id = job_id_of(posted)
    await delivered(dreamgrid, job_id)
    assert not (await dreamgrid.app.store.active_jobs(alice.id))  # not counted against the waiting limit
    await next_one_works(dreamgrid, alice)


@pytest.mark.parametrize("dreamgrid", [{"job_timeout": 1.0}], indirect=True)
async def test_a_job_that_stops_making_progress_is_stopped_failed_and_refunded(dreamgrid, monkeypatch):
    from bot.engine.pipelines import LoadedModel

    real = LoadedModel.run_batch

    def stuck_once(self, requests, on_step, on_latents=None):
        if requests[0].prompt.startswith("a stuck"):
            time.sleep(3)  # a hung device: no step for three times the timeout
        return real(self, requests, on_step, on_latents)

    monkeypatch.setattr(LoadedModel, "run_batch", stuck_once)
    await failed_and_refunded(dreamgrid, "a stuck pipeline", "stopped making progress")


async def test_a_full_disk_when_saving_fails_the_job_cleanly_and_refunds_it(dreamgrid, monkeypatch):
    from bot.service.images import ImageFiles

    real = ImageFiles.save

    def full(self, job, result, text_of):
        if job.prompt.startswith("a picture for a full disk"):
            self.folder(job.id).mkdir(parents=True, exist_ok=True)
            (self.folder(job.id) / "1.png").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, job, result, text_of)

    monkeypatch.setattr(ImageFiles, "save", full)
    job = await failed_and_refunded(dreamgrid, "a picture for a full disk", "could not be saved")
    assert not (dreamgrid.settings.data_dir / "images" / str(job.id)).exists()  # nothing half-saved is kept


async def test_a_database_that_turns_read_only_refuses_new_jobs_and_loses_none(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    _, first = await dreamgrid.grid(alice, "a grid before the trouble")
    store = dreamgrid.app.store

    await store._db.execute("PRAGMA query_only = ON")  # every write now fails, as on a read-only file
    ix = await dreamgrid.discord.slash(alice, "imagine", {"prompt": "a grid while it is read-only"})
    refusal = await ix.wait_original(lambda m: True, timeout=20)
    assert refusal.flags & 64 and "database is read-only" in refusal.content and "nothing was queued" in refusal.content
    await store._db.execute("PRAGMA query_only = OFF")

    assert [job.prompt for job in await store.recent_jobs(alice.id)] == ["a grid before the trouble"]
    await delivered(dreamgrid, job_id_of(first))
    await next_one_works(dreamgrid, alice)


async def test_a_job_that_cannot_record_its_end_says_so_and_is_delivered_after_a_restart(dreamgrid, monkeypatch):
    from bot.store import Store

    real = Store.finish_job

    async def read_only_now(self, job_id, images):
        await self._db.execute("PRAGMA query_only = ON")  # the disk turned read-only as the job finished
        return await real(self, job_id, images)

    monkeypatch.setattr(Store, "finish_job", read_only_now)
    alice = dreamgrid.discord.add_user("alice")
    ix = await dreamgrid.discord.slash(alice, "imagine", {"prompt": "a grid the database could not take"})
    told = await ix.wait_original(lambda m: "could not record" in m.content, timeout=30)
    assert "runs again when the bot restarts" in told.content and "refunded" not in told.content
    monkeypatch.setattr(Store, "finish_job", real)

    await dreamgrid.restart()  # the file is writable again
    shown = await dreamgrid.discord.wait_for_message(
        lambda m: shows_result(m) and "could not take" in m.content, timeout=60)
    await delivered(dreamgrid, job_id_of(shown))
