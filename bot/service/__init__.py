"""The job life cycle between the Discord layer and the engine. Imports the store and the engine, never discord."""

from bot.service.jobs import COST, GRID_SIZE, JobListener, JobService, Requester, UserError, VARIATION_STRENGTH

__all__ = ["COST", "GRID_SIZE", "JobListener", "JobService", "Requester", "UserError", "VARIATION_STRENGTH"]
