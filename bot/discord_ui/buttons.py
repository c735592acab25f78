"""The buttons under a job's message: U1–U4, V1–V4, 🔄, and Vary (Subtle/Strong) under an upscale.

Each is a `DynamicItem` whose custom_id carries the action, the job id and the image index
(`dg:upscale:42:2`), so a button on any old message keeps working after a restart: all state comes from
SQLite, none from a View object. Registered once in `DreamgridBot.setup_hook`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord
from discord import ButtonStyle

from bot.discord_ui.guard import refuse_banned
from bot.discord_ui.remix import show_remix
from bot.discord_ui.show import ShowButton
from bot.store import Job

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot

ACTIONS = ("upscale", "vary", "reroll", "subtle", "strong", "cancel")
REMIXABLE = ("vary", "reroll", "subtle", "strong")  # with Remix on, these open the prompt first


class JobButton(discord.ui.DynamicItem[discord.ui.Button], template=r"dg:(?P<action>[a-z]+):(?P<job>[0-9]+):(?P<index>[0-4])"):
    def __init__(self, action: str, job_id: int, index: int = 0) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown button action {action!r}")
        self.action, self.job_id, self.index = action, job_id, index
        label, emoji, row = {
            "upscale": (f"U{index}", None, 0),
            "reroll": (None, "🔄", 0),
            "vary": (f"V{index}", None, 1),
            "subtle": ("Vary (Subtle)", "🪄", 0),
            "strong": ("Vary (Strong)", "🪄", 0),
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
        return cls(match["action"], int(match["job"]), int(match["index"]))

    async def interaction_check(self, interaction: discord.Interaction[DreamgridBot], /) -> bool:
        """Only the job's owner and admins may use its buttons; anyone else is told so, and nothing happens."""
        bot = interaction.client
        if await refuse_banned(interaction):
            return False
        job = await bot.service.store.get_job(self.job_id)
        if job is None:
            await interaction.response.send_message(
                f"Job #{self.job_id} no longer exists. Start a new one with /imagine.", ephemeral=True)
            return False
        if job.owner_id != interaction.user.id and not bot.is_admin(interaction):
            await interaction.response.send_message(
                "This is not your job: only the person who started it (or an admin) can use its buttons. "
                "Make your own with /imagine.", ephemeral=True)
            return False
        return True

    async def callback(self, interaction: discord.Interaction[DreamgridBot]) -> None:
        bot = interaction.client
        job = await bot.service.store.get_job(self.job_id)
        service = bot.service
        who = bot.requester(interaction)
        if self.action in REMIXABLE and (await service.preferences.get(interaction.user.id)).remix:
            await show_remix(interaction, job, self.action, self.index)
            return
        if self.action == "cancel":
            from bot.discord_ui.cancel import cancel_jobs  # it needs the bot, which imports this module

            await cancel_jobs(interaction, [job])
        elif self.action == "upscale":
            await bot.start_job(interaction, service.upscale(who, job, self.index))
        elif self.action == "vary":
            await bot.start_job(interaction, service.vary(who, job, self.index))  # Subtle/Strong from /settings
        elif self.action in ("subtle", "strong"):
            await bot.start_job(interaction, service.vary(who, job, 1, self.action))
        else:
            await bot.start_job(interaction, service.reroll(who, job))


def cancel_view(job: Job) -> discord.ui.View:
    """The ❌ under a queued or running job's message."""
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("cancel", job.id))
    return view


def job_view(job: Job, grid_link: str | None = None) -> discord.ui.View:
    """The buttons that go under a finished job's message."""
    view = discord.ui.View(timeout=None)
    if job.kind == "upscale":
        view.add_item(JobButton("subtle", job.id))
        view.add_item(JobButton("strong", job.id))
        if grid_link:
            view.add_item(discord.ui.Button(label="Grid", emoji="↩️", url=grid_link, row=0))
        view.add_item(ShowButton(job.id))
        return view
    for index in range(1, 5):
        view.add_item(JobButton("upscale", job.id, index))
    view.add_item(JobButton("reroll", job.id))
    for index in range(1, 5):
        view.add_item(JobButton("vary", job.id, index))
    view.add_item(ShowButton(job.id))
    return view
