"""Quotas against a real SQLite file: every limit checked with the insert, relax is free, periods, and the
ledger migration keeping old rows."""

import asyncio
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from bot.recipe import JobKind, Recipe
from bot.store import NewJob, Refused, Store
from bot.store.migrations import MIGRATIONS
from bot.store.quotas import Limits, Quotas, QueueRefused, period_key, period_start

LIMITS = Limits(max_waiting=10, queue_limit=100, period_days=1, relax_allowed=True)


def new_job(owner: int = 1) -> list[NewJob]:
    recipe = Recipe(prompt="a red fox", model="tiny", seed=7, width=64, height=64, steps=4, guidance=5.0)
    return [NewJob(owner_id=owner, owner_name=f"user{owner}", guild_id=10, channel_id=20, kind=JobKind.IMAGINE,
                   recipe=recipe)]


@pytest.fixture
async def store(tmp_path):
    store = await Store.open(tmp_path / "db.sqlite3")
    yield store
    await store.close()


async def test_the_global_queue_limit_refuses_everyone_and_writes_nothing(store):
    quotas, limits = Quotas(store), Limits(max_waiting=10, queue_limit=3, period_days=1, relax_allowed=True)
    for owner in (1, 2, 3):
        assert not isinstance(await quotas.accept(new_job(owner), "fast", 40, limits), QueueRefused)
    refused = await quotas.accept(new_job(4), "relax", 40, limits)
    assert refused == QueueRefused("queue", 3, 3)
    assert await store.ledger(4) == [] and await store.recent_jobs(4) == []


async def test_concurrent_accepts_never_pass_the_waiting_limit_or_the_allowance(store):
    quotas = Quotas(store)
    outcomes = await asyncio.gather(*(quotas.accept(new_job(), "fast", 28, LIMITS) for _ in range(50)))
    jobs = [o for o in outcomes if not isinstance(o, (Refused, QueueRefused))]
    assert len(jobs) == 7  # 28 images / 4
    assert await store.used(1) == 28 and len(await store.ledger(1)) == 7
    # Relax jobs are free, so the waiting limit is what stops them.
    outcomes = await asyncio.gather(*(quotas.accept(new_job(), "relax", 28, LIMITS) for _ in range(50)))
    assert sum(not isinstance(o, QueueRefused) for o in outcomes) == 3
    assert await store.used(1) == 28
    relaxed = [j for j in await store.active_jobs(1) if j.lane == "relax"]
    assert len(relaxed) == 3 and all(j.cost == 0 for j in relaxed)


def test_periods_of_several_days_reset_together():
    monday = datetime(2026, 11, 23, 15, tzinfo=timezone.utc)
    assert period_key(monday, 1) == "2026-11-23"
    start = period_start(monday, 7)
    assert start <= monday < start + timedelta(days=7)
    assert period_key(start, 7) == period_key(start + timedelta(days=6, hours=23), 7) == start.date().isoformat()
    assert period_key(start + timedelta(days=7), 7) != period_key(monday, 7)


async def test_the_ledger_migration_keeps_every_old_row(tmp_path):
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL);"
                      + MIGRATIONS[0][1] + f"INSERT INTO migrations VALUES ('{MIGRATIONS[0][0]}', 'then');")
    old.execute("INSERT INTO users VALUES (1, 'alice', 'then')")
    old.execute("INSERT INTO jobs(owner_id, channel_id, kind, prompt, params, model, seed, cost, status, created_at)"
                " VALUES (1, 2, 'imagine', 'a fox', '{\"width\": 64, \"height\": 64, \"steps\": 4, \"guidance\": 5}',"
                " 'tiny',"
                " 1, 4, 'done', 'then')")
    old.execute("INSERT INTO ledger(user_id, job_id, amount, reason, period, created_at)"
                " VALUES (1, 1, 4, 'charge', '2026-11-22', 'then')")
    old.commit()
    old.close()

    store = await Store.open(path)
    try:
        assert await store.ledger(1) == [{"job_id": 1, "amount": 4, "reason": "charge", "period": "2026-11-22"}]
        assert (await store.get_job(1)).lane == "fast"
        await Quotas(store).grant(1, "alice", 4, period_days=1)  # a row with no job is allowed now
        assert [row["reason"] for row in await store.ledger(1)] == ["charge", "grant"]
    finally:
        await store.close()


async def test_a_repeat_is_accepted_whole_or_not_at_all(store):
    quotas, limits = Quotas(store), Limits(max_waiting=3, queue_limit=100, period_days=1, relax_allowed=True)
    assert len(await quotas.accept(new_job() * 2, "fast", 40, limits)) == 2
    assert await quotas.accept(new_job() * 2, "fast", 40, limits) == QueueRefused("user", 2, 3)
    assert isinstance(await quotas.accept(new_job(2) * 3, "fast", 8, limits), Refused)  # 12 images, 8 allowed
    assert len(await store.recent_jobs(1)) == 2 and await store.recent_jobs(2) == []
    assert await store.used(1) == 8 and await store.used(2) == 0
