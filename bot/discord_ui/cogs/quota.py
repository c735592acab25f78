"""/quota set|grant|reset|tier: admins change allowances. Hidden from non-admins by Discord's default
permissions, and checked again by the app (a server may show the commands to everyone). Every change, and
every refused attempt, is written to the audit table."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_ui import render
from bot.service.quota import Actor, QuotaAdmin

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot

Images = app_commands.Range[int, 0, 1_000_000]


@app_commands.default_permissions(manage_guild=True)
class QuotaCog(commands.GroupCog, group_name="quota", group_description="Admins: fast-image allowances"):
    def __init__(self, bot: DreamgridBot) -> None:
        self.bot = bot
        self.admin = QuotaAdmin(bot.service.store, bot.service.quota.rules)
        super().__init__()

    @app_commands.command(name="set", description="Set a member's fast images a period")
    async def set_(self, interaction: discord.Interaction, user: discord.User, images: Images) -> None:
        if await self._allowed(interaction, "quota set"):
            await self._reply(interaction, await self.admin.set_images(_actor(interaction), user.id, user.name, images))

    @app_commands.command(name="grant", description="Give a member extra fast images for this period")
    async def grant(self, interaction: discord.Interaction, user: discord.User,
                    images: app_commands.Range[int, 1, 1_000_000]) -> None:
        if await self._allowed(interaction, "quota grant"):
            await self._reply(interaction, await self.admin.grant(_actor(interaction), user.id, user.name, images))

    @app_commands.command(name="reset", description="Set a member's usage this period back to zero")
    async def reset(self, interaction: discord.Interaction, user: discord.User) -> None:
        if await self._allowed(interaction, "quota reset"):
            await self._reply(interaction, await self.admin.reset(_actor(interaction), user.id, user.name))

    @app_commands.command(name="tier", description="Fast images a period for members with a role (0 removes it)")
    async def tier(self, interaction: discord.Interaction, role: discord.Role, images: Images) -> None:
        if await self._allowed(interaction, "quota tier"):
            await self._reply(interaction, await self.admin.tier(_actor(interaction), role.id, role.name, images))

    async def _allowed(self, interaction: discord.Interaction, action: str) -> bool:
        if self.bot.is_admin(interaction):
            return True
        actor = _actor(interaction)
        await self.admin.audit.audit(actor.guild_id or 0, actor.user_id, actor.name, action, "",
                                     "refused: not an admin")
        await interaction.response.send_message(
            "Only admins can change allowances (Manage Server, or listed in ADMIN_USER_IDS / ADMIN_ROLE_IDS). "
            "Nothing was changed. /info shows your own allowance.", ephemeral=True)
        return False

    @staticmethod
    async def _reply(interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=render.NO_PINGS)


def _actor(interaction: discord.Interaction) -> Actor:
    return Actor(interaction.user.id, interaction.user.name, interaction.guild_id)
