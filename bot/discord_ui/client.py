"""The Discord client: cogs and buttons registered once in `setup_hook`, jobs recovered after a restart."""

from __future__ import annotations

import logging
from typing import Awaitable

import discord
from discord.ext import commands

from bot.discord_ui import render
from bot.discord_ui.buttons import JobButton
from bot.discord_ui.checks import is_admin, requester
from bot.discord_ui.job_message import JobMessage
from bot.service import JobService, Requester, UserError
from bot.settings import Settings
from bot.store import Job, Refused

log = logging.getLogger(__name__)


class DreamgridBot(commands.Bot):
    def __init__(self, settings: Settings, service: JobService) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,  # slash commands only; no message content needed
            intents=discord.Intents.default(),
            allowed_mentions=render.NO_PINGS,
            help_command=None,
        )
        self.settings = settings
        self.service = service

    async def setup_hook(self) -> None:
        from bot.discord_ui.cogs import COGS

        self.add_dynamic_items(JobButton)
        for cog in COGS:
            await self.add_cog(cog(self))
        await self._sync_commands()
        for job in await self.service.unfinished_jobs():
            log.info("recovering job %s, unfinished at the last stop", job.id)
            self.service.start(job, JobMessage(self, job))

    async def _sync_commands(self) -> None:
        if not self.settings.guild_ids:
            await self.tree.sync()
            return
        for guild_id in self.settings.guild_ids:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)

    def is_admin(self, interaction: discord.Interaction) -> bool:
        return is_admin(interaction, self.settings)

    @staticmethod
    def requester(interaction: discord.Interaction) -> Requester:
        return requester(interaction)

    async def start_job(self, interaction: discord.Interaction, accepting: Awaitable[Job | Refused]) -> None:
        """Accept a job (validate and charge) and start it, or tell the user why not, privately."""
        try:
            job = await accepting
        except UserError as error:
            await interaction.response.send_message(str(error), ephemeral=True)
            return
        except Exception:
            log.exception("could not accept a job")
            await interaction.response.send_message(
                "Something went wrong on our side before your job started; nothing was charged. "
                "Please try again, and tell an admin if it keeps happening.", ephemeral=True)
            return
        if isinstance(job, Refused):
            await interaction.response.send_message(quota_refusal(job), ephemeral=True)
            return
        try:
            await interaction.response.defer(thinking=True)
        except discord.NotFound:  # too late for this interaction: the job still runs, in a channel message
            log.warning("job %s: interaction expired before the defer", job.id)
            interaction = None
        self.service.start(job, JobMessage(self, job, interaction))


def quota_refusal(refused: Refused) -> str:
    return (f"Not enough allowance left: you have {refused.remaining} image"
            f"{'s' if refused.remaining != 1 else ''} left today (a grid costs 4, an upscale 1). "
            f"Your allowance resets {render.when(refused.resets_at)}. Nothing was queued or charged.")
