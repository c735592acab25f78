"""Web sessions ended by logout (bot/web/auth.py): their ids until they would have expired, so a copy of
the cookie kept somewhere stays refused after a restart too."""

from __future__ import annotations

from datetime import datetime

from bot.store.db import Store, utcnow


class WebLogouts:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, session_id: str, expires_at: datetime) -> None:
        async with self.store.transaction() as db:
            await db.execute("INSERT OR IGNORE INTO web_logouts(session_id, expires_at) VALUES (?, ?)",
                             (session_id, expires_at.isoformat()))

    async def current(self, now: datetime | None = None) -> set[str]:
        """The ids of ended sessions that have not expired yet; the expired ones are forgotten."""
        now = (now or utcnow()).isoformat()
        async with self.store.transaction() as db:
            await db.execute("DELETE FROM web_logouts WHERE expires_at <= ?", (now,))
        return {row[0] for row in await self.store.rows("SELECT session_id FROM web_logouts")}
