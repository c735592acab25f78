"""The Discord client: cogs and buttons registered once in `setup_hook`, jobs recovered after a restart."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import aiohttp
import discord
from discord.ext import commands

from bot.discord_ui import render
from bot.discord_ui.buttons import JobButton
from bot.discord_ui.checks import is_admin, requester
from bot.discord_ui.guard import GuardedTree
from bot.discord_ui.job_message import JobMessage
from bot.service import Accounts, Admin, Jobs, Requester, UserError
from bot.settings import Settings
from bot.service import Job, Refused
from bot.service.quota import allowance_refusal

log = logging.getLogger(__name__)

# How long a command may take to decide before it is deferred anyway (Discord drops it after 3 s).
ACK_BUDGET = 1.0
MEMBER_TIMEOUT = 10  # seconds to read a member's roles for the web pages


class DreamgridBot(commands.Bot):
    def __init__(self, settings: Settings, jobs: Jobs, accounts: Accounts, admin: Admin, *,
                 on_ack: Callable[[float], None] = lambda seconds: None) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,  # slash commands only; no message content needed
            intents=discord.Intents.default(),
            allowed_mentions=render.NO_PINGS,
            help_command=None,
            tree_cls=GuardedTree,  # banned members are refused every command
        )
        self.settings = settings
        # The service's three doors: the only way in to jobs, members' accounts and admin work.
        self.jobs, self.accounts, self.admin = jobs, accounts, admin
        self.on_ack = on_ack  # seconds from a job's interaction to its first response (the operators' metrics)
        self.dynamic_items: list[type[discord.ui.DynamicItem]] = []  # what custom_ids the bot answers

    async def setup_hook(self) -> None:
        from bot.discord_ui.cogs import COGS
        from bot.discord_ui.custom_ids import on_unclaimed_interaction
        from bot.discord_ui.cogs.settings import SettingButton, SettingSelect
        from bot.discord_ui.canvas_tools import RegionSelect, on_canvas_submitted
        from bot.discord_ui.cogs.pictures import DescribeButton
        from bot.discord_ui.remix import on_remix_submitted
        from bot.discord_ui.show import ShowButton

        # 📋, Vary (Region)'s select, /describe's prompts and /settings' controls
        self.register_items(JobButton, ShowButton, RegionSelect, DescribeButton, SettingSelect, SettingButton)
        self.add_listener(on_remix_submitted, "on_interaction")  # Remix modals, from their custom_id
        self.add_listener(on_canvas_submitted, "on_interaction")  # Custom Zoom and Vary (Region)'s box
        self.add_listener(on_unclaimed_interaction, "on_interaction")  # forged or stale ids: a polite "no"
        for cog in COGS:
            await self.add_cog(cog(self))
        await self._sync_commands()
        for job in await self.jobs.unfinished():
            log.info("recovering job %s, unfinished at the last stop", job.id)
            self.jobs.start(job, JobMessage(self, job))

    def register_items(self, *items: type[discord.ui.DynamicItem]) -> None:
        """Buttons and selects whose custom_id carries their state: registered once, answered after restarts."""
        self.add_dynamic_items(*items)
        self.dynamic_items += items

    async def _sync_commands(self) -> None:
        if not self.settings.guild_ids:
            await self.tree.sync()
            return
        for guild_id in self.settings.guild_ids:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)

    def is_admin(self, interaction: discord.Interaction) -> bool:
        return is_admin(interaction, self.settings)

    @staticmethod
    def requester(interaction: discord.Interaction) -> Requester:
        return requester(interaction)

    async def member_roles(self, guild_id: int, user_id: int) -> tuple[int, ...]:
        """A member's role ids in a server the bot is in, for the web pages (quota tiers, ADMIN_ROLE_IDS), as an
        interaction's member carries them; () when they are not a member or Discord cannot say now."""
        guild = self.get_guild(guild_id)
        if guild is None:
            return ()
        member = guild.get_member(user_id)
        if member is None:
            try:
                member = await asyncio.wait_for(guild.fetch_member(user_id), MEMBER_TIMEOUT)
            except discord.NotFound:
                return ()
            except (discord.HTTPException, TimeoutError) as error:  # the default tier, no admin: the safe side
                log.warning("could not read a member's roles in server %s (%s)", guild_id, type(error).__name__)
                return ()
        return tuple(role.id for role in member.roles)

    async def start_job(self, interaction: discord.Interaction,
                        accepting: Awaitable[Job | list[Job] | Refused]) -> None:
        """Accept a job (validate and charge) and start it, or tell the user why not, privately.
        `--repeat` jobs after the first each get a follow-up message of their own.

        Deciding takes milliseconds, so the answer is normally the first response: an ephemeral refusal or
        the deferral. When a burst of commands (or a slow disk) makes it take longer than ACK_BUDGET, the
        interaction is deferred first so Discord's 3-second limit is never missed, and a refusal then
        replaces the "thinking…" message with an ephemeral one."""
        received = asyncio.get_running_loop().time()
        deciding = asyncio.ensure_future(self._decide(interaction, accepting))
        done, _ = await asyncio.wait({deciding}, timeout=ACK_BUDGET)
        deferred = not done and await self._defer(interaction, False, received)
        outcome, private = await deciding
        if isinstance(outcome, str):
            await self._refuse(interaction, outcome, deferred, received)
            return
        jobs = outcome if isinstance(outcome, list) else [outcome]
        if not deferred and not await self._defer(interaction, private, received):
            log.warning("job %s: interaction expired before the defer", jobs[0].id)
            interaction = None  # the job still runs, in a channel message
        if interaction is not None and len(jobs) > 1:
            # A follow-up to a response still "thinking" would replace it: show the first job's state first.
            await _best_effort(interaction.edit_original_response(content=render.queued(jobs[0], 1),
                                                                  allowed_mentions=render.NO_PINGS))
        self.jobs.start(jobs[0], JobMessage(self, jobs[0], interaction))
        for extra in jobs[1:]:
            message = JobMessage(self, extra)
            if interaction is not None:  # without it, the job posts its own message when it can
                message.channel_message = await _best_effort(interaction.followup.send(
                    render.queued(extra, 1), ephemeral=private, wait=True, allowed_mentions=render.NO_PINGS))
            self.jobs.start(extra, message)

    async def _decide(self, interaction: discord.Interaction,
                      accepting: Awaitable[Job | list[Job] | Refused]) -> tuple[Job | list[Job] | str, bool]:
        """The accepted job(s), or the refusal to show; and whether the user wants private replies."""
        try:
            outcome = await accepting
        except UserError as error:
            return str(error), True
        except Exception:
            log.exception("could not accept a job")
            return ("Something went wrong on our side before your job started; nothing was charged. "
                    "Please try again, and tell an admin if it keeps happening."), True
        if isinstance(outcome, Refused):
            return quota_refusal(outcome), True
        return outcome, (await self.accounts.preferences(interaction.user.id)).private  # /settings

    async def _defer(self, interaction: discord.Interaction, private: bool, received: float) -> bool:
        try:
            await interaction.response.defer(thinking=True, ephemeral=private)
            self.on_ack(asyncio.get_running_loop().time() - received)
            return True
        except (discord.HTTPException, aiohttp.ClientError, OSError) as error:
            # Gone (past Discord's 3 seconds), or the connection failed: the job runs and shows itself in a
            # channel message (or the owner's DMs) instead.
            log.warning("could not answer interaction %s (%s); its job posts a message instead",
                        interaction.id, type(error).__name__)
            return False

    async def _refuse(self, interaction: discord.Interaction, text: str, deferred: bool, received: float) -> None:
        try:
            if not deferred:
                await interaction.response.send_message(text, ephemeral=True, allowed_mentions=render.NO_PINGS)
                self.on_ack(asyncio.get_running_loop().time() - received)
                return
            # A deferred public reply cannot turn ephemeral: remove it, then answer privately.
            await interaction.delete_original_response()
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=render.NO_PINGS)
        except discord.HTTPException:  # the interaction expired: nothing was charged, nobody to tell
            log.warning("could not tell %s why their command was refused", interaction.user.id, exc_info=True)


async def _best_effort(call: Awaitable):
    """A message that helps but is not the job's result: if Discord fails it, the job goes on without it."""
    try:
        return await call
    except (discord.HTTPException, aiohttp.ClientError, OSError) as error:
        log.warning("a job's status message could not be sent (%s)", type(error).__name__)
        return None


def quota_refusal(refused: Refused) -> str:
    return allowance_refusal(refused, render.when(refused.resets_at))
