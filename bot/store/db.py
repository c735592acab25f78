"""The SQLite store: users, jobs, images and the usage ledger.

One aiosqlite connection in WAL mode. Writes that must see and change the same rows (charge against an
allowance, finish-and-refund) run under one lock inside one transaction, so 200 concurrent requests can
never spend the same allowance twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import aiosqlite

from bot.store.migrations import MIGRATIONS

ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def period_of(moment: datetime) -> str:
    """The quota period a moment falls in: its UTC day."""
    return moment.astimezone(timezone.utc).date().isoformat()


def period_end(period: str) -> datetime:
    """When a period's allowance resets: the next UTC midnight."""
    day = datetime.fromisoformat(period).replace(tzinfo=timezone.utc)
    return day + timedelta(days=1)


@dataclass(frozen=True)
class NewJob:
    owner_id: int
    owner_name: str
    guild_id: int | None
    channel_id: int
    kind: str
    prompt: str
    model: str
    seed: int
    cost: int
    params: dict[str, Any] = field(default_factory=dict)
    negative_prompt: str = ""
    parent_job_id: int | None = None
    parent_index: int | None = None


@dataclass(frozen=True)
class Job:
    id: int
    owner_id: int
    guild_id: int | None
    channel_id: int
    kind: str
    prompt: str
    negative_prompt: str
    params: dict[str, Any]
    model: str
    seed: int
    cost: int
    status: str
    error: str | None
    parent_job_id: int | None
    parent_index: int | None
    message_id: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    lane: str = "fast"  # fast | relax (migration 0005)
    pruned_at: str | None = None  # set when retention removed its image files

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


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

    # --- accepting and finishing jobs -------------------------------------------------------------

    async def accept_job(self, new: NewJob, allowance: int, now: datetime | None = None) -> Job | Refused:
        """Charge the job's cost and queue it, or refuse it if the allowance cannot cover it."""
        now = now or utcnow()
        period, stamp = period_of(now), now.isoformat()
        async with self.transaction() as db:
            used = await self._used(new.owner_id, period)
            if used + new.cost > allowance:
                return Refused(remaining=max(allowance - used, 0), resets_at=period_end(period))
            await db.execute(
                "INSERT INTO users(id, name, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET name = excluded.name",
                (new.owner_id, new.owner_name, stamp),
            )
            cursor = await db.execute(
                "INSERT INTO jobs(owner_id, guild_id, channel_id, kind, prompt, negative_prompt, params,"
                " model, seed, cost, status, parent_job_id, parent_index, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                (new.owner_id, new.guild_id, new.channel_id, new.kind, new.prompt, new.negative_prompt,
                 json.dumps(new.params), new.model, new.seed, new.cost, new.parent_job_id,
                 new.parent_index, stamp),
            )
            job_id = cursor.lastrowid
            await db.execute(
                "INSERT INTO ledger(user_id, job_id, amount, reason, period, created_at)"
                " VALUES (?, ?, ?, 'charge', ?, ?)",
                (new.owner_id, job_id, new.cost, period, stamp),
            )
        return await self.get_job(job_id)

    async def mark_running(self, job_id: int) -> None:
        await self._execute(
            "UPDATE jobs SET status = 'running', started_at = ? WHERE id = ? AND status = 'queued'",
            (utcnow().isoformat(), job_id),
        )

    async def finish_job(self, job_id: int, images: list[StoredImage]) -> None:
        async with self.transaction() as db:
            await db.executemany(
                "INSERT OR REPLACE INTO images(job_id, idx, seed, path, width, height) VALUES (?, ?, ?, ?, ?, ?)",
                [(i.job_id, i.index, i.seed, i.path, i.width, i.height) for i in images],
            )
            await db.execute(
                "UPDATE jobs SET status = 'done', finished_at = ? WHERE id = ?", (utcnow().isoformat(), job_id)
            )

    async def fail_job(self, job_id: int, error: str, status: str = "failed") -> bool:
        """Mark a job failed (or cancelled) and refund its charge. False if it had already finished."""
        assert status in ("failed", "cancelled")
        async with self.transaction() as db:
            cursor = await db.execute(
                "UPDATE jobs SET status = ?, error = ?, finished_at = ? WHERE id = ? AND status IN (?, ?)",
                (status, error, utcnow().isoformat(), job_id, *ACTIVE),
            )
            if cursor.rowcount:
                # The refund counts against the period of the charge it undoes.
                await db.execute(
                    "INSERT INTO ledger(user_id, job_id, amount, reason, period, created_at)"
                    " SELECT user_id, job_id, -amount, 'refund', period, ? FROM ledger"
                    " WHERE job_id = ? AND reason = 'charge'",
                    (utcnow().isoformat(), job_id),
                )
            return bool(cursor.rowcount)

    async def set_message(self, job_id: int, message_id: int) -> None:
        await self._execute("UPDATE jobs SET message_id = ? WHERE id = ?", (message_id, job_id))

    # --- reading ----------------------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job | None:
        rows = await self._jobs("WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    async def recent_jobs(self, owner_id: int, limit: int = 10) -> list[Job]:
        return await self._jobs("WHERE owner_id = ? ORDER BY id DESC LIMIT ?", (owner_id, limit))

    async def active_jobs(self, owner_id: int | None = None) -> list[Job]:
        if owner_id is None:
            return await self._jobs("WHERE status IN (?, ?) ORDER BY id", ACTIVE)
        return await self._jobs("WHERE owner_id = ? AND status IN (?, ?) ORDER BY id", (owner_id, *ACTIVE))

    async def images(self, job_id: int) -> list[StoredImage]:
        async with self._db.execute(
            "SELECT job_id, idx, seed, path, width, height FROM images WHERE job_id = ? ORDER BY idx", (job_id,)
        ) as cursor:
            return [StoredImage(*row) for row in await cursor.fetchall()]

    async def used(self, user_id: int, now: datetime | None = None) -> int:
        """Images charged to the user in the current period, refunds deducted."""
        return await self._used(user_id, period_of(now or utcnow()))

    async def ledger(self, user_id: int) -> list[dict[str, Any]]:
        async with self._db.execute(
            "SELECT job_id, amount, reason, period FROM ledger WHERE user_id = ? ORDER BY id", (user_id,)
        ) as cursor:
            return [dict(row) for row in await cursor.fetchall()]

    async def _used(self, user_id: int, period: str) -> int:
        async with self._db.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE user_id = ? AND period = ?", (user_id, period)
        ) as cursor:
            return (await cursor.fetchone())[0]

    async def _jobs(self, where: str, args: tuple) -> list[Job]:
        async with self._db.execute(f"SELECT * FROM jobs {where}", args) as cursor:
            rows = await cursor.fetchall()
        return [Job(**{**dict(row), "params": json.loads(row["params"])}) for row in rows]

    async def _execute(self, sql: str, args: tuple) -> None:
        async with self._write:
            await self._db.execute(sql, args)
