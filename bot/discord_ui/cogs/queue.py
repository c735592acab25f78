"""/fast, /relax and /cancel: how a user's jobs are queued, and stopping them. Replies are private."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_ui import render
from bot.discord_ui.cancel import cancel_jobs
from bot.discord_ui.guard import may_act_on
from bot.service import UserError

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot


class QueueCog(commands.Cog):
    def __init__(self, bot: DreamgridBot) -> None:
        self.bot = bot

    @app_commands.command(name="fast", description="Fast mode: your jobs use your allowance and go first")
    async def fast(self, interaction: discord.Interaction) -> None:
        await self._switch(interaction, "fast")

    @app_commands.command(name="relax", description="Relax mode: your jobs are free and run when no fast job waits")
    async def relax(self, interaction: discord.Interaction) -> None:
        await self._switch(interaction, "relax")

    @app_commands.command(name="cancel", description="Cancel your queued or running jobs (all of them, or one)")
    @app_commands.describe(job="The job number to cancel (leave out to cancel all of yours)")
    async def cancel(self, interaction: discord.Interaction, job: app_commands.Range[int, 1] | None = None) -> None:
        if job is None:
            await cancel_jobs(interaction, await self.bot.jobs.active(interaction.user.id))
            return
        found = await self.bot.jobs.get(job)
        if found is None or not may_act_on(interaction, found):
            await interaction.response.send_message(
                f"You have no job #{job}. /info lists your queued and running jobs.", ephemeral=True)
            return
        await cancel_jobs(interaction, [found])

    async def _switch(self, interaction: discord.Interaction, mode: str) -> None:
        accounts, who = self.bot.accounts, self.bot.requester(interaction)
        try:
            await accounts.set_mode(who, mode)
        except UserError as error:
            await interaction.response.send_message(str(error), ephemeral=True)
            return
        if mode == "relax":
            text = ("Relax mode is on: your new jobs cost nothing and run whenever no fast job waits. "
                    "Jobs already queued keep their mode. /fast switches back.")
        else:
            account = await accounts.account(who)
            text = (f"Fast mode is on: your new jobs use your allowance ({account.left} of {account.allowance} "
                    f"images left, resets {render.when(account.resets_at)}) and go before relax jobs.")
        await interaction.response.send_message(text, ephemeral=True)

