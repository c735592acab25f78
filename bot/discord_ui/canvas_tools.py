"""The canvas tools' own controls under an upscaled image: the Vary (Region) select, and the two forms,
Custom Zoom (a factor 1–2 and the prompt) and Vary (Region)'s box in percent (with the prompt).

As everywhere, state lives in the custom_id (`dg:region:<job>`, `dg:canvas:zoom|box:<job>`): a select or a
form opened before a restart works after it. The buttons themselves (Zoom Out, Make Square, the pans) are
JobButtons (buttons.py).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord

from bot.discord_ui.custom_ids import CANVAS_MODAL, REGION_SELECT, number
from bot.discord_ui.guard import usable_job
from bot.discord_ui.remix import remix_text, show_remix, submitted_field, submitted_form
from bot.service import Job
from bot.service.actions import REGION_NAMES

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot

BOX = "box"  # the select's last option: a box of one's own, in a form
PROMPT_FIELD, VALUE_FIELD = "prompt", "value"
FORMS = {  # tool -> (title, the value's label, its default, placeholder)
    "zoom": ("Custom Zoom", "Zoom out by (1.0 to 2.0)", "1.5", "1.5"),
    BOX: ("Vary (Region): a box", "Box in percent: left,top,right,bottom", "", "25,25,75,75"),
}


class RegionSelect(discord.ui.DynamicItem[discord.ui.Select], template=REGION_SELECT):
    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.job: Job | None = None
        options = [discord.SelectOption(label=f"Repaint the {name.replace('-', ' ')}", value=name)
                   for name in REGION_NAMES]
        options.append(discord.SelectOption(label="Repaint a box of my own…", value=BOX))
        super().__init__(discord.ui.Select(placeholder="Vary (Region): repaint a part…", options=options,
                                           custom_id=f"dg:region:{job_id}", row=3))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Select,
                             match: re.Match[str], /) -> "RegionSelect":
        return cls(number(match["job"]) or 0)  # 0: no such job, which owned_job says

    async def interaction_check(self, interaction: discord.Interaction[DreamgridBot], /) -> bool:
        """The job's owner and admins only, as its buttons."""
        self.job = await usable_job(interaction, self.job_id)
        return self.job is not None

    async def callback(self, interaction: discord.Interaction[DreamgridBot]) -> None:
        from bot.discord_ui.buttons import start_action  # buttons import this module

        choice = (self.item.values or [""])[0]
        if choice == BOX:
            await show_canvas_form(interaction, self.job, BOX)
        elif choice not in REGION_NAMES:  # a forged value
            await interaction.response.send_message(f"There is no region {choice[:40]!r}; pick one from the list.",
                                                    ephemeral=True)
        elif (await interaction.client.accounts.preferences(interaction.user.id)).remix:
            await show_remix(interaction, self.job, "region", REGION_NAMES.index(choice))
        else:
            await start_action(interaction, "region", self.job, REGION_NAMES.index(choice))


async def show_canvas_form(interaction: discord.Interaction, job: Job, tool: str) -> None:
    title, label, default, placeholder = FORMS[tool]
    modal = discord.ui.Modal(title=title, custom_id=f"dg:canvas:{tool}:{job.id}")
    modal.add_item(discord.ui.TextInput(label=label, default=default or None, placeholder=placeholder,
                                        max_length=20, custom_id=VALUE_FIELD))
    modal.add_item(discord.ui.TextInput(
        label="Prompt and parameters", style=discord.TextStyle.paragraph, default=remix_text(job)[:4000],
        max_length=4000, custom_id=PROMPT_FIELD))
    await interaction.response.send_modal(modal)
    modal.stop()  # handled from its custom_id (on_canvas_submitted), not from memory


async def on_canvas_submitted(interaction: discord.Interaction[DreamgridBot]) -> None:
    """The listener for Custom Zoom and box forms, before or after a restart."""
    match = submitted_form(interaction, CANVAS_MODAL)
    if match is None:
        return
    job = await usable_job(interaction, number(match["job"]) or 0, "paint on it")
    if job is None:
        return
    value = submitted_field(interaction.data, VALUE_FIELD).strip()
    operation = f"zoom {value}" if match["tool"] == "zoom" else f"region {value}"
    bot = interaction.client
    prompt = submitted_field(interaction.data, PROMPT_FIELD)
    await bot.start_job(interaction, bot.jobs.canvas(bot.requester(interaction), job, operation, prompt))
