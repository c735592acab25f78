"""The SQLite store: users, jobs, images and the usage ledger.

One aiosqlite connection in WAL mode. Writes that must see and change the same rows (charge against an
allowance, finish-and-refund) run under one lock inside one transaction, so 200 concurrent requests can
never spend the same allowance twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import aiosqlite

from bot.recipe import ACTIVE, JobKind, JobStatus, Recipe
from bot.store.migrations import MIGRATIONS


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_INTEGER = 2**63 - 1  # SQLite's largest INTEGER


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def period_start(moment: datetime, days: int) -> datetime:
    """The start of the quota period a moment falls in: periods are `days` UTC days long, counted from 1970."""
    elapsed = (moment.astimezone(timezone.utc) - EPOCH).days
    return EPOCH + timedelta(days=elapsed - elapsed % days)


def period_key(moment: datetime, days: int) -> str:
    """The ledger's name for a period: its first day (the UTC date itself when periods are one day)."""
    return period_start(moment, days).date().isoformat()


@dataclass(frozen=True)
class NewJob:
    owner_id: int
    owner_name: str
    guild_id: int | None
    channel_id: int
    kind: JobKind
    recipe: Recipe
    parent_job_id: int | None = None
    parent_index: int | None = None
    private: bool = False  # delivered as replies only its owner sees (their /settings when accepted)

    @property
    def cost(self) -> int:
        return self.kind.cost


@dataclass(frozen=True)
class Job:
    id: int
    owner_id: int
    guild_id: int | None
    channel_id: int
    kind: JobKind
    recipe: Recipe
    cost: int  # what was charged: 0 in relax mode
    status: JobStatus
    error: str | None
    parent_job_id: int | None
    parent_index: int | None
    message_id: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    lane: str = "fast"  # fast | relax (migration 0005)
    pruned_at: str | None = None  # set when retention removed its image files
    delivered_at: str | None = None  # when its message first showed the result (migration 0007)
    private: bool = False  # its replies were only its owner's: not public in the archive (migration 0010)

    @property
    def active(self) -> bool:
        return self.status.active

    # The recipe's columns, read often enough to name.
    @property
    def prompt(self) -> str:
        return self.recipe.prompt

    @property
    def negative_prompt(self) -> str:
        return self.recipe.negative_prompt

    @property
    def model(self) -> str:
        return self.recipe.model

    @property
    def seed(self) -> int:
        return self.recipe.seed


@dataclass(frozen=True)
class StoredImage:
    job_id: int
    index: int
    seed: int
    path: str
    width: int
    height: int


@dataclass(frozen=True)
class Refused:
    """A job refused for its cost: how much is left and when the allowance resets."""
    remaining: int
    resets_at: datetime
    relax_allowed: bool = False  # whether /relax would let the user go on at no cost


class Store:
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection
        self._write = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> "Store":
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, isolation_level=None)  # transactions are explicit
        connection.row_factory = aiosqlite.Row
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA foreign_keys=ON")
        await connection.execute("PRAGMA busy_timeout=5000")
        store = cls(connection)
        await store._migrate()
        return store

    async def close(self) -> None:
        await self._db.close()

    async def _migrate(self) -> None:
        await self._db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        async with self._db.execute("SELECT name FROM migrations") as cursor:
            applied = {row[0] for row in await cursor.fetchall()}
        for name, script in MIGRATIONS:
            if name not in applied:
                stamp = utcnow().isoformat()
                await self._db.executescript(
                    f"BEGIN;\n{script}\nINSERT INTO migrations VALUES ('{name}', '{stamp}');\nCOMMIT;")

    async def applied_migrations(self) -> list[str]:
        async with self._db.execute("SELECT name FROM migrations ORDER BY name") as cursor:
            return [row[0] for row in await cursor.fetchall()]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at a time: what it reads stays true until it commits."""
        async with self._write:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    # --- running and finishing jobs ---------------------------------------------------------------

    async def mark_running(self, job_id: int) -> None:
        await self._execute(
            "UPDATE jobs SET status = ?, started_at = ? WHERE id = ? AND status = ?",
            (JobStatus.RUNNING, utcnow().isoformat(), job_id, JobStatus.QUEUED),
        )

    async def finish_job(self, job_id: int, images: list[StoredImage]) -> None:
        async with self.transaction() as db:
            await db.executemany(
                "INSERT OR REPLACE INTO images(job_id, idx, seed, path, width, height) VALUES (?, ?, ?, ?, ?, ?)",
                [(i.job_id, i.index, i.seed, i.path, i.width, i.height) for i in images],
            )
            await db.execute(
                "UPDATE jobs SET status = ?, finished_at = ? WHERE id = ?", (JobStatus.DONE, utcnow().isoformat(), job_id)
            )

    async def fail_job(self, job_id: int, error: str, status: JobStatus = JobStatus.FAILED) -> bool:
        """Mark a job failed (or cancelled) and refund its charge. False if it had already finished."""
        assert status.refunded
        async with self.transaction() as db:
            cursor = await db.execute(
                "UPDATE jobs SET status = ?, error = ?, finished_at = ? WHERE id = ? AND status IN (?, ?)",
                (status, error, utcnow().isoformat(), job_id, *ACTIVE),
            )
            if cursor.rowcount:
                await self._refund(db, job_id)
            return bool(cursor.rowcount)

    @staticmethod
    async def _refund(db: aiosqlite.Connection, job_id: int) -> None:
        # The refund counts against the period of the charge it undoes.
        await db.execute(
            "INSERT INTO ledger(user_id, job_id, amount, reason, period, created_at)"
            " SELECT user_id, job_id, -amount, 'refund', period, ? FROM ledger WHERE job_id = ? AND reason = 'charge'",
            (utcnow().isoformat(), job_id))

    async def mark_delivered(self, job_id: int, message_id: int | None) -> None:
        """The job's message shows its result: a restart does not deliver it again."""
        await self._execute("UPDATE jobs SET delivered_at = ?, message_id = COALESCE(?, message_id) WHERE id = ?",
                            (utcnow().isoformat(), message_id, job_id))

    async def give_up_delivery(self, job_id: int, error: str) -> bool:
        """A job whose result could not be shown anywhere: failed, and its charge refunded. False if it was
        delivered (or failed) meanwhile."""
        async with self.transaction() as db:
            cursor = await db.execute(
                "UPDATE jobs SET status = ?, error = ? WHERE id = ? AND status = ? AND delivered_at IS NULL",
                (JobStatus.FAILED, error, job_id, JobStatus.DONE))
            if cursor.rowcount:
                await self._refund(db, job_id)
            return bool(cursor.rowcount)

    async def set_message(self, job_id: int, message_id: int) -> None:
        await self._execute("UPDATE jobs SET message_id = ? WHERE id = ?", (message_id, job_id))

    # --- reading ----------------------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job | None:
        if not 0 < job_id <= MAX_INTEGER:  # no such row; SQLite could not even compare it
            return None
        rows = await self.jobs("WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    async def recent_jobs(self, owner_id: int, limit: int = 10) -> list[Job]:
        return await self.jobs("WHERE owner_id = ? ORDER BY id DESC LIMIT ?", (owner_id, limit))

    async def undelivered_jobs(self) -> list[Job]:
        """Jobs whose images are saved but whose message never showed them (a crash, Discord down)."""
        return await self.jobs("WHERE status = ? AND delivered_at IS NULL ORDER BY id", (JobStatus.DONE,))

    async def active_jobs(self, owner_id: int | None = None) -> list[Job]:
        if owner_id is None:
            return await self.jobs("WHERE status IN (?, ?) ORDER BY id", ACTIVE)
        return await self.jobs("WHERE owner_id = ? AND status IN (?, ?) ORDER BY id", (owner_id, *ACTIVE))

    async def images(self, job_id: int) -> list[StoredImage]:
        async with self._db.execute(
            "SELECT job_id, idx, seed, path, width, height FROM images WHERE job_id = ? ORDER BY idx", (job_id,)
        ) as cursor:
            return [StoredImage(*row) for row in await cursor.fetchall()]

    async def used(self, user_id: int, period_days: int = 1, now: datetime | None = None) -> int:
        """Images charged to the user in the quota period `now` falls in, refunds and grants deducted."""
        return await self.value(
            "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE user_id = ? AND period = ?",
            (user_id, period_key(now or utcnow(), period_days)))

    async def ledger(self, user_id: int) -> list[dict[str, Any]]:
        async with self._db.execute(
            "SELECT job_id, amount, reason, period FROM ledger WHERE user_id = ? ORDER BY id", (user_id,)
        ) as cursor:
            return [dict(row) for row in await cursor.fetchall()]

    # --- for the store's other tables (quotas, preferences, admin): the SQL stays in bot/store -------

    async def jobs(self, where: str, args: tuple = ()) -> list[Job]:
        """Jobs matching `where` (a WHERE/ORDER/LIMIT clause with ? marks)."""
        async with self._db.execute(f"SELECT * FROM jobs {where}", args) as cursor:
            return [_job(row) for row in await cursor.fetchall()]

    async def rows(self, sql: str, args: tuple = ()) -> list[aiosqlite.Row]:
        async with self._db.execute(sql, args) as cursor:
            return list(await cursor.fetchall())

    async def row(self, sql: str, args: tuple = ()) -> aiosqlite.Row | None:
        async with self._db.execute(sql, args) as cursor:
            return await cursor.fetchone()

    async def value(self, sql: str, args: tuple = ()) -> Any:
        """The first column of the first row, or None."""
        row = await self.row(sql, args)
        return row[0] if row else None

    async def _execute(self, sql: str, args: tuple) -> None:
        async with self._write:
            await self._db.execute(sql, args)


def _job(row: aiosqlite.Row) -> Job:
    values = dict(row)
    recipe = Recipe.from_params(json.loads(values.pop("params")),
                                **{column: values.pop(column) for column in Recipe.COLUMNS})
    return Job(**{**values, "kind": JobKind(values["kind"]), "status": JobStatus(values["status"]),
                  "recipe": recipe, "private": bool(values.get("private"))})
