"""What a job looks like in Discord: message text and links. Nothing here pings anyone: every message is
sent with `allowed_mentions` none, and user text is shown as text. Every text fits Discord's 2,000
characters whatever the prompt: user text is shortened for display with "…" (the full prompt stays in the
PNG's text and /show)."""

from __future__ import annotations

from datetime import datetime

import discord

from bot.recipe import JobKind, JobStatus
from bot.service import Job
from bot.text import ELLIPSIS, shorten

NO_PINGS = discord.AllowedMentions.none()
MAX_CONTENT = 2000  # Discord's limit for a message's content
PROMPT_CHARS = 1000  # of a job's message: the prompt as shown, escaped
PARAMETERS_CHARS = 400  # of a job's message: its parameters as shown (--no can be long)


def escaped(text: str, limit: int) -> str:
    """`text` with markdown escaped, in at most `limit` characters: cut before escaping (so no escape is cut
    in half) and ending with "…" when cut. Escaping can double a text (`_` -> `\\_`)."""
    shown = discord.utils.escape_markdown(text)
    cut = len(text)
    while len(shown) > limit and cut > 0:
        cut = min(cut - 1, cut * limit // len(shown))
        shown = discord.utils.escape_markdown(text[:cut]) + ELLIPSIS
    return shown


def short_prompt(prompt: str, limit: int) -> str:
    """A prompt on one line, in at most `limit` characters, escaped."""
    return escaped(" ".join(prompt.split()), limit)


def fit(text: str) -> str:
    """The last guard: a message's content never exceeds Discord's limit."""
    return shorten(text, MAX_CONTENT)


def prompt_line(job: Job) -> str:
    shown = short_prompt(job.prompt, PROMPT_CHARS)
    head = " ".join(part for part in (pictures_label(job), f"**{shown}**" if shown else "") if part)
    head = f"{head or '**(no text)**'} — <@{job.owner_id}>"
    if job.kind is JobKind.UPSCALE:
        return f"{head} · Image #{job.parent_index} of job #{job.parent_job_id}"
    if job.kind is JobKind.VARIATION:
        return f"{head} · Variations of image #{job.parent_index} of job #{job.parent_job_id}"
    if job.kind is JobKind.CREATIVE:
        return f"{head} · Upscale (Creative) of job #{job.parent_job_id}"
    if job.kind.is_canvas:
        return f"{head} · {canvas_label(job.recipe.canvas)} of job #{job.parent_job_id}"
    return head


def pictures_label(job: Job) -> str:
    """The pictures a job was given, as a few words: their links expire, their hashes are in 📋."""
    recipe, parts = job.recipe, []
    count = len(recipe.image_prompts)
    if job.kind is JobKind.BLEND or (count > 1 and not job.kind.needs_source):
        parts.append(f"🖼️ **Blend of {count} images**")
    elif count and not job.kind.needs_source:
        parts.append("🖼️ image prompt")
    if recipe.style_refs:
        parts.append("🎨 style reference")
    if recipe.object_refs:
        parts.append("📌 object reference")
    return " · ".join(parts)


def canvas_label(operation: str) -> str:
    """A canvas operation as its button says it: "zoom 2" -> "Zoom Out 2x", "region top-left" -> ..."""
    verb, _, argument = operation.partition(" ")
    return {"zoom": f"Zoom Out {argument}x", "square": "Make Square", "pan": f"Pan {argument}",
            "region": f"Vary (Region: {argument})"}[verb]


def details_line(job: Job) -> str:
    typed = shorten(job.recipe.summary().replace("`", "'"), PARAMETERS_CHARS)
    return f"{f'`{typed}` · ' if typed else ''}Model `{job.model}` · seed `{job.seed}` · job #{job.id}"


def queued(job: Job, position: int) -> str:
    state = "Starting…" if position == 0 else f"Queued (#{position} in line)"
    state += f" · job #{job.id}"  # the number /cancel and /info use
    if job.lane == "relax":
        state += " · relax mode: runs when no fast job waits"
    return fit(f"{prompt_line(job)}\n{state}")


def progress(job: Job, fraction: float) -> str:
    return fit(f"{prompt_line(job)}\nGenerating… {round(fraction * 100)}% · job #{job.id}")


def finished(job: Job) -> str:
    return fit(f"{prompt_line(job)}\n{details_line(job)}")


def failed(job: Job, reason: str) -> str:
    refund = (f"The {job.cost} image{'s' if job.cost != 1 else ''} it cost were refunded." if job.cost
              else "It cost nothing (relax mode).")
    if job.status is JobStatus.CANCELLED:
        return fit(f"{prompt_line(job)}\n❌ Job #{job.id} was cancelled. {refund}")
    if not job.status.refunded:  # not ended: the bot could not record it, and runs it again later
        return fit(f"{prompt_line(job)}\n⚠️ Job #{job.id}: {shorten(reason, 300)}.")
    return fit(f"{prompt_line(job)}\n❌ Job #{job.id} failed: {shorten(reason, 300)}. {refund}")


def message_link(guild_id: int | None, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"


def job_link(job: Job | None) -> str | None:
    return message_link(job.guild_id, job.channel_id, job.message_id) if job and job.message_id else None


def when(moment: datetime) -> str:
    """A Discord timestamp: each reader sees it in their own time zone."""
    return f"<t:{int(moment.timestamp())}:R>"
