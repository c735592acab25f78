"""The queue rules and quotas a job is accepted under, and what /info, /fast, /relax and /quota do.

Every refusal happens here, when a job is asked for, with a message that says what was wrong and what to
do; a job once accepted is never dropped for the queue's sake later.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.store import Job, NewJob, Refused, Store
from bot.store.quotas import Account, Limits, Quotas, QueueRefused


class QuotaError(Exception):
    """Raised to the service as a UserError (kept separate so this module needs nothing of jobs.py)."""


@dataclass(frozen=True)
class QuotaRules:
    fast_images: int  # the default fast allowance a period
    period_days: int = 1
    max_running: int = 3  # per user, enforced by the engine's fair queue
    max_waiting: int = 10  # per user
    queue_limit: int = 100  # the whole bot
    relax_allowed: bool = True

    @property
    def limits(self) -> Limits:
        return Limits(max_waiting=self.max_waiting, queue_limit=self.queue_limit,
                      period_days=self.period_days, relax_allowed=self.relax_allowed)


class QuotaService:
    def __init__(self, store: Store, rules: QuotaRules) -> None:
        self.rules = rules
        self.quotas = Quotas(store)

    async def accept(self, jobs: list[NewJob], role_ids: tuple[int, ...]) -> list[Job] | Refused:
        """Accept and charge all of one user's new jobs in one transaction, or none (QuotaError, Refused)."""
        owner = jobs[0]
        lane = await self.lane_for(owner.owner_id)
        allowance = await self.allowance(owner.owner_id, owner.guild_id, role_ids)
        outcome = await self.quotas.accept(jobs, lane, allowance, self.rules.limits)
        if isinstance(outcome, QueueRefused):
            raise QuotaError(refusal_text(outcome))
        return outcome

    async def lane_for(self, user_id: int) -> str:
        mode = await self.quotas.mode(user_id)
        return "relax" if mode == "relax" and self.rules.relax_allowed else "fast"

    async def allowance(self, user_id: int, guild_id: int | None, role_ids: tuple[int, ...]) -> int:
        return await self.quotas.allowance(user_id, guild_id, role_ids, self.rules.fast_images)

    async def account(self, user_id: int, guild_id: int | None, role_ids: tuple[int, ...]) -> Account:
        allowance = await self.allowance(user_id, guild_id, role_ids)
        return await self.quotas.account(user_id, allowance, self.rules.period_days)

    async def set_mode(self, user_id: int, name: str, mode: str) -> None:
        if mode == "relax" and not self.rules.relax_allowed:
            raise QuotaError("Relax mode is turned off on this bot (RELAX_ALLOWED=false), so you stay in fast "
                             "mode. Ask an admin if you need more fast images.")
        await self.quotas.set_mode(user_id, name, mode)


def refusal_text(refused: QueueRefused) -> str:
    if refused.scope == "user":
        return (f"You already have {refused.waiting} jobs waiting in the queue (the limit is {refused.limit}). "
                "Wait for one to start, or cancel one with /cancel, then try again. Nothing was queued or charged.")
    return (f"The queue is full ({refused.waiting} jobs waiting, the limit is {refused.limit}), so this job was "
            "not queued and nothing was charged. Please try again in a few minutes.")


def allowance_refusal(refused: Refused, resets: str) -> str:
    """What a member is told when a job would pass their fast allowance: what is left, when it resets
    (`resets`: that moment as the front end writes it, e.g. a Discord timestamp), and what to do."""
    relax = (" Or switch to /relax: relax jobs cost nothing and run whenever no fast job waits."
             if refused.relax_allowed else "")
    return (f"Not enough fast allowance left: you have {refused.remaining} image"
            f"{'s' if refused.remaining != 1 else ''} left this period (a grid costs 4, an upscale 1). "
            f"Your allowance resets {resets}. Nothing was queued or charged.{relax}")


class QuotaAdmin:
    """/quota set|grant|reset|tier: each change goes to the ledger or the quota tables (the Discord layer's
    AdminCog audits it, as every admin command)."""

    def __init__(self, store: Store, rules: QuotaRules) -> None:
        self.rules = rules
        self.quotas = Quotas(store)

    async def set_images(self, user_id: int, name: str, images: int) -> str:
        await self.quotas.set_allowance(user_id, name, images)
        return f"{name} now has {images} fast images a period."

    async def grant(self, user_id: int, name: str, images: int) -> str:
        await self.quotas.grant(user_id, name, images, self.rules.period_days)
        return f"{name} got {images} extra fast images for this period."

    async def reset(self, user_id: int, name: str) -> str:
        used = await self.quotas.reset(user_id, name, self.rules.period_days)
        return f"{name}'s usage this period is back to 0 (it was {used})."

    async def tier(self, guild_id: int | None, role_id: int, role_name: str, images: int) -> str:
        await self.quotas.set_tier(guild_id, role_id, images or None)
        if images:
            return f"Members with the role {role_name} now have {images} fast images a period (unless set per user)."
        return f"The tier of {role_name} is removed; its members get the default allowance."
