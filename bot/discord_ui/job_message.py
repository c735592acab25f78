"""One job's message in Discord, kept up to date as the job runs: queued, progress, grid and buttons.

The message is the interaction's original response, edited through the interaction's token while it lives
(15 minutes). The message's id is stored with the job, so after that, or for a job recovered after a
restart, the bot edits the same message as a channel message. Only if it is gone (or was private) does the
bot post a new one: in the job's channel, or by direct message to a member who wants private replies — a
private job is never posted in public. Every edit is sent from the event loop.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import discord

from bot.discord_ui import render
from bot.discord_ui.buttons import cancel_view, job_view
from bot.service import Job

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot

log = logging.getLogger(__name__)

PREVIEW_NAME = "preview.png"


class JobMessage:
    def __init__(self, bot: DreamgridBot, job: Job, interaction: discord.Interaction | None = None) -> None:
        self.bot = bot
        self.job = job
        self.interaction = interaction
        self.channel_message: discord.Message | discord.PartialMessage | None = None
        self._last_progress = 0.0

    async def queued(self, job: Job, position: int) -> None:
        message = await self._show(content=render.queued(job, position), view=cancel_view(job))
        if message is not None and self.job.message_id is None and not message.flags.ephemeral:
            # Remember the message, so the job can edit it after its token expires or the bot restarts.
            await self.bot.jobs.remember_message(job.id, message.id)
            self.job = dataclasses.replace(self.job, message_id=message.id)

    async def progress(self, job: Job, fraction: float) -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - self._last_progress < self.bot.settings.progress_interval:
            return  # Discord rate-limits edits; the next step will tell the same story
        self._last_progress = now
        await self._show(content=render.progress(job, fraction), view=cancel_view(job))

    async def preview(self, job: Job, png: bytes, fraction: float) -> None:
        """A cheap picture of the grid partway through (the engine sends one every PREVIEW_INTERVAL at most),
        with the progress text; the finished grid replaces it."""
        self._last_progress = time.monotonic()
        await self._show(content=render.progress(job, fraction), view=cancel_view(job),
                         attachments=[discord.File(io.BytesIO(png), filename=PREVIEW_NAME)])

    async def finished(self, job: Job, image: Path, spoiler: bool, *, fresh: bool = False) -> int | None:
        """The result, hidden behind a spoiler when the model's safety checker flagged it; the id of the
        message that shows it. Raises if Discord failed (the service tries again); `fresh`: as a new message,
        the job's own having failed for too long."""
        view = job_view(job, grid_link=render.job_link(await self.bot.jobs.parent(job)))
        fields = dict(content=render.finished(job), attachments=[discord.File(image, spoiler=spoiler)], view=view)
        message = await (self._post(**fields) if fresh else self._show(**fields))
        return message.id if message is not None else None

    async def failed(self, job: Job, reason: str) -> None:
        await self._show(content=render.failed(job, reason), attachments=[], view=None)

    async def _show(self, **fields) -> discord.Message | None:
        """Edit the job's message; fall back to a channel message once the interaction can't be edited."""
        fields["allowed_mentions"] = render.NO_PINGS
        if self.interaction is not None and not self.interaction.is_expired():
            try:
                return await self.interaction.edit_original_response(**fields)
            except discord.NotFound:
                log.info("job %s: the interaction is gone; posting in the channel instead", self.job.id)
                self.interaction = None
        if self.channel_message is None and self.job.message_id is not None:  # its message, by id
            channel = self.bot.get_partial_messageable(self.job.channel_id, guild_id=self.job.guild_id)
            self.channel_message = channel.get_partial_message(self.job.message_id)
        if self.channel_message is not None:
            try:
                return await self.channel_message.edit(**fields)
            except discord.NotFound:  # deleted meanwhile
                log.info("job %s: its message is gone; posting a new one", self.job.id)
                self.channel_message, self.job = None, dataclasses.replace(self.job, message_id=None)
        return await self._post(**fields)

    async def _post(self, **fields) -> discord.Message | None:
        """A new message for the job: in its channel, or the owner's DMs; None if there is nowhere to post."""
        fields["allowed_mentions"] = render.NO_PINGS
        channel = await self._channel_for_new_message()
        if channel is None:
            return None
        files = fields.pop("attachments", None)
        if files:
            fields["files"] = files
        if fields.get("view") is None:
            fields.pop("view", None)
        try:
            self.channel_message = await channel.send(**fields)
        except discord.Forbidden:  # DMs closed: the job is still in /history and /show
            log.info("job %s: its owner does not accept direct messages", self.job.id)
            return None
        return self.channel_message

    async def _channel_for_new_message(self) -> discord.abc.Messageable | None:
        """The job's channel, or the owner's DMs if they want private replies (never post a private job)."""
        if (await self.bot.accounts.preferences(self.job.owner_id)).private:
            try:
                return await (await self.bot.fetch_user(self.job.owner_id)).create_dm()
            except discord.HTTPException:
                log.info("job %s: no direct message channel to its owner", self.job.id)
                return None
        return self.bot.get_partial_messageable(self.job.channel_id, guild_id=self.job.guild_id)

