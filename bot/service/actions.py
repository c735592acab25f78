"""What a job's buttons start, wherever they are pressed — under its Discord message (bot/discord_ui/buttons.py)
or in the archive's page (bot/web/actions.py): one table of actions, the same facade call for each, which
jobs carry which action (so a forged one — U on an upscale, V5 — is refused the same way everywhere), and
the one ownership rule: a job's buttons are for its owner and admins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

from bot.service.canvas import PAN_DIRECTIONS, REGIONS
from bot.service.users import Requester
from bot.store import Job, Refused

if TYPE_CHECKING:
    from bot.service.facades import Jobs

IMAGES = range(1, 5)  # U1-U4, V1-V4
NO_INDEX = range(0, 1)
REGION_NAMES = list(REGIONS)  # Vary (Region)'s select: the index is the region's place in this list

NOT_YOURS = ("This is not your job: only the person who started it (or an admin) can {what}. "
             "Make your own with /imagine.")
NOT_HERE = "That button does not belong to job #{job}'s message, so nothing was done. Use the buttons under it."


@dataclass(frozen=True)
class Action:
    """What a button (or its Remix form) starts, and which jobs carry it."""
    start: Callable[[Jobs, Requester, Job, int, str | None], Awaitable[Job | Refused]]  # accepts the new job
    remixable: bool  # with Remix on, it opens the prompt first
    on_grid: bool  # under a grid (else under an upscaled image)
    indices: range = NO_INDEX  # the index it may carry: an image of the grid, a region, or none (0)

    def under(self, job: Job) -> bool:
        """Whether this button is under that job's message (a grid's, or an upscaled image's)."""
        return job.kind.is_grid == self.on_grid

    def fits(self, job: Job, index: int) -> bool:
        """Whether this button can be on that job's message: a forged one (U on an upscale, V5) cannot."""
        return self.under(job) and index in self.indices


def _canvas(operation: str) -> Action:
    return Action(lambda jobs, who, job, index, remix: jobs.canvas(who, job, operation, remix), True, False)


# Shared by the Discord buttons, the region select, the Remix modals and the web page.
ACTIONS: dict[str, Action] = {
    "upscale": Action(lambda jobs, who, job, index, remix: jobs.upscale(who, job, index), False, True, IMAGES),
    "vary": Action(lambda jobs, who, job, index, remix: jobs.vary(who, job, index, remix=remix),  # /settings
                   True, True, IMAGES),
    "reroll": Action(lambda jobs, who, job, index, remix: jobs.reroll(who, job, remix=remix), True, True),
    "subtle": Action(lambda jobs, who, job, index, remix: jobs.vary(who, job, 1, "subtle", remix=remix),
                     True, False),
    "strong": Action(lambda jobs, who, job, index, remix: jobs.vary(who, job, 1, "strong", remix=remix),
                     True, False),
    "creative": Action(lambda jobs, who, job, index, remix: jobs.creative(who, job), False, False),
    "zoom2": _canvas("zoom 2"),
    "zoom15": _canvas("zoom 1.5"),
    "square": _canvas("square"),
    **{f"pan{side}": _canvas(f"pan {side}") for side in PAN_DIRECTIONS},
    "region": Action(lambda jobs, who, job, index, remix: jobs.canvas(who, job, f"region {REGION_NAMES[index]}", remix),
                     True, False, range(len(REGION_NAMES))),
}


def may_act_on(job: Job, user_id: int, is_admin: bool) -> bool:
    """A job's buttons, Remix, /show's repost and /cancel are for its owner and admins (as the front end
    decides who is one); the one rule, for Discord and the web alike."""
    return is_admin or job.owner_id == user_id


def acting_for(who: Requester, parent: Job) -> Requester:
    """The Requester of a job started from another front end than the job's own channel (the web page): the
    person asking, in the parent job's server and channel, so quotas, bans and delivery are that channel's."""
    return Requester(user_id=who.user_id, name=who.name, guild_id=parent.guild_id, channel_id=parent.channel_id,
                     role_ids=who.role_ids)


def remix_text(job: Job) -> str:
    """A job's prompt with its parameters, as Remix and the region forms offer it for editing."""
    return f"{job.prompt} {job.recipe.prompt_language()}"
