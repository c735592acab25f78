"""/settings (select menus and buttons for a user's defaults, as on Midjourney) and /prefer (suffix, custom
options). Always private. Controls are DynamicItems (`dg:set:<field>[:<value>]`), so an old /settings
message keeps working after a restart; each change edits the message to show the new state."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_ui import render
from bot.discord_ui.custom_ids import SETTING_BUTTON, SETTING_SELECT, STALE, refuse
from bot.discord_ui.guard import refuse_banned
from bot.service import UserError, UserPreferences

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot

STYLIZE_LEVELS = {"50": "Low", "100": "Med", "250": "High", "750": "Very High"}  # Midjourney's four
QUALITY_LEVELS = {"0.25": ".25", "0.5": ".5", "1.0": "1", "2.0": "2"}
DEFAULT = "default"
BUTTON_VALUES = {"variation": ("subtle", "strong"), "remix": ("on", "off"), "private": ("on", "off"), "reset": ("all",)}


def settings_text(prefs: UserPreferences, server_model: str) -> str:
    stylize = prefs.stylize or 100
    lines = [
        "**Your settings** — parameters typed in a prompt override them.",
        f"Model `{prefs.model or server_model}`{'' if prefs.model else ' (the server default)'} · "
        f"Stylize {STYLIZE_LEVELS.get(str(stylize), '')} ({stylize}) · Quality {prefs.quality or 1:g} · "
        f"V buttons: {prefs.variation.title()} · Remix {'on' if prefs.remix else 'off'} · "
        f"Replies {'private' if prefs.private else 'public'}",
    ]
    if prefs.suffix:
        lines.append(f"Suffix: {_code(prefs.suffix)}")
    if prefs.options:
        lines.append("Custom options: " + ", ".join(f"`--{name}`" for name in prefs.options))
    return "\n".join(lines)


def settings_view(prefs: UserPreferences, models: list[str]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    model_options = [(DEFAULT, "Server default")] + [(name, name) for name in models[:24]]
    view.add_item(SettingSelect("model", model_options, prefs.model or DEFAULT, "Model"))
    view.add_item(SettingSelect("stylize", [(k, f"Stylize {v} ({k})") for k, v in STYLIZE_LEVELS.items()],
                                str(prefs.stylize or 100), "Stylize"))
    view.add_item(SettingSelect("quality", [(k, f"Quality {v}") for k, v in QUALITY_LEVELS.items()],
                                str(float(prefs.quality or 1.0)), "Quality"))
    for value in ("subtle", "strong"):
        view.add_item(SettingButton("variation", value, f"{value.title()} variations", prefs.variation == value, 3))
    view.add_item(SettingButton("remix", "off" if prefs.remix else "on", "Remix mode", prefs.remix, 4))
    view.add_item(SettingButton("private", "off" if prefs.private else "on", "Private replies", prefs.private, 4))
    view.add_item(SettingButton("reset", "all", "Reset settings", False, 4))
    return view


async def _show(interaction: discord.Interaction[DreamgridBot], prefs: UserPreferences) -> None:
    """Edit the /settings message in place to show what changed."""
    bot = interaction.client
    await interaction.response.edit_message(
        content=settings_text(prefs, await bot.accounts.model_for(interaction.guild_id)),
        view=settings_view(prefs, bot.accounts.model_names), allowed_mentions=render.NO_PINGS)


class SettingSelect(discord.ui.DynamicItem[discord.ui.Select], template=SETTING_SELECT):
    def __init__(self, field: str, options: list[tuple[str, str]] | None = None, current: str = "",
                 placeholder: str = "") -> None:
        self.field = field
        row = {"model": 0, "stylize": 1, "quality": 2}[field]
        choices = [discord.SelectOption(label=label, value=value, default=value == current)
                   for value, label in options or [("x", "x")]]
        super().__init__(discord.ui.Select(custom_id=f"dg:set:{field}", options=choices, row=row,
                                           placeholder=placeholder))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Select,
                             match: re.Match[str], /) -> "SettingSelect":
        return cls(match["field"])

    async def interaction_check(self, interaction: discord.Interaction[DreamgridBot], /) -> bool:
        return not await refuse_banned(interaction)  # a panel opened before a ban does not outlive it

    async def callback(self, interaction: discord.Interaction[DreamgridBot]) -> None:
        values = (interaction.data or {}).get("values") or [DEFAULT]
        value = str(values[0])
        levels = {"stylize": STYLIZE_LEVELS, "quality": QUALITY_LEVELS}.get(self.field)
        if len(values) != 1 or (levels is not None and value not in levels):  # not what the menu offers
            return await refuse(interaction, STALE)
        bot = interaction.client
        if self.field == "model":
            if value != DEFAULT and not bot.accounts.offers(value):
                await interaction.response.send_message(
                    f"Model `{value}` is no longer offered; pick another in /settings.", ephemeral=True)
                return
            change = {"model": None if value == DEFAULT else value}
        elif self.field == "stylize":
            change = {"stylize": None if value == "100" else int(value)}
        else:
            change = {"quality": None if value == "1.0" else float(value)}
        await _show(interaction, await bot.accounts.update_preferences(interaction.user.id, **change))


class SettingButton(discord.ui.DynamicItem[discord.ui.Button],
                    template=SETTING_BUTTON):
    def __init__(self, field: str, value: str, label: str = "", active: bool = False, row: int = 3) -> None:
        self.field, self.value = field, value
        style = discord.ButtonStyle.success if active else discord.ButtonStyle.secondary
        if field == "reset":
            style = discord.ButtonStyle.danger
        super().__init__(discord.ui.Button(label=label or field, style=style, row=row,
                                           custom_id=f"dg:set:{field}:{value}"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str], /) -> "SettingButton":
        return cls(match["field"], match["value"])

    async def interaction_check(self, interaction: discord.Interaction[DreamgridBot], /) -> bool:
        return not await refuse_banned(interaction)  # a panel opened before a ban does not outlive it

    async def callback(self, interaction: discord.Interaction[DreamgridBot]) -> None:
        if self.value not in BUTTON_VALUES[self.field]:  # e.g. dg:set:reset:on, which no panel shows
            return await refuse(interaction, STALE)
        update = interaction.client.accounts.update_preferences
        user = interaction.user.id
        if self.field == "variation":
            prefs = await update(user, variation=self.value)
        elif self.field == "reset":  # suffix and custom options are /prefer's, and stay
            prefs = await update(user, model=None, stylize=None, quality=None, variation="strong",
                                             remix=False, private=False)
        else:
            prefs = await update(user, **{self.field: self.value == "on"})
        await _show(interaction, prefs)


class SettingsCog(commands.Cog):
    prefer = app_commands.Group(name="prefer", description="Your prompt suffix and custom --options")
    option = app_commands.Group(name="option", description="Named custom options: --name in a prompt",
                                parent=prefer)

    def __init__(self, bot: DreamgridBot) -> None:
        self.bot = bot

    @app_commands.command(name="settings", description="Your defaults: model, stylize, quality, Remix, privacy")
    async def settings(self, interaction: discord.Interaction) -> None:
        accounts = self.bot.accounts
        prefs = await accounts.preferences(interaction.user.id)
        await interaction.response.send_message(
            settings_text(prefs, await accounts.model_for(interaction.guild_id)),
            view=settings_view(prefs, accounts.model_names), ephemeral=True, allowed_mentions=render.NO_PINGS)

    @prefer.command(name="suffix", description="Text and parameters added to the end of every prompt")
    @app_commands.describe(value="e.g. --ar 3:2 --stylize 250 (leave empty to remove your suffix)")
    async def suffix(self, interaction: discord.Interaction, value: str = "") -> None:
        try:
            value = await self.bot.accounts.set_suffix(interaction.user.id, value)
        except UserError as error:
            return await _private(interaction, str(error))
        await _private(interaction,
                       f"Every prompt now ends with {_code(value)}." if value else "Your suffix is removed.")

    @option.command(name="set", description="Make --name stand for some parameters")
    @app_commands.describe(name="the option's name, e.g. portrait", value="its parameters, e.g. --ar 2:3 --s 250")
    async def option_set(self, interaction: discord.Interaction, name: str, value: str) -> None:
        try:
            name, value = await self.bot.accounts.set_option(interaction.user.id, name, value)
        except UserError as error:
            return await _private(interaction, str(error))
        await _private(interaction, f"`--{name}` now stands for {_code(value)}.")

    @option.command(name="list", description="Your custom options")
    async def option_list(self, interaction: discord.Interaction) -> None:
        options = (await self.bot.accounts.preferences(interaction.user.id)).options
        if not options:
            return await _private(interaction, "You have no custom options. Make one with /prefer option set.")
        await _private(interaction, "\n".join(f"`--{name}` → {_code(value)}" for name, value in options.items()))

    @option.command(name="delete", description="Delete one of your custom options")
    async def option_delete(self, interaction: discord.Interaction, name: str) -> None:
        name = name.strip().lstrip("-—–").lower()
        if await self.bot.accounts.delete_option(interaction.user.id, name):
            return await _private(interaction, f"`--{name}` is deleted.")
        options = (await self.bot.accounts.preferences(interaction.user.id)).options
        have = ", ".join(f"`--{o}`" for o in options) or "none"
        await _private(interaction, f"You have no option `--{name}` (yours: {have}). Nothing was changed.")


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"  # a backtick in the text must not end the code span


async def _private(interaction: discord.Interaction, text: str) -> None:
    await interaction.response.send_message(text, ephemeral=True, allowed_mentions=render.NO_PINGS)
