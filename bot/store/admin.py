"""What admins decide, per server: the default model, bans, banned words, NSFW handling; and the audit
table of every admin action (who, what, when). Direct messages count as server 0."""

from __future__ import annotations

from dataclasses import dataclass

from bot.recipe import JobStatus
from bot.store.db import Store, utcnow


SETTING_COLUMNS = ("default_model", "nsfw", "nsfw_age_restricted")


@dataclass(frozen=True)
class AuditEntry:
    guild_id: int
    user_id: int
    user_name: str
    action: str
    detail: str
    outcome: str
    created_at: str


class AdminStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- server settings --------------------------------------------------------------------------

    async def guild_setting(self, guild_id: int, column: str) -> str | int | None:
        assert column in SETTING_COLUMNS
        return await self._one(f"SELECT {column} FROM guild_settings WHERE guild_id = ?", (guild_id,))

    async def set_guild_setting(self, guild_id: int, column: str, value: str | int | None) -> None:
        assert column in SETTING_COLUMNS
        async with self.store.transaction() as db:
            await db.execute(
                f"INSERT INTO guild_settings(guild_id, {column}) VALUES (?, ?) "
                f"ON CONFLICT(guild_id) DO UPDATE SET {column} = excluded.{column}", (guild_id, value))

    # --- bans -------------------------------------------------------------------------------------

    async def ban(self, guild_id: int, user_id: int, banned_by: int, reason: str) -> bool:
        """False if the user was banned already."""
        async with self.store.transaction() as db:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO bans(guild_id, user_id, banned_by, reason, created_at) VALUES (?, ?, ?, ?, ?)",
                (guild_id, user_id, banned_by, reason, utcnow().isoformat()))
            return bool(cursor.rowcount)

    async def unban(self, guild_id: int, user_id: int) -> bool:
        async with self.store.transaction() as db:
            cursor = await db.execute("DELETE FROM bans WHERE guild_id = ? AND user_id = ?", (guild_id, user_id))
            return bool(cursor.rowcount)

    async def banned_users(self, guild_id: int) -> set[int]:
        rows = await self.store.rows("SELECT user_id FROM bans WHERE guild_id = ?", (guild_id,))
        return {row[0] for row in rows}

    # --- banned words -----------------------------------------------------------------------------

    async def add_word(self, guild_id: int, word: str, added_by: int) -> bool:
        async with self.store.transaction() as db:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO banned_words(guild_id, word, added_by, created_at) VALUES (?, ?, ?, ?)",
                (guild_id, word, added_by, utcnow().isoformat()))
            return bool(cursor.rowcount)

    async def remove_word(self, guild_id: int, word: str) -> bool:
        async with self.store.transaction() as db:
            cursor = await db.execute("DELETE FROM banned_words WHERE guild_id = ? AND word = ?", (guild_id, word))
            return bool(cursor.rowcount)

    async def words(self, guild_id: int) -> list[str]:
        rows = await self.store.rows(
                "SELECT word FROM banned_words WHERE guild_id = ? ORDER BY word", (guild_id,))
        return [row[0] for row in rows]

    # --- NSFW flags ---------------------------------------------------------------------------------

    async def flag_images(self, job_id: int, indices: list[int]) -> None:
        async with self.store.transaction() as db:
            await db.executemany("INSERT OR IGNORE INTO nsfw_images(job_id, idx) VALUES (?, ?)",
                                 [(job_id, index) for index in indices])

    async def flagged(self, job_id: int) -> set[int]:
        rows = await self.store.rows("SELECT idx FROM nsfw_images WHERE job_id = ?", (job_id,))
        return {row[0] for row in rows}

    # --- audit ------------------------------------------------------------------------------------

    async def audit(self, guild_id: int, user_id: int, user_name: str, action: str, detail: str,
                    outcome: str) -> None:
        async with self.store.transaction() as db:
            await db.execute(
                "INSERT INTO audit(guild_id, user_id, user_name, action, detail, outcome, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (guild_id, user_id, user_name, action, detail, outcome, utcnow().isoformat()))

    async def audit_log(self, guild_id: int, limit: int = 20) -> list[AuditEntry]:
        rows = await self.store.rows(
                "SELECT guild_id, user_id, user_name, action, detail, outcome, created_at FROM audit"
                " WHERE guild_id = ? ORDER BY id DESC LIMIT ?", (guild_id, limit))
        return [AuditEntry(*row) for row in rows]

    # --- statistics -------------------------------------------------------------------------------

    async def job_stats(self, since: str) -> list[dict]:
        """Per model, jobs finished since `since` (ISO time): count, images, mean seconds from start to end."""
        rows = await self.store.rows(
                "SELECT j.model AS model, COUNT(*) AS jobs,"
                " (SELECT COUNT(*) FROM images i JOIN jobs k ON k.id = i.job_id"
                "  WHERE k.model = j.model AND k.status = ? AND k.finished_at >= ?) AS images,"
                " AVG((julianday(j.finished_at) - julianday(j.started_at)) * 86400.0) AS mean_seconds"
                " FROM jobs j WHERE j.status = ? AND j.finished_at >= ? GROUP BY j.model ORDER BY j.model",
                (JobStatus.DONE, since, JobStatus.DONE, since))
        return [dict(row) for row in rows]

    async def _one(self, sql: str, args: tuple):
        return await self.store.value(sql, args)

    # --- the operators' status page (bot/web/status.py) ------------------------------------------------

    async def active_by_user(self) -> list[dict]:
        """Jobs accepted and not ended, per member, lane and status (queued | running), by member name."""
        rows = await self.store.rows(
                "SELECT COALESCE(u.name, CAST(j.owner_id AS TEXT)) AS name, j.lane AS lane, j.status AS status,"
                " COUNT(*) AS jobs FROM jobs j LEFT JOIN users u ON u.id = j.owner_id"
                " WHERE j.status IN (?, ?) GROUP BY j.owner_id, j.lane, j.status ORDER BY name",
                (JobStatus.QUEUED, JobStatus.RUNNING))
        return [dict(row) for row in rows]

    async def jobs_per_hour(self, since: str) -> list[dict]:
        """Jobs done and failed since `since` (ISO time), per hour they finished in ("2026-01-02T13")."""
        rows = await self.store.rows(
                "SELECT substr(finished_at, 1, 13) AS hour, status, COUNT(*) AS jobs FROM jobs"
                " WHERE finished_at >= ? AND status IN (?, ?) GROUP BY hour, status ORDER BY hour",
                (since, JobStatus.DONE, JobStatus.FAILED))
        return [dict(row) for row in rows]

    async def recent_failures(self, limit: int = 10) -> list[dict]:
        """The last failed jobs, newest first: when, which, and the reason the member was told."""
        rows = await self.store.rows(
                "SELECT id, kind, model, error, finished_at FROM jobs WHERE status = ?"
                " ORDER BY finished_at DESC, id DESC LIMIT ?", (JobStatus.FAILED, limit))
        return [dict(row) for row in rows]
