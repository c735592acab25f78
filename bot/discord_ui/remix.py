"""Remix: with Remix on in /settings, V1–V4, 🔄, Vary (Subtle/Strong/Region), Zoom Out, Make Square and the
pans first open the prompt, parameters included, in a modal; what the user submits is what the new job runs.

Like the buttons, the modal keeps its state in its custom_id (`dg:remix:<action>:<job>:<index>`), and its
submission is handled from there (`on_remix_submitted`, a listener), never by an object in memory: a modal
opened before a restart still works after it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord

from bot.discord_ui.custom_ids import REMIX_MODAL, number
from bot.discord_ui.guard import usable_job
from bot.service import Job
from bot.service.actions import remix_text

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot

PROMPT_FIELD = "prompt"


TITLES = {"reroll": "Remix: reroll", "zoom2": "Remix: zoom out 2x", "zoom15": "Remix: zoom out 1.5x",
          "square": "Remix: make square", "region": "Remix: vary a region", "panleft": "Remix: pan left",
          "panright": "Remix: pan right", "panup": "Remix: pan up", "pandown": "Remix: pan down"}


def remix_modal(job: Job, action: str, index: int) -> discord.ui.Modal:
    title = TITLES.get(action, f"Remix: variations of image {index or 1}")
    modal = discord.ui.Modal(title=title, custom_id=f"dg:remix:{action}:{job.id}:{index}")
    modal.add_item(discord.ui.TextInput(
        label="Prompt and parameters", style=discord.TextStyle.paragraph, default=remix_text(job)[:4000],
        max_length=4000, custom_id=PROMPT_FIELD))
    return modal


async def show_remix(interaction: discord.Interaction, job: Job, action: str, index: int) -> None:
    modal = remix_modal(job, action, index)
    await interaction.response.send_modal(modal)
    modal.stop()  # discord.py would keep it in memory; the submission is handled from its custom_id instead


async def on_remix_submitted(interaction: discord.Interaction[DreamgridBot]) -> None:
    """The listener for every Remix submission, before or after a restart."""
    match = submitted_form(interaction, REMIX_MODAL)
    if match is None:
        return
    from bot.discord_ui.buttons import start_action  # buttons import this module

    # as its buttons check (banned while the modal was open, or not theirs)
    job = await usable_job(interaction, number(match["job"]) or 0, "remix it")
    if job is not None:
        await start_action(interaction, match["action"], job, int(match["index"]),
                           submitted_field(interaction.data, PROMPT_FIELD))


def submitted_form(interaction: discord.Interaction, form: re.Pattern[str]) -> re.Match[str] | None:
    """The custom_id's parts, if the interaction submits a modal of that shape (else None: not ours)."""
    if interaction.type is not discord.InteractionType.modal_submit:
        return None
    return form.fullmatch(str((interaction.data or {}).get("custom_id", "")))


def submitted_field(data: dict, custom_id: str) -> str:
    """A form field's value, wherever Discord nests it (action rows or labels)."""
    stack = list(data.get("components", []))
    while stack:
        component = stack.pop()
        if component.get("custom_id") == custom_id:
            return component.get("value", "")
        stack.extend(component.get("components", []))
        if "component" in component:
            stack.append(component["component"])
    return ""
