"""Remix: with Remix on in /settings, V1–V4, 🔄 and Vary (Subtle/Strong) first open the prompt, parameters
included, in a modal; what the user submits is what the new job runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from bot.discord_ui.guard import refuse_banned
from bot.service.compose import parameters_of
from bot.store import Job

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot

PROMPT_FIELD = "prompt"


def remix_text(job: Job) -> str:
    return f"{job.prompt} {parameters_of(job.params, job.negative_prompt, job.model)}"


class RemixModal(discord.ui.Modal):
    def __init__(self, job: Job, action: str, index: int) -> None:
        title = "Remix: reroll" if action == "reroll" else f"Remix: variations of image {index or 1}"
        super().__init__(title=title, timeout=15 * 60)
        self.job, self.action, self.index = job, action, index
        self.prompt = discord.ui.TextInput(
            label="Prompt and parameters", style=discord.TextStyle.paragraph, default=remix_text(job)[:4000],
            max_length=4000, custom_id=PROMPT_FIELD)
        self.add_item(self.prompt)

    async def interaction_check(self, interaction: discord.Interaction[DreamgridBot], /) -> bool:
        return not await refuse_banned(interaction)  # banned while the modal was open

    async def on_submit(self, interaction: discord.Interaction[DreamgridBot]) -> None:
        bot = interaction.client
        who, text = bot.requester(interaction), self.prompt.value
        if self.action == "reroll":
            await bot.start_job(interaction, bot.service.reroll(who, self.job, remix=text))
        elif self.action == "vary":
            await bot.start_job(interaction, bot.service.vary(who, self.job, self.index, remix=text))
        else:  # Vary (Subtle/Strong) under an upscale
            await bot.start_job(interaction, bot.service.vary(who, self.job, 1, self.action, remix=text))
