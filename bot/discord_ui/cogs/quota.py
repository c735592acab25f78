"""/quota set|grant|reset|tier: admins change allowances. An AdminCog: hidden from non-admins by Discord's
default permissions, checked again by the app (a server may show the commands to everyone), and every
change and every refused attempt is written to the audit table."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_ui.guard import AdminCog

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot

Images = app_commands.Range[int, 0, 1_000_000]


@app_commands.default_permissions(manage_guild=True)
class QuotaCog(AdminCog, commands.GroupCog, group_name="quota", group_description="Admins: fast-image allowances"):
    @app_commands.command(name="set", description="Set a member's fast images a period")
    async def set_(self, interaction: discord.Interaction, user: discord.User, images: Images) -> None:
        await self.act(interaction, lambda: self.admin.quota.set_images(user.id, user.name, images))

    @app_commands.command(name="grant", description="Give a member extra fast images for this period")
    async def grant(self, interaction: discord.Interaction, user: discord.User,
                    images: app_commands.Range[int, 1, 1_000_000]) -> None:
        await self.act(interaction, lambda: self.admin.quota.grant(user.id, user.name, images))

    @app_commands.command(name="reset", description="Set a member's usage this period back to zero")
    async def reset(self, interaction: discord.Interaction, user: discord.User) -> None:
        await self.act(interaction, lambda: self.admin.quota.reset(user.id, user.name))

    @app_commands.command(name="tier", description="Fast images a period for members with a role (0 removes it)")
    async def tier(self, interaction: discord.Interaction, role: discord.Role, images: Images) -> None:
        await self.act(interaction, lambda: self.admin.quota.tier(interaction.guild_id, role.id, role.name, images))
