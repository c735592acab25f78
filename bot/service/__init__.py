"""The job life cycle between the Discord layer and the engine. Imports the store and the engine, never discord.
Front ends use the facades (`Jobs`, `Accounts`, `Admin`) built by `open_services`, and the records they
hand back (re-exported here, so a front end never imports the store)."""

from bot.service.facades import Accounts, Admin, ImageLimits, Jobs, Services, open_services
from bot.service.fetch import Upload
from bot.service.running import JobListener
from bot.service.users import Requester, UserError
from bot.store import Job, Refused, StoredImage
from bot.store.admin import AuditEntry
from bot.store.pictures import Description
from bot.store.preferences import MAX_OPTIONS, UserPreferences
from bot.store.quotas import Account

__all__ = ["MAX_OPTIONS", "Account", "Accounts", "Admin", "AuditEntry", "Description", "ImageLimits", "Job",
           "JobListener", "Jobs", "Refused", "Requester", "Services", "StoredImage", "Upload", "UserError",
           "UserPreferences", "open_services"]
