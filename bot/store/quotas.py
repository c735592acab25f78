"""Quotas in SQLite: accepting a job against every limit at once, modes, allowances, admin changes, history.

The ledger stays the one source of truth for usage: charges (+), refunds (-), and admin grants and resets
(-, with no job). What a user has used in a period is the sum of their ledger rows for it. Every check
that decides whether a job is accepted (queue full, too many waiting, allowance) and the insert of the job
and its charge run in one transaction, so any number of concurrent requests can never pass a limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.recipe import JobStatus
from bot.store.archive import prompt_search
from bot.store.db import Job, NewJob, Refused, Store, period_key, period_start, utcnow

MODES = ("fast", "relax")


@dataclass(frozen=True)
class Limits:
    max_waiting: int  # per user: jobs accepted and not yet started
    queue_limit: int  # the whole bot: jobs accepted and not yet started
    period_days: int
    relax_allowed: bool


@dataclass(frozen=True)
class QueueRefused:
    """Refused for the queue's sake, not the allowance: `scope` is "user" or "queue"."""
    scope: str
    waiting: int
    limit: int


@dataclass(frozen=True)
class Account:
    mode: str
    allowance: int  # fast images a period
    used: int  # ledger sum for the current period
    resets_at: datetime
    lifetime_images: int

    @property
    def left(self) -> int:
        return max(self.allowance - self.used, 0)


class Quotas:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- accepting ----------------------------------------------------------------------------------

    async def accept(self, jobs: list[NewJob], lane: str, allowance: int, limits: Limits,
                     now: datetime | None = None) -> list[Job] | Refused | QueueRefused:
        """Queue the jobs (one, or a --repeat's) and charge them (relax: free), all of them or none: a
        refusal says which limit refused them, and nothing changes."""
        now = now or utcnow()
        period, stamp = period_key(now, limits.period_days), now.isoformat()
        owner = jobs[0].owner_id
        ids: list[int] = []
        async with self.store.transaction() as db:
            waiting_all = await self._count("SELECT COUNT(*) FROM jobs WHERE status = ?", (JobStatus.QUEUED,))
            if waiting_all + len(jobs) > limits.queue_limit:
                return QueueRefused("queue", waiting_all, limits.queue_limit)
            waiting = await self._count("SELECT COUNT(*) FROM jobs WHERE owner_id = ? AND status = ?",
                                        (owner, JobStatus.QUEUED))
            if waiting + len(jobs) > limits.max_waiting:
                return QueueRefused("user", waiting, limits.max_waiting)
            cost = sum(new.cost for new in jobs) if lane == "fast" else 0
            if cost:
                used = await self._used(owner, period)
                if used + cost > allowance:
                    return Refused(remaining=max(allowance - used, 0),
                                   resets_at=period_start(now, limits.period_days) + timedelta(days=limits.period_days),
                                   relax_allowed=limits.relax_allowed)
            await self._ensure_user(db, owner, jobs[0].owner_name, stamp)
            for new in jobs:
                recipe, charge = new.recipe, new.cost if lane == "fast" else 0
                cursor = await db.execute(
                    "INSERT INTO jobs(owner_id, guild_id, channel_id, kind, prompt, negative_prompt, params,"
                    " model, seed, cost, status, parent_job_id, parent_index, created_at, lane, private)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (owner, new.guild_id, new.channel_id, new.kind, recipe.prompt, recipe.negative_prompt,
                     json.dumps(recipe.params()), recipe.model, recipe.seed, charge, JobStatus.QUEUED,
                     new.parent_job_id, new.parent_index, stamp, lane, int(new.private)))
                ids.append(cursor.lastrowid)
                if charge:
                    await db.execute(
                        "INSERT INTO ledger(user_id, job_id, amount, reason, period, created_at)"
                        " VALUES (?, ?, ?, 'charge', ?, ?)", (owner, cursor.lastrowid, charge, period, stamp))
        return [await self.store.get_job(job_id) for job_id in ids]

    # --- what a user has ------------------------------------------------------------------------------

    async def mode(self, user_id: int) -> str:
        row = await self._row("SELECT mode FROM users WHERE id = ?", (user_id,))
        return row[0] if row else "fast"

    async def set_mode(self, user_id: int, name: str, mode: str) -> None:
        assert mode in MODES
        async with self.store.transaction() as db:
            await self._ensure_user(db, user_id, name, utcnow().isoformat())
            await db.execute("UPDATE users SET mode = ? WHERE id = ?", (mode, user_id))

    async def allowance(self, user_id: int, guild_id: int | None, role_ids: tuple[int, ...], default: int) -> int:
        """An admin's /quota set for the user, else the best tier of their roles, else the default."""
        row = await self._row("SELECT allowance FROM users WHERE id = ?", (user_id,))
        if row and row[0] is not None:
            return row[0]
        if role_ids:
            marks = ",".join("?" * len(role_ids))
            tier = await self._row(f"SELECT MAX(images) FROM quota_tiers WHERE guild_id = ? AND role_id IN ({marks})",
                                   (guild_id or 0, *role_ids))
            if tier and tier[0] is not None:
                return tier[0]
        return default

    async def account(self, user_id: int, allowance: int, period_days: int, now: datetime | None = None) -> Account:
        now = now or utcnow()
        lifetime = await self._count(
            "SELECT COUNT(*) FROM images i JOIN jobs j ON j.id = i.job_id WHERE j.owner_id = ? AND j.status = ?",
            (user_id, JobStatus.DONE))
        return Account(mode=await self.mode(user_id), allowance=allowance,
                       used=await self._used(user_id, period_key(now, period_days)),
                       resets_at=period_start(now, period_days) + timedelta(days=period_days),
                       lifetime_images=lifetime)

    # --- admins ---------------------------------------------------------------------------------------

    async def set_allowance(self, user_id: int, name: str, images: int | None) -> None:
        """/quota set: the user's own allowance a period (None: back to their tier or the default)."""
        async with self.store.transaction() as db:
            await self._ensure_user(db, user_id, name, utcnow().isoformat())
            await db.execute("UPDATE users SET allowance = ? WHERE id = ?", (images, user_id))

    async def grant(self, user_id: int, name: str, images: int, period_days: int) -> None:
        """/quota grant: extra images for the current period, as a ledger row."""
        await self._adjust(user_id, name, lambda used: -images, "grant", period_days)

    async def reset(self, user_id: int, name: str, period_days: int) -> int:
        """/quota reset: the current period's usage (charges, refunds, earlier resets) back to zero, its
        grants kept; returns how much was used."""
        return -await self._adjust(user_id, name, lambda used: -used, "reset", period_days)

    async def set_tier(self, guild_id: int | None, role_id: int, images: int | None) -> None:
        async with self.store.transaction() as db:
            if images is None:
                await db.execute("DELETE FROM quota_tiers WHERE guild_id = ? AND role_id = ?", (guild_id or 0, role_id))
            else:
                await db.execute(
                    "INSERT INTO quota_tiers(guild_id, role_id, images) VALUES (?, ?, ?)"
                    " ON CONFLICT(guild_id, role_id) DO UPDATE SET images = excluded.images",
                    (guild_id or 0, role_id, images))

    async def _adjust(self, user_id: int, name: str, amount_for, reason: str, period_days: int) -> int:
        """Write one ledger row with no job: `amount_for(usage)`, where usage is the period's images used,
        grants left out (a grant is extra allowance, not usage: a reset keeps it)."""
        now = utcnow()
        period = period_key(now, period_days)
        async with self.store.transaction() as db:
            await self._ensure_user(db, user_id, name, now.isoformat())
            amount = amount_for(await self._count(
                "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE user_id = ? AND period = ? AND reason != 'grant'",
                (user_id, period)))
            if amount:
                await db.execute(
                    "INSERT INTO ledger(user_id, job_id, amount, reason, period, created_at)"
                    " VALUES (?, NULL, ?, ?, ?, ?)", (user_id, amount, reason, period, now.isoformat()))
            return amount

    # --- history and retention -----------------------------------------------------------------------

    async def history(self, owner_id: int, page: int, size: int, text: str = "") -> tuple[list[Job], int]:
        """One page (0-based, newest first) of the user's jobs, whatever their status, whose prompt matches
        `text` (the archive's search: every word, the last one possibly unfinished; see bot/store/archive.py);
        and how many jobs match in all."""
        search, search_args = prompt_search(text)
        where, args = "WHERE owner_id = ?" + (f" AND {search}" if search else ""), (owner_id, *search_args)
        total = await self._count(f"SELECT COUNT(*) FROM jobs {where}", args)
        jobs = await self.store.jobs(f"{where} ORDER BY id DESC LIMIT ? OFFSET ?", (*args, size, page * size))
        return jobs, total

    async def prunable(self, finished_before: datetime, limit: int = 500) -> list[int]:
        """Finished jobs, older than the retention period, whose image files are still kept."""
        rows = await self.store.rows(
            "SELECT id FROM jobs WHERE status = ? AND pruned_at IS NULL AND finished_at < ? ORDER BY id LIMIT ?",
            (JobStatus.DONE, finished_before.isoformat(), limit))
        return [row[0] for row in rows]

    async def mark_pruned(self, job_ids: list[int]) -> None:
        async with self.store.transaction() as db:
            await db.executemany("UPDATE jobs SET pruned_at = ? WHERE id = ?",
                                 [(utcnow().isoformat(), job_id) for job_id in job_ids])

    # --- helpers ----------------------------------------------------------------------------------------

    async def _ensure_user(self, db, user_id: int, name: str, stamp: str) -> None:
        await db.execute(
            "INSERT INTO users(id, name, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET name = excluded.name", (user_id, name, stamp))

    async def _used(self, user_id: int, period: str) -> int:
        return await self._count(
            "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE user_id = ? AND period = ?", (user_id, period))

    async def _count(self, sql: str, args: tuple) -> int:
        return await self.store.value(sql, args)

    async def _row(self, sql: str, args: tuple):
        return await self.store.row(sql, args)
