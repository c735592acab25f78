"""Each user's /settings and /prefer: default model, stylize, quality, variation strength, Remix, private
replies, prompt suffix, and named custom options. A user with no row has every default."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from bot.store.db import Store

MAX_OPTIONS = 25  # one select menu's worth; Midjourney's limit is 20


@dataclass(frozen=True)
class UserPreferences:
    model: str | None = None
    stylize: int | None = None
    quality: float | None = None
    variation: str = "strong"
    remix: bool = False
    private: bool = False
    suffix: str = ""
    options: dict[str, str] = field(default_factory=dict)


_COLUMNS = [f.name for f in fields(UserPreferences) if f.name != "options"]


class Preferences:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, user_id: int) -> UserPreferences:
        row = await self.store.row(f"SELECT {', '.join(_COLUMNS)} FROM preferences WHERE user_id = ?", (user_id,))
        options = {name: value for name, value in await self.store.rows(
            "SELECT name, value FROM custom_options WHERE user_id = ? ORDER BY name", (user_id,))}
        if row is None:
            return UserPreferences(options=options)
        values = dict(zip(_COLUMNS, row))
        values["remix"], values["private"] = bool(values["remix"]), bool(values["private"])
        return UserPreferences(**values, options=options)

    async def update(self, user_id: int, **changes) -> UserPreferences:
        """Change some of a user's settings; the rest stay as they were."""
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown preferences {sorted(unknown)}")
        async with self.store.transaction() as db:
            current = replace(await self.get(user_id), **changes)
            values = [getattr(current, name) for name in _COLUMNS]
            await db.execute(
                f"INSERT OR REPLACE INTO preferences(user_id, {', '.join(_COLUMNS)})"
                f" VALUES (?, {', '.join('?' for _ in _COLUMNS)})", (user_id, *values))
        return current

    async def set_option(self, user_id: int, name: str, value: str) -> bool:
        """Store a custom option; False if the user already has MAX_OPTIONS others."""
        async with self.store.transaction() as db:
            async with db.execute("SELECT COUNT(*) FROM custom_options WHERE user_id = ? AND name != ?",
                                  (user_id, name)) as cur:
                if (await cur.fetchone())[0] >= MAX_OPTIONS:
                    return False
            await db.execute("INSERT OR REPLACE INTO custom_options(user_id, name, value) VALUES (?, ?, ?)",
                             (user_id, name, value))
        return True

    async def delete_option(self, user_id: int, name: str) -> bool:
        async with self.store.transaction() as db:
            cursor = await db.execute("DELETE FROM custom_options WHERE user_id = ? AND name = ?", (user_id, name))
            return bool(cursor.rowcount)
