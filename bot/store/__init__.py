"""SQLite persistence: jobs, images, users and the usage ledger. Imports neither the engine nor discord."""

from bot.store.db import ACTIVE, FINISHED, Job, NewJob, Refused, Store, StoredImage, period_end, utcnow

__all__ = ["ACTIVE", "FINISHED", "Job", "NewJob", "Refused", "Store", "StoredImage", "period_end", "utcnow"]
