"""Retention: the image files of finished jobs older than RETENTION_DAYS are deleted; the jobs stay, marked
`pruned_at`, so /history, /show and the buttons can say the images are gone instead of breaking."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path

from bot.service.images import ImageFiles
from bot.store import Store, utcnow
from bot.store.quotas import Quotas

log = logging.getLogger(__name__)

EVERY_SECONDS = 3600.0


async def prune_images(store: Store, data_dir: Path, days: int, now: datetime | None = None) -> list[int]:
    """Delete the images of jobs finished more than `days` days before `now`; returns the jobs pruned."""
    quotas, files = Quotas(store), ImageFiles(data_dir)
    pruned: list[int] = []
    while batch := await quotas.prunable((now or utcnow()) - timedelta(days=days)):
        for job_id in batch:
            await asyncio.to_thread(files.remove, job_id)
        await quotas.mark_pruned(batch)
        pruned += batch
    if pruned:
        log.info("retention: deleted the images of %d jobs older than %d days", len(pruned), days)
    return pruned


async def prune_forever(store: Store, data_dir: Path, days: int) -> None:
    """The background task: prune now, then once an hour."""
    while True:
        try:
            await prune_images(store, data_dir, days)
        except Exception:  # a failed round (disk, database busy) must not end the task
            log.exception("retention: pruning failed; trying again in an hour")
        await asyncio.sleep(EVERY_SECONDS)
