"""The store against a real SQLite file: charging (through Quotas.accept, the one way a job is accepted),
refunds, the ledger and migrations."""

import asyncio
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from bot.recipe import JobKind, JobStatus, Recipe
from bot.store import NewJob, Refused, Store, StoredImage, utcnow
from bot.store.quotas import Limits, Quotas

RECIPE = Recipe(prompt="a red fox", model="tiny", seed=7, width=64, height=64, steps=4, guidance=5.0, tile=True)
LIMITS = Limits(max_waiting=100, queue_limit=100, period_days=1, relax_allowed=True)


def new_job(owner: int = 1) -> list[NewJob]:
    return [NewJob(owner_id=owner, owner_name=f"user{owner}", guild_id=10, channel_id=20, kind=JobKind.IMAGINE,
                   recipe=RECIPE)]


async def accept(store: Store, owner: int = 1, allowance: int = 10, now: datetime | None = None):
    outcome = await Quotas(store).accept(new_job(owner), "fast", allowance, LIMITS, now=now)
    return outcome if isinstance(outcome, Refused) else outcome[0]


@pytest.fixture
async def store(tmp_path):
    store = await Store.open(tmp_path / "db.sqlite3")
    yield store
    await store.close()


async def test_accepting_a_job_charges_its_cost_once(store):
    job = await accept(store)
    assert job.status is JobStatus.QUEUED and job.recipe == RECIPE
    assert await store.used(1) == 4
    assert await store.ledger(1) == [{"job_id": job.id, "amount": 4, "reason": "charge", "period": job.created_at[:10]}]


async def test_over_the_allowance_is_refused_and_nothing_is_written(store):
    await accept(store, allowance=6)
    refused = await accept(store, allowance=6)
    assert isinstance(refused, Refused)
    assert refused.remaining == 2
    assert refused.resets_at > datetime.now(timezone.utc)
    assert len(await store.recent_jobs(1)) == 1
    assert await store.used(1) == 4


async def test_a_failed_job_is_refunded_once_and_keeps_its_reason(store):
    job = await accept(store)
    assert await store.fail_job(job.id, "the model broke")
    assert not await store.fail_job(job.id, "again")  # already finished: no second refund
    failed = await store.get_job(job.id)
    assert (failed.status, failed.error) == (JobStatus.FAILED, "the model broke")
    assert await store.used(1) == 0
    assert [row["reason"] for row in await store.ledger(1)] == ["charge", "refund"]


async def test_a_finished_job_cannot_be_refunded(store):
    job = await accept(store)
    await store.finish_job(job.id, [StoredImage(job.id, 1, 7, "images/1/1.png", 64, 64)])
    assert not await store.fail_job(job.id, "late failure")
    assert await store.used(1) == 4
    assert [i.path for i in await store.images(job.id)] == ["images/1/1.png"]


async def test_concurrent_requests_never_spend_the_same_allowance_twice(store):
    results = await asyncio.gather(*(accept(store, allowance=40) for _ in range(50)))
    accepted = [r for r in results if not isinstance(r, Refused)]
    assert len(accepted) == 10
    assert await store.used(1) == 40


async def test_allowances_are_per_user_and_per_utc_day(store):
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    await accept(store, owner=1, allowance=4, now=yesterday)
    assert await store.used(1) == 0
    assert not isinstance(await accept(store, owner=1, allowance=4), Refused)
    assert not isinstance(await accept(store, owner=2, allowance=4), Refused)


async def test_the_schema_is_migrated_once_and_survives_reopening(tmp_path):
    path = tmp_path / "db.sqlite3"
    store = await Store.open(path)
    job = await accept(store)
    applied = await store.applied_migrations()
    await store.close()
    reopened = await Store.open(path)
    assert await reopened.applied_migrations() == applied
    assert applied[0] == "0001_jobs_images_ledger"
    assert (await reopened.get_job(job.id)).prompt == "a red fox"
    await reopened.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_ended_web_sessions_are_kept_until_they_would_have_expired(tmp_path):
    from bot.store.logouts import WebLogouts

    path = tmp_path / "db.sqlite3"
    store = await Store.open(path)
    now = utcnow()
    logouts = WebLogouts(store)
    await logouts.add("ends-later", now + timedelta(hours=11))
    await logouts.add("ends-later", now + timedelta(hours=11))  # logging out twice is one row
    await logouts.add("over-already", now - timedelta(seconds=1))
    await store.close()
    store = await Store.open(path)  # a restart
    try:
        assert await WebLogouts(store).current() == {"ends-later"}
        assert [tuple(row) for row in await store.rows("SELECT session_id FROM web_logouts")] == [("ends-later",)]
        assert await WebLogouts(store).current(now + timedelta(hours=12)) == set()
    finally:
        await store.close()
