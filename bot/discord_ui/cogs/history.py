"""/history (10 jobs a page, ◀ ▶ buttons, a prompt filter) and /show (repost a job's result with working
buttons, as the 📋 button does; owners and admins only). Also runs the retention task when RETENTION_DAYS
is set.

The page buttons are DynamicItems whose custom_id carries the owner, the page and the filter
(`dgh:<owner>:<page>:<text>`), so they keep working after a restart, like the job buttons.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_ui import render
from bot.discord_ui.custom_ids import HISTORY_PAGE, number
from bot.discord_ui.guard import may_act_on, refuse_banned
from bot.discord_ui.show import show_job
from bot.recipe import JobStatus
from bot.service import Job
from bot.text import shorten

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot

PAGE_SIZE = 10
MAX_FILTER_CHARS = 60  # the filter travels in the buttons' custom_id (100 characters at most)
DISCORD_LIMIT = 2000


class HistoryCog(commands.Cog):
    def __init__(self, bot: DreamgridBot) -> None:
        self.bot = bot
        self._retention: asyncio.Task | None = None

    async def cog_load(self) -> None:
        self.bot.register_items(PageButton)
        days = self.bot.settings.retention_days
        if days:
            self._retention = asyncio.create_task(self.bot.jobs.prune_forever(days), name="retention")

    async def cog_unload(self) -> None:
        if self._retention is not None:
            self._retention.cancel()

    @app_commands.command(name="history", description="Your jobs, newest first, 10 a page")
    @app_commands.describe(prompt="Only jobs whose prompt has these words (any order; the last may be cut short)",
                           user="(admins) whose jobs to list")
    async def history(self, interaction: discord.Interaction, prompt: app_commands.Range[str, 1, MAX_FILTER_CHARS]
                      | None = None, user: discord.User | None = None) -> None:
        owner = user or interaction.user
        if owner.id != interaction.user.id and not self.bot.is_admin(interaction):
            await interaction.response.send_message(
                "Only admins can list someone else's jobs. /history without `user` lists yours.", ephemeral=True)
            return
        if prompt is not None and len(prompt) > MAX_FILTER_CHARS:  # Discord's max_length binds its own clients only
            await interaction.response.send_message(
                f"The filter is {len(prompt):,} characters; the most is {MAX_FILTER_CHARS}. "
                "Try a shorter part of the prompt.", ephemeral=True)
            return
        content, view = await history_page(self.bot, owner.id, 0, prompt or "", owner.id == interaction.user.id)
        if view is None:  # nothing to page through; discord.py wants no `view` at all rather than None
            await interaction.response.send_message(content, ephemeral=True, allowed_mentions=render.NO_PINGS)
        else:
            await interaction.response.send_message(content, view=view, ephemeral=True,
                                                    allowed_mentions=render.NO_PINGS)

    @app_commands.command(name="show", description="Post a job's images again, with working buttons")
    @app_commands.describe(job="The job number (see /history)")
    async def show(self, interaction: discord.Interaction, job: app_commands.Range[int, 1]) -> None:
        found = await self.bot.jobs.get(job)
        if found is None or not may_act_on(interaction, found):
            await interaction.response.send_message(
                f"You have no job #{job}. /history lists your jobs and their numbers.", ephemeral=True)
            return
        if found.status is not JobStatus.DONE:
            await interaction.response.send_message(
                f"Job #{job} is {found.status}, so it has no images to show. /history lists your finished jobs.",
                ephemeral=True)
            return
        image = self.bot.jobs.result_file(found)
        if found.pruned_at or not image.is_file():
            await interaction.response.send_message(
                f"The images of job #{job} were deleted after {self.bot.settings.retention_days or 'some'} days "
                f"(this bot keeps images for a limited time). Its prompt was: {render.prompt_line(found)}. "
                "Use /imagine to make it again.", ephemeral=True, allowed_mentions=render.NO_PINGS)
            return
        await show_job(interaction, found.id)  # the same repost as the 📋 button: parameters, image, buttons


class PageButton(discord.ui.DynamicItem[discord.ui.Button],
                 template=HISTORY_PAGE):
    def __init__(self, owner_id: int, page: int, text: str, label: str, disabled: bool = False) -> None:
        self.owner_id, self.page, self.text = owner_id, page, text
        super().__init__(discord.ui.Button(label=label, disabled=disabled, style=discord.ButtonStyle.secondary,
                                           custom_id=f"dgh:{owner_id}:{page}:{text}"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str], /) -> "PageButton":
        return cls(number(match["owner"]) or 0, int(match["page"]), match["text"], item.label or "")

    async def interaction_check(self, interaction: discord.Interaction[DreamgridBot], /) -> bool:
        if await refuse_banned(interaction):
            return False
        if interaction.user.id != self.owner_id and not interaction.client.is_admin(interaction):
            await interaction.response.send_message("These pages list someone else's jobs. /history lists yours.",
                                                    ephemeral=True)
            return False
        return True

    async def callback(self, interaction: discord.Interaction[DreamgridBot]) -> None:
        content, view = await history_page(interaction.client, self.owner_id, self.page, self.text,
                                           self.owner_id == interaction.user.id)
        # No view (no jobs left to page through): view=None is edit_message's way to remove the old ◀ ▶
        # (send_message has no such meaning and fails on None, so /history leaves `view` out there).
        await interaction.response.edit_message(content=content, view=view, allowed_mentions=render.NO_PINGS)


async def history_page(bot: DreamgridBot, owner_id: int, page: int, text: str,
                       own: bool) -> tuple[str, discord.ui.View | None]:
    jobs, total = await bot.accounts.history(owner_id, page, PAGE_SIZE, text)
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    if page >= pages and total:  # jobs were deleted meanwhile: show the last page there is
        page = pages - 1
        jobs, total = await bot.accounts.history(owner_id, page, PAGE_SIZE, text)
    whose = "Your jobs" if own else f"Jobs of <@{owner_id}>"
    shown = discord.utils.escape_markdown(shorten(text, MAX_FILTER_CHARS))  # a forged custom_id may carry more
    matching = f' with "{shown}" in the prompt' if text else ""
    if not total:
        hint = "Try another filter, or /history without one." if text else "Start one with /imagine."
        return shorten(f"{whose}: none{matching}. {hint}", DISCORD_LIMIT), None
    lines = [f"**{whose}**{matching}: {total} job{'s' if total != 1 else ''}, page {page + 1} of {pages}"]
    lines += [history_line(job) for job in jobs]
    content = shorten("\n".join(lines), DISCORD_LIMIT)
    view = discord.ui.View(timeout=None)
    view.add_item(PageButton(owner_id, max(page - 1, 0), text, "◀ Newer", disabled=page == 0))
    view.add_item(PageButton(owner_id, page + 1, text, "Older ▶", disabled=page + 1 >= pages))
    return content, view


def history_line(job: Job) -> str:
    link = render.job_link(job)
    name = f"[#{job.id}]({link})" if link else f"#{job.id}"
    status = "done, images deleted" if job.pruned_at else job.status
    lane = " · relax" if job.lane == "relax" else ""
    shown = " ".join(part for part in (render.pictures_label(job), render.short_prompt(job.prompt, 60)) if part)
    return f"• {name} {job.kind} · {status}{lane} · {shown}"
