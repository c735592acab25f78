"""Who may do what. Checked by the application itself, so a server whose permission settings are wrong
still refuses non-admins."""

from __future__ import annotations

import discord

from bot.service import Requester
from bot.settings import Settings


def is_admin(interaction: discord.Interaction, settings: Settings) -> bool:
    return is_admin_user(interaction.user, settings)


def is_admin_user(user: discord.User | discord.Member, settings: Settings) -> bool:
    if user.id in settings.admin_user_ids:
        return True
    if isinstance(user, discord.Member):
        if any(role.id in settings.admin_role_ids for role in user.roles):
            return True
        return user.guild_permissions.manage_guild
    return False


def requester(interaction: discord.Interaction) -> Requester:
    return Requester(
        user_id=interaction.user.id,
        name=interaction.user.name,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        role_ids=tuple(role.id for role in getattr(interaction.user, "roles", ())),  # quota tiers
    )
