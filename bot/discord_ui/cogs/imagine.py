"""/imagine: a prompt in, a 2x2 grid with U/V/🔄 buttons out."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_ui.cogs.pictures import upload

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot


class ImagineCog(commands.Cog):
    def __init__(self, bot: DreamgridBot) -> None:
        self.bot = bot

    @app_commands.command(name="imagine", description="Create four images from a text prompt")
    @app_commands.describe(prompt="What to draw, then any parameters, e.g. a red fox in the snow --ar 3:2 --no trees",
                           image="An image prompt: the grid starts from it (--iw 0-3 sets how much it counts)")
    async def imagine(self, interaction: discord.Interaction, prompt: str,
                      image: discord.Attachment | None = None) -> None:
        who = self.bot.requester(interaction)
        await self.bot.start_job(interaction, self.bot.jobs.imagine(who, prompt, upload(image)))
