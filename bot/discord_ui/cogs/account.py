"""/info: what a user has left, has running and has made. Always private (ephemeral).
(/history and /show are in history.py.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_ui import render
from bot.recipe import JobStatus

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot


class AccountCog(commands.Cog):
    def __init__(self, bot: DreamgridBot) -> None:
        self.bot = bot

    @app_commands.command(name="info", description="Your mode, allowance, jobs in the queue, and the model")
    async def info(self, interaction: discord.Interaction) -> None:
        jobs, accounts = self.bot.jobs, self.bot.accounts
        who = self.bot.requester(interaction)
        account = await accounts.account(who)
        relax = accounts.relax_allowed
        mode = {"fast": "fast" + (" (/relax: free jobs that wait for fast ones)" if relax else ""),
                "relax": "relax: your jobs are free and run when no fast job waits (/fast to switch back)"}
        lines = [
            f"**Mode:** {mode[account.mode] if relax else 'fast'}",
            f"**Fast allowance:** {allowance_left(account)} this period; resets {render.when(account.resets_at)}.",
            f"**Lifetime:** {account.lifetime_images} image{'s' if account.lifetime_images != 1 else ''} made.",
            f"**Model:** `{await accounts.model_for(interaction.guild_id)}`",
        ]
        active = await jobs.active(interaction.user.id)
        if not active:
            lines.append("**Jobs:** none queued or running.")
        for job in active:
            place = jobs.position(job.id)
            state = "running" if job.status is JobStatus.RUNNING or place == 0 else (
                f"queued, #{place} in line" if place else "queued")
            lane = " (relax)" if job.lane == "relax" else ""
            lines.append(f"• #{job.id} {state}{lane}: {render.short_prompt(job.prompt, 80)}")
        await interaction.response.send_message("\n".join(lines), ephemeral=True,
                                                allowed_mentions=render.NO_PINGS)


def allowance_left(account) -> str:
    if account.left <= account.allowance:
        return f"{account.left} of {account.allowance} images left"
    return f"{account.left} images left ({account.allowance} a period + {account.left - account.allowance} granted)"
