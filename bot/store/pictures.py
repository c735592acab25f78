"""What the store knows of the pictures members gave: /describe's answers (so its buttons, which name only the
answer's id, work after a restart), and which kept pictures are still in use (for retention)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from bot.recipe import Recipe
from bot.store.db import Store, utcnow


@dataclass(frozen=True)
class Description:
    id: int
    owner_id: int
    digest: str
    model: str
    prompts: tuple[str, ...]
    created_at: str


class Pictures:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add_description(self, owner_id: int, digest: str, model: str, prompts: list[str]) -> Description:
        async with self.store.transaction() as db:
            stamp = utcnow().isoformat()
            cursor = await db.execute(
                "INSERT INTO descriptions(owner_id, digest, model, prompts, created_at) VALUES (?, ?, ?, ?, ?)",
                (owner_id, digest, model, json.dumps(prompts), stamp))
            return Description(cursor.lastrowid, owner_id, digest, model, tuple(prompts), stamp)

    async def description(self, description_id: int) -> Description | None:
        row = await self.store.row(
            "SELECT id, owner_id, digest, model, prompts, created_at FROM descriptions WHERE id = ?", (description_id,))
        if row is None:
            return None
        return Description(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), row[5])

    async def in_use(self, since: datetime) -> set[str]:
        """Digests still needed: named by a job whose images are kept, or by a /describe answer since `since`."""
        parts = [f"SELECT value FROM jobs, json_each(jobs.params, '$.{name}') WHERE jobs.pruned_at IS NULL"
                 for name in Recipe.PICTURES]  # the recipe fields naming kept pictures by digest
        parts.append("SELECT digest FROM descriptions WHERE created_at >= ?")
        rows = await self.store.rows(" UNION ".join(parts), (since.isoformat(),))
        return {row[0] for row in rows}
