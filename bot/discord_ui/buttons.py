"""The buttons under a job's message: U1–U4, V1–V4, 🔄 under a grid; under an upscaled image Vary
(Subtle/Strong/Region), Upscale (Creative), Zoom Out 2x/1.5x/Custom, Make Square and the four pans.

Each is a `DynamicItem` whose custom_id carries the action, the job id and the image index
(`dg:upscale:42:2`), so a button on any old message keeps working after a restart: all state comes from
SQLite, none from a View object. Registered once in `DreamgridBot.setup_hook`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord
from discord import ButtonStyle

from bot.discord_ui.canvas_tools import RegionSelect, show_canvas_form
from bot.discord_ui.custom_ids import JOB_BUTTON, number
from bot.discord_ui.guard import usable_job
from bot.discord_ui.remix import show_remix
from bot.discord_ui.show import ShowButton
from bot.recipe import JobKind
from bot.service import Job
from bot.service.actions import ACTIONS, NOT_HERE
from bot.service.canvas import PAN_DIRECTIONS

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot

CANCEL = "cancel"
CUSTOM_ZOOM = "zoomc"


async def start_action(interaction: discord.Interaction[DreamgridBot], action: str, job: Job, index: int,
                       remix: str | None = None) -> None:
    """Accept the job an action asks for and start it, or say privately why not."""
    bot, todo = interaction.client, ACTIONS[action]
    if not todo.fits(job, index):
        await interaction.response.send_message(NOT_HERE.format(job=job.id), ephemeral=True)
        return
    await bot.start_job(interaction, todo.start(bot.jobs, bot.requester(interaction), job, index, remix))


class JobButton(discord.ui.DynamicItem[discord.ui.Button], template=JOB_BUTTON):
    def __init__(self, action: str, job_id: int, index: int = 0) -> None:
        if action not in ACTIONS and action not in (CANCEL, CUSTOM_ZOOM):
            raise ValueError(f"unknown button action {action!r}")
        self.action, self.job_id, self.index = action, job_id, index
        self.job: Job | None = None  # read by interaction_check, once it has checked who may use it
        label, emoji, row = {
            "upscale": (f"U{index}", None, 0),
            "reroll": (None, "🔄", 0),
            "vary": (f"V{index}", None, 1),
            "subtle": ("Vary (Subtle)", "🪄", 0),
            "strong": ("Vary (Strong)", "🪄", 0),
            "creative": ("Upscale (Creative)", "✨", 0),
            "zoom2": ("Zoom Out 2x", "🔍", 1),
            "zoom15": ("Zoom Out 1.5x", "🔍", 1),
            "zoomc": ("Custom Zoom", "🔍", 1),
            "square": ("Make Square", "↔️", 1),
            "panleft": (None, "⬅️", 2),
            "panright": (None, "➡️", 2),
            "panup": (None, "⬆️", 2),
            "pandown": (None, "⬇️", 2),
            "cancel": (None, "❌", 0),
        }[action]
        super().__init__(discord.ui.Button(
            label=label, emoji=emoji, row=row,
            style=ButtonStyle.danger if action == "cancel" else ButtonStyle.secondary,
            custom_id=f"dg:{action}:{job_id}:{index}",
        ))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str], /) -> "JobButton":
        return cls(match["action"], number(match["job"]) or 0, int(match["index"]))  # 0: no such job

    async def interaction_check(self, interaction: discord.Interaction[DreamgridBot], /) -> bool:
        """Only the job's owner and admins may use its buttons; anyone else is told so, and nothing happens."""
        self.job = await usable_job(interaction, self.job_id)
        return self.job is not None

    async def callback(self, interaction: discord.Interaction[DreamgridBot]) -> None:
        if self.action == CANCEL:
            from bot.discord_ui.cancel import cancel_jobs  # it needs the bot, which imports this module

            await cancel_jobs(interaction, [self.job])
            return
        if self.action == CUSTOM_ZOOM:  # a form first: the factor, and the prompt to paint with
            await show_canvas_form(interaction, self.job, "zoom")
            return
        todo = ACTIONS[self.action]
        if todo.remixable and todo.fits(self.job, self.index) and (
                await interaction.client.accounts.preferences(interaction.user.id)).remix:
            await show_remix(interaction, self.job, self.action, self.index)
            return
        await start_action(interaction, self.action, self.job, self.index)


def cancel_view(job: Job) -> discord.ui.View:
    """The ❌ under a queued or running job's message."""
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("cancel", job.id))
    return view


def job_view(job: Job, grid_link: str | None = None) -> discord.ui.View:
    """The buttons that go under a finished job's message."""
    view = discord.ui.View(timeout=None)
    if not job.kind.is_grid:  # an upscaled image: Midjourney's tools
        view.add_item(JobButton("subtle", job.id))
        view.add_item(JobButton("strong", job.id))
        if job.kind is JobKind.UPSCALE:
            view.add_item(JobButton("creative", job.id))
        if grid_link:
            view.add_item(discord.ui.Button(label="Grid", emoji="↩️", url=grid_link, row=0))
        for action in ("zoom2", "zoom15", CUSTOM_ZOOM):
            view.add_item(JobButton(action, job.id))
        if job.recipe.width != job.recipe.height:
            view.add_item(JobButton("square", job.id))
        view.add_item(ShowButton(job.id))
        for side in PAN_DIRECTIONS:
            view.add_item(JobButton(f"pan{side}", job.id))
        view.add_item(RegionSelect(job.id))
        return view
    for index in range(1, 5):
        view.add_item(JobButton("upscale", job.id, index))
    view.add_item(JobButton("reroll", job.id))
    for index in range(1, 5):
        view.add_item(JobButton("vary", job.id, index))
    view.add_item(ShowButton(job.id))
    return view
