"""Retention: the image files of finished jobs older than RETENTION_DAYS are deleted; the jobs stay, marked
`pruned_at`, so /history, /show and the buttons can say the images are gone instead of breaking. A picture a
member gave (bot/service/sources.py) goes once no job with kept images names it and it was not used within
the period."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path

from bot.service.images import ImageFiles
from bot.service.sources import SourceImages
from bot.store import Store, utcnow
from bot.store.pictures import Pictures
from bot.store.quotas import Quotas

log = logging.getLogger(__name__)

EVERY_SECONDS = 3600.0


async def prune_images(store: Store, data_dir: Path, days: int, now: datetime | None = None) -> list[int]:
    """Delete the images of jobs finished more than `days` days before `now`; returns the jobs pruned."""
    quotas, files = Quotas(store), ImageFiles(data_dir)
    cutoff = (now or utcnow()) - timedelta(days=days)
    pruned: list[int] = []
    while batch := await quotas.prunable(cutoff):
        for job_id in batch:
            await asyncio.to_thread(files.remove, job_id)
        await quotas.mark_pruned(batch)
        pruned += batch
    if pruned:
        log.info("retention: deleted the images of %d jobs older than %d days", len(pruned), days)
    await prune_pictures(store, SourceImages(data_dir), cutoff)
    return pruned


async def prune_pictures(store: Store, sources: SourceImages, cutoff: datetime) -> list[str]:
    """Delete the kept pictures no job with images still names and nobody used since `cutoff` (a file's
    mtime is its last use: a job being accepted right now has just touched it)."""
    in_use = await Pictures(store).in_use(cutoff)
    gone = [digest for digest, used in (await asyncio.to_thread(sources.digests)).items()
            if digest not in in_use and used < cutoff.timestamp()]
    for digest in gone:
        await asyncio.to_thread(sources.remove, digest)
    if gone:
        log.info("retention: deleted %d pictures members gave that no kept job uses", len(gone))
    return gone


async def prune_forever(store: Store, data_dir: Path, days: int) -> None:
    """The background task: prune now, then once an hour."""
    while True:
        try:
            await prune_images(store, data_dir, days)
        except Exception:  # a failed round (disk, database busy) must not end the task
            log.exception("retention: pruning failed; trying again in an hour")
        await asyncio.sleep(EVERY_SECONDS)
