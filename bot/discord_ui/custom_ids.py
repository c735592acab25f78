"""Every custom_id the bot reads, in one place: the shapes its components and modals carry, the integers
in them checked against SQLite's range, and one answer for anything else.

A custom_id arrives from Discord's client, but anyone can send any custom_id in an interaction. The
DynamicItems' templates accept only well-formed ids (an action the bot has, an index 0-4, at most 19
digits); an id that no template matches, or whose number is beyond what SQLite stores, gets a polite private
refusal here instead of "This interaction failed" (`on_unclaimed_interaction`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot

SQLITE_MAX_INT = 2**63 - 1
NUMBER = r"[0-9]{1,19}"  # a job id, a user id, a page: digits that may still exceed SQLITE_MAX_INT

# Under an upscaled image: Upscale (Creative), the zooms (zoomc: a modal for the factor), Make Square, the pans.
CANVAS_ACTIONS = ("creative", "zoom2", "zoom15", "zoomc", "square", "panleft", "panright", "panup", "pandown")
JOB_ACTIONS = ("upscale", "vary", "reroll", "subtle", "strong", "cancel", *CANVAS_ACTIONS)
JOB_BUTTON = rf"dg:(?P<action>{'|'.join(JOB_ACTIONS)}):(?P<job>{NUMBER}):(?P<index>[0-4])"
SHOW_BUTTON = rf"dg:show:(?P<job>{NUMBER})"
DESCRIBE_BUTTON = rf"dg:describe:(?P<description>{NUMBER}):(?P<index>[1-4])"  # run prompt n of a /describe
REGION_SELECT = rf"dg:region:(?P<job>{NUMBER})"
# Remix keeps the action and its index: an image 1-4, or for `region` the region's place in the select (0-9).
REMIX_ACTIONS = ("reroll", "vary", "subtle", "strong", "zoom2", "zoom15", "square", "panleft", "panright", "panup",
                 "pandown", "region")
REMIX_MODAL = re.compile(rf"dg:remix:(?P<action>{'|'.join(REMIX_ACTIONS)}):(?P<job>{NUMBER}):(?P<index>[0-9])")
# The canvas tools' own forms: Custom Zoom (a factor and the prompt), Vary (Region)'s box (in percent).
CANVAS_MODAL = re.compile(rf"dg:canvas:(?P<tool>zoom|box):(?P<job>{NUMBER})")
HISTORY_PAGE = rf"dgh:(?P<owner>{NUMBER}):(?P<page>[0-9]{{1,6}}):(?P<text>.*)"
SETTING_SELECT = r"dg:set:(?P<field>model|stylize|quality)"
SETTING_BUTTON = r"dg:set:(?P<field>variation|remix|private|reset):(?P<value>subtle|strong|on|off|all)"

STALE = ("That button or form is not one this bot can use (it may come from an older version of the bot, or "
         "it was altered), so nothing was done. Use the buttons on a job's message, or /imagine.")


def number(text: str) -> int | None:
    """An id from a custom_id, or None if SQLite cannot hold it (no such row can exist)."""
    value = int(text)
    return value if value <= SQLITE_MAX_INT else None


def _claimed(interaction: discord.Interaction[DreamgridBot], custom_id: str, modal: bool) -> bool:
    """Whether a handler answers it: Remix for its modals; a DynamicItem for a component whose template
    matches and which is on the message (discord.py drops one that is not, without a word)."""
    if modal:
        return any(form.fullmatch(custom_id) for form in (REMIX_MODAL, CANVAS_MODAL))
    if not any(item.__discord_ui_compiled_template__.fullmatch(custom_id) for item in interaction.client.dynamic_items):
        return False
    kind = (interaction.data or {}).get("component_type")
    stack = list(interaction.message.components) if interaction.message else []
    while stack:
        component = stack.pop()
        if getattr(component, "custom_id", None) == custom_id and component.type.value == kind:
            return True
        stack.extend(getattr(component, "children", None) or [])
    return False


async def on_unclaimed_interaction(interaction: discord.Interaction[DreamgridBot]) -> None:
    """Answer a button, select or form submission that nothing in the bot handles."""
    modal = interaction.type is discord.InteractionType.modal_submit
    if not modal and interaction.type is not discord.InteractionType.component:
        return
    custom_id = str((interaction.data or {}).get("custom_id", ""))
    if _claimed(interaction, custom_id, modal):
        return
    await refuse(interaction, STALE)


async def refuse(interaction: discord.Interaction, text: str) -> None:
    """One private answer, unless the interaction was answered already."""
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
