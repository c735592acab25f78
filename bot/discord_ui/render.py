"""What a job looks like in Discord: message text and links. Nothing here pings anyone: every message is
sent with `allowed_mentions` none, and user text is shown as text."""

from __future__ import annotations

from datetime import datetime

import discord

from bot.recipe import JobKind, JobStatus
from bot.service import Job
from bot.text import shorten

NO_PINGS = discord.AllowedMentions.none()


def short_prompt(prompt: str, limit: int) -> str:
    """A prompt on one line, cut to `limit` characters, then escaped (so no escape is cut in half)."""
    return discord.utils.escape_markdown(shorten(" ".join(prompt.split()), limit))


def prompt_line(job: Job) -> str:
    prompt = discord.utils.escape_markdown(job.prompt)
    head = f"**{prompt}** — <@{job.owner_id}>"
    if job.kind is JobKind.UPSCALE:
        return f"{head} · Image #{job.parent_index} of job #{job.parent_job_id}"
    if job.kind is JobKind.VARIATION:
        return f"{head} · Variations of image #{job.parent_index} of job #{job.parent_job_id}"
    return head


def details_line(job: Job) -> str:
    typed = job.recipe.summary().replace("`", "'")
    return f"{f'`{typed}` · ' if typed else ''}Model `{job.model}` · seed `{job.seed}` · job #{job.id}"


def queued(job: Job, position: int) -> str:
    state = "Starting…" if position == 0 else f"Queued (#{position} in line)"
    state += f" · job #{job.id}"  # the number /cancel and /info use
    if job.lane == "relax":
        state += " · relax mode: runs when no fast job waits"
    return f"{prompt_line(job)}\n{state}"


def progress(job: Job, fraction: float) -> str:
    return f"{prompt_line(job)}\nGenerating… {round(fraction * 100)}% · job #{job.id}"


def finished(job: Job) -> str:
    return f"{prompt_line(job)}\n{details_line(job)}"


def failed(job: Job, reason: str) -> str:
    refund = (f"The {job.cost} image{'s' if job.cost != 1 else ''} it cost were refunded." if job.cost
              else "It cost nothing (relax mode).")
    if job.status is JobStatus.CANCELLED:
        return f"{prompt_line(job)}\n❌ Job #{job.id} was cancelled. {refund}"
    return f"{prompt_line(job)}\n❌ Job #{job.id} failed: {reason}. {refund}"


def message_link(guild_id: int | None, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"


def job_link(job: Job | None) -> str | None:
    return message_link(job.guild_id, job.channel_id, job.message_id) if job and job.message_id else None


def when(moment: datetime) -> str:
    """A Discord timestamp: each reader sees it in their own time zone."""
    return f"<t:{int(moment.timestamp())}:R>"
