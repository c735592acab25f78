"""Cancelling jobs from Discord (the ❌ button and /cancel): stop them, then say privately what happened.
The job's own message says "cancelled" by itself (JobMessage hears it like any other ending)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from bot.discord_ui import render
from bot.recipe import JobStatus
from bot.service import Job

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot


async def cancel_jobs(interaction: discord.Interaction[DreamgridBot], jobs: list[Job]) -> None:
    active = [job for job in jobs if job.active]
    if not active:
        states = ", ".join(f"#{job.id} is {job.status}" for job in jobs)
        await interaction.response.send_message(
            f"There is nothing to cancel: {states or 'you have no queued or running jobs'}.", ephemeral=True)
        return
    # A running job stops at its next denoising step: that may take longer than Discord's 3 seconds.
    await interaction.response.defer(ephemeral=True, thinking=True)
    lines = [outcome(await interaction.client.jobs.stop(job.id) or job) for job in active]
    await interaction.followup.send("\n".join(lines), ephemeral=True, allowed_mentions=render.NO_PINGS)


def outcome(job: Job) -> str:
    if job.status is JobStatus.CANCELLED:
        paid = ((f"the {job.cost} images it cost were refunded" if job.cost > 1 else "the image it cost was refunded")
                if job.cost else "it cost nothing (relax mode)")
        return f"Job #{job.id} is cancelled; {paid}."
    return f"Job #{job.id} had already {'finished' if job.status is JobStatus.DONE else job.status}, so it was not cancelled."
