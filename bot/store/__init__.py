"""SQLite persistence: jobs, images, users and the usage ledger. Imports neither the engine nor discord."""

from bot.store.db import Job, NewJob, Refused, Store, StoredImage, utcnow

__all__ = ["Job", "NewJob", "Refused", "Store", "StoredImage", "utcnow"]
