"""Two gates in front of commands: banned members are refused every slash command (GuardedTree) and every
button, select and modal (`refuse_banned` in each item's interaction_check), and the admin commands refuse anyone who is not an admin
(AdminCog) — whatever the server's Discord permission settings say — and write every admin action to the
audit table."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Awaitable, Callable

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_ui import render
from bot.discord_ui.checks import requester
from bot.service import Admin, UserError
from bot.service.actions import NOT_YOURS
from bot.service.actions import may_act_on as service_may_act_on
from bot.service.models import LoadFailed
from bot.service.policy import BANNED
from bot.service import Job

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot

log = logging.getLogger(__name__)

NOT_ADMIN = ("Only server admins can use /{command}: members with Manage Server, or those the bot's "
             "ADMIN_USER_IDS / ADMIN_ROLE_IDS name. Nothing was changed; ask an admin if you need this.")
MAX_CONTENT = 2000


async def refuse_banned(interaction: discord.Interaction) -> bool:
    """True (after one polite private answer) if a banned member is asking; admins cannot be locked out."""
    bot: DreamgridBot = interaction.client
    if bot.is_admin(interaction):
        return False
    if not await bot.admin.is_banned(interaction.guild_id, interaction.user.id):
        return False
    if interaction.type is discord.InteractionType.autocomplete:
        await interaction.response.autocomplete([])
        return True
    await interaction.response.send_message(BANNED, ephemeral=True, allowed_mentions=render.NO_PINGS)
    command = _admin_command(interaction)
    if command is not None:  # refused before AdminCog's own check could audit it: audit it here
        await bot.admin.audit(requester(interaction), command, _options(interaction), "refused: banned")
    return True


def _admin_command(interaction: discord.Interaction) -> str | None:
    """The qualified name of the slash command being run, if it belongs to an AdminCog; else None."""
    if interaction.type is not discord.InteractionType.application_command:
        return None
    command = interaction.command
    if isinstance(command, app_commands.Command) and isinstance(command.binding, AdminCog):
        return command.qualified_name
    return None


class GuardedTree(app_commands.CommandTree):
    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return not await refuse_banned(interaction)  # banned members are refused every command

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError, /) -> None:
        # Our checks answer the member themselves before failing; nothing is left to report.
        if isinstance(error, app_commands.CheckFailure) and interaction.response.is_done():
            return
        await super().on_error(interaction, error)


class AdminCog(commands.Cog):
    """Base of the admin cogs: every command in it is for admins only and is audited."""

    def __init__(self, bot: DreamgridBot) -> None:
        self.bot = bot

    @property
    def admin(self) -> Admin:
        return self.bot.admin

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if self.bot.is_admin(interaction):
            return True
        command = interaction.command.qualified_name if interaction.command else "this command"
        await interaction.response.send_message(NOT_ADMIN.format(command=command), ephemeral=True,
                                                allowed_mentions=render.NO_PINGS)
        await self.admin.audit(requester(interaction), command, _options(interaction), "refused: not an admin")
        return False

    async def act(self, interaction: discord.Interaction, work: Callable[[], Awaitable[str]]) -> None:
        """Run one admin action, answer privately, and audit it (who, what, when, how it went)."""
        action = interaction.command.qualified_name if interaction.command else "?"
        try:
            text, outcome = await work(), "done"
        except UserError as error:
            text, outcome = str(error), f"{'failed' if isinstance(error, LoadFailed) else 'refused'}: {error}"
        except Exception as error:
            log.exception("admin action %s failed", action)
            text = "Something went wrong on our side; nothing was changed. The bot's log has the details."
            outcome = f"failed: {type(error).__name__}"
        await reply(interaction, text)  # first: Discord's 3 seconds run for the answer, not for the audit
        await self.admin.audit(requester(interaction), action, _options(interaction), outcome)


def may_act_on(interaction: discord.Interaction[DreamgridBot], job: Job) -> bool:
    """A job's buttons, Remix, /show and /cancel are for its owner and admins (the service's one rule)."""
    return service_may_act_on(job, interaction.user.id, interaction.client.is_admin(interaction))


async def owned_job(interaction: discord.Interaction[DreamgridBot], job_id: int, what: str = "use its buttons"
                    ) -> Job | None:
    """The job, if the one asking may act on it (its owner, or an admin); otherwise None, after one polite
    private answer."""
    bot = interaction.client
    job = await bot.jobs.get(job_id)
    if job is None:
        await interaction.response.send_message(
            f"Job #{job_id} no longer exists. Start a new one with /imagine.", ephemeral=True)
        return None
    if not may_act_on(interaction, job):
        await interaction.response.send_message(NOT_YOURS.format(what=what), ephemeral=True)
        return None
    return job


async def usable_job(interaction: discord.Interaction[DreamgridBot], job_id: int, what: str = "use its buttons"
                     ) -> Job | None:
    """The one check of a job's buttons, selects and forms: not banned, and its owner or an admin."""
    if await refuse_banned(interaction):
        return None
    return await owned_job(interaction, job_id, what)


async def reply(interaction: discord.Interaction, text: str) -> None:
    """Answer privately, or replace the private answer already given (a "Loading…" note)."""
    text = fit(text)
    if interaction.response.is_done():
        await interaction.edit_original_response(content=text, allowed_mentions=render.NO_PINGS)
    else:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=render.NO_PINGS)


def fit(text: str) -> str:
    """Discord refuses messages over 2000 characters: cut at a line and say so."""
    if len(text) <= MAX_CONTENT:
        return text
    cut = text[: MAX_CONTENT - 20].rsplit("\n", 1)[0]
    return cut + "\n… (more not shown)"


def _options(interaction: discord.Interaction) -> str:
    """The command's arguments as the audit's "what": name=value, users by id."""
    namespace = getattr(interaction, "namespace", None)
    if namespace is None:
        return ""
    parts = []
    for name, value in namespace:
        shown = value.id if isinstance(value, (discord.abc.User, discord.Role, discord.Object)) else value
        parts.append(f"{name}={shown}")
    return " ".join(parts)
