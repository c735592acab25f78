"""/ban, /unban, /moderation words add|remove|list and /moderation audit: who may use the bot here and
what may be asked. The rules themselves are applied to every new job by the service's Policy."""

from __future__ import annotations

from datetime import datetime

import discord
from discord import app_commands

from bot.discord_ui import render
from bot.discord_ui.checks import is_admin_user, requester
from bot.discord_ui.guard import AdminCog
from bot.service import UserError
from bot.service.policy import NSFW_MODES

ADMINS_ONLY = discord.Permissions(manage_guild=True)
AUDIT_LINES = 20


class ModerationCog(AdminCog):
    moderation = app_commands.Group(name="moderation", description="What may be asked on this server",
                                    default_permissions=ADMINS_ONLY, guild_only=True)
    words = app_commands.Group(name="words", description="Words no prompt may contain", parent=moderation)

    async def cog_load(self) -> None:
        # The service cannot ask Discord whether a channel is age-restricted; this answers for it.
        self.admin.watch_age_restriction(
            lambda channel_id: bool(getattr(self.bot.get_channel(channel_id), "nsfw", False)))

    @app_commands.command(name="ban", description="Stop a member from using Dreamgrid on this server")
    @app_commands.describe(user="The member to ban", reason="Why (kept in the audit log)")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    async def ban(self, interaction: discord.Interaction, user: discord.User, reason: str = "") -> None:
        # discord.User: someone who already left the server can still be banned (a member arrives as Member).
        async def work() -> str:
            if user.bot:
                raise UserError("Bots cannot be banned from Dreamgrid; they cannot use it anyway.")
            if is_admin_user(user, self.bot.settings):
                raise UserError(f"{user.mention} is an admin and cannot be banned. Remove their admin role first.")
            await self.admin.moderation.ban(requester(interaction), user.id, reason)
            return (f"🚫 {user.mention} can no longer use Dreamgrid on this server; they are told so politely "
                    "when they try. /unban lifts it.")
        await self.act(interaction, work)

    @app_commands.command(name="unban", description="Let a banned member use Dreamgrid again")
    @app_commands.describe(user="The member to unban")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    async def unban(self, interaction: discord.Interaction, user: discord.User) -> None:
        async def work() -> str:
            await self.admin.moderation.unban(requester(interaction), user.id)
            return f"✅ {user.mention} may use Dreamgrid again."
        await self.act(interaction, work)

    @words.command(name="add", description="Refuse prompts containing this word (whole word, any case)")
    @app_commands.describe(word="A word or short phrase")
    async def add_word(self, interaction: discord.Interaction, word: str) -> None:
        async def work() -> str:
            added = await self.admin.moderation.add_word(requester(interaction), word)
            return (f"✅ Prompts and negative prompts with `{added}` (as a whole word, in any case) are now refused, "
                    "without repeating the word to anyone.")
        await self.act(interaction, work)

    @words.command(name="remove", description="Allow a banned word again")
    @app_commands.describe(word="A word on the list")
    async def remove_word(self, interaction: discord.Interaction, word: str) -> None:
        async def work() -> str:
            removed = await self.admin.moderation.remove_word(requester(interaction), word)
            return f"✅ `{removed}` is allowed again."
        await self.act(interaction, work)

    @words.command(name="list", description="The banned words of this server")
    async def list_words(self, interaction: discord.Interaction) -> None:
        async def work() -> str:
            words = await self.admin.moderation.words(interaction.guild_id)
            if not words:
                return "No banned words on this server. Add one with /moderation words add."
            return f"**Banned words ({len(words)}):** " + ", ".join(f"`{w}`" for w in words)
        await self.act(interaction, work)

    @moderation.command(name="nsfw", description="What happens to images the model's safety checker flags")
    @app_commands.describe(mode="spoiler: post them hidden behind a spoiler; refuse: post nothing and refund",
                           age_restricted="Post them as they are in age-restricted channels")
    @app_commands.choices(mode=[app_commands.Choice(name=m, value=m) for m in NSFW_MODES])
    async def nsfw(self, interaction: discord.Interaction, mode: str, age_restricted: bool = False) -> None:
        async def work() -> str:
            await self.admin.moderation.set_nsfw(requester(interaction), mode, age_restricted)
            what = ("posted as spoilers" if mode == "spoiler" else "refused (nothing posted, the images refunded)")
            where = ("; in age-restricted channels they are posted as they are" if age_restricted
                     else ", in every channel")
            return (f"✅ Images the model's safety checker flags are now {what}{where}. "
                    "Models without a safety checker are not checked.")
        await self.act(interaction, work)

    @moderation.command(name="audit", description="The last 20 admin actions on this server")
    async def audit(self, interaction: discord.Interaction) -> None:
        async def work() -> str:
            entries = await self.admin.moderation.audit_log(interaction.guild_id, AUDIT_LINES)
            lines = [f"**Last {len(entries)} admin actions**"]
            for e in entries:
                when = render.when(datetime.fromisoformat(e.created_at))
                detail = f" {discord.utils.escape_markdown(e.detail)}" if e.detail else ""
                lines.append(f"• {when} <@{e.user_id}> /{e.action}{detail} — {e.outcome[:120]}")
            return "\n".join(lines)
        await self.act(interaction, work)
