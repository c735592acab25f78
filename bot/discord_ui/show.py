"""📋 under a job: its full parameters (the PNG's `parameters` text, and the prompt language to type it
again), with its image reposted under working buttons. custom_id `dg:show:<job>`; all state from SQLite."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

import discord

from bot.discord_ui import render
from bot.discord_ui.custom_ids import SHOW_BUTTON, number
from bot.discord_ui.remix import remix_text
from bot.recipe import JobStatus
from bot.service.provenance import read_parameters

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot


class ShowButton(discord.ui.DynamicItem[discord.ui.Button], template=SHOW_BUTTON):
    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(discord.ui.Button(emoji="📋", style=discord.ButtonStyle.secondary,
                                           custom_id=f"dg:show:{job_id}", row=1))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str], /) -> "ShowButton":
        return cls(number(match["job"]) or 0)  # 0: no such job, which show_job says

    async def interaction_check(self, interaction: discord.Interaction[DreamgridBot], /) -> bool:
        from bot.discord_ui.guard import refuse_banned

        return not await refuse_banned(interaction)

    async def callback(self, interaction: discord.Interaction[DreamgridBot]) -> None:
        await show_job(interaction, self.job_id)


async def show_job(interaction: discord.Interaction[DreamgridBot], job_id: int) -> None:
    """Anyone may look; the repost is public for the job's owner and admins (unless they chose private
    replies in /settings), private for everyone else."""
    from bot.discord_ui.buttons import job_view
    from bot.discord_ui.guard import may_act_on

    bot = interaction.client
    job = await bot.jobs.get(job_id)
    images = {image.index: image for image in await bot.jobs.images(job_id)} if job else {}
    path = bot.jobs.result_file(job) if job else None
    if job is None or job.status is not JobStatus.DONE or not images or not path.is_file():
        why = (f"it is {job.status}" if job and job.status is not JobStatus.DONE else
               "its images are no longer stored" if job else "it does not exist")
        await interaction.response.send_message(
            f"Job #{job_id} has no images to show: {why}. Start a new one with /imagine.", ephemeral=True)
        return
    text = await asyncio.to_thread(read_parameters, path) or ""
    seeds = ", ".join(str(images[i].seed) for i in sorted(images))
    typed = discord.utils.escape_markdown(remix_text(job))
    body = (f"{render.finished(job)}\n**Seeds:** {seeds}\n**To make it again:** `/imagine prompt:` "
            f"{typed} --seed {job.seed}\n```\n{text.replace('```', '´´´')}\n```")
    if len(body) > 2000:  # Discord's limit: keep the head and the parameters line at the end
        body = body[:1000] + "…\n```\n" + text[-900:].replace("```", "´´´") + "\n```"
    private = not may_act_on(interaction, job) or (await bot.accounts.preferences(interaction.user.id)).private
    view = job_view(job, grid_link=render.job_link(await bot.jobs.parent(job)))
    await interaction.response.send_message(
        body, file=discord.File(path, spoiler=await bot.jobs.spoiler(job)), view=view,
        ephemeral=private, allowed_mentions=render.NO_PINGS)
