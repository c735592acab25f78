"""/info and /history: what a user has left, has running, and has made. Always private (ephemeral)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_ui import render
from bot.store import period_end, utcnow

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot

HISTORY_SIZE = 10


class AccountCog(commands.Cog):
    def __init__(self, bot: DreamgridBot) -> None:
        self.bot = bot

    @app_commands.command(name="info", description="Your allowance, your queued and running jobs, and the model")
    async def info(self, interaction: discord.Interaction) -> None:
        service = self.bot.service
        now = utcnow()
        used = await service.store.used(interaction.user.id, now)
        left = max(service.daily_images - used, 0)
        lines = [
            f"**Allowance:** {left} of {service.daily_images} images left today; "
            f"resets {render.when(period_end(now.date().isoformat()))}.",
            f"**Model:** `{service.default_model}`",
        ]
        active = await service.store.active_jobs(interaction.user.id)
        if not active:
            lines.append("**Jobs:** none queued or running.")
        for job in active:
            place = service.position(job.id)
            state = "running" if job.status == "running" or place == 0 else (
                f"queued, #{place} in line" if place else "queued")
            lines.append(f"• #{job.id} {state}: {_short(job.prompt)}")
        await interaction.response.send_message("\n".join(lines), ephemeral=True,
                                                allowed_mentions=render.NO_PINGS)

    @app_commands.command(name="history", description="Your last 10 jobs")
    async def history(self, interaction: discord.Interaction) -> None:
        jobs = await self.bot.service.store.recent_jobs(interaction.user.id, HISTORY_SIZE)
        if not jobs:
            text = "You have no jobs yet. Start one with /imagine."
        else:
            lines = [f"**Your last {len(jobs)} jobs**"]
            for job in jobs:
                link = render.job_link(job)
                where = f" — [message]({link})" if link else ""
                lines.append(f"• #{job.id} {job.kind}, {job.status}: {_short(job.prompt)}{where}")
            text = "\n".join(lines)
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=render.NO_PINGS)


def _short(prompt: str, limit: int = 80) -> str:
    text = discord.utils.escape_markdown(prompt)
    return text if len(text) <= limit else text[: limit - 1] + "…"
