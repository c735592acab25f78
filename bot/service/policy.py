"""What admins decided, applied to every job: who may use the bot here, which words no prompt may contain,
what happens to images the safety checker flags, and each server's default model. Read on every command
and job, so kept in memory per server; the admin services change it through `forget`."""

from __future__ import annotations

import re
from typing import Callable

from bot.engine import Catalog
from bot.recipe import JobKind
from bot.service.users import Requester, UserError, guild_key
from bot.store import Job
from bot.store.admin import AdminStore

NSFW_MODES = ("spoiler", "refuse")  # what happens to images the model's safety checker flags

BANNED = ("You are banned from using Dreamgrid on this server, so nothing was done. "
          "If you think this is a mistake, ask a server admin.")
BANNED_WORD = ("Your {what} contains a word this server does not allow, so nothing was queued or charged. "
               "Rephrase it and try again.")


class Policy:
    def __init__(self, records: AdminStore, catalog: Catalog, default_model: str) -> None:
        self.records = records
        self.catalog = catalog
        self.default_model = default_model  # the bot-wide default: DEFAULT_MODEL, else the catalog's
        # Whether a channel is age-restricted: only the Discord layer knows; it sets this when it starts.
        self.age_restricted: Callable[[int], bool] = lambda channel_id: False
        self._defaults: dict[int, str] = {}
        self._word_patterns: dict[int, re.Pattern | None] = {}
        self._banned: dict[int, set[int]] = {}

    def forget(self, guild_id: int | None) -> None:
        """A server's rules changed: read them again on next use."""
        guild = guild_key(guild_id)
        for cache in (self._defaults, self._word_patterns, self._banned):
            cache.pop(guild, None)

    # --- every new job --------------------------------------------------------------------------------

    async def admit(self, who: Requester, prompt: str, negative_prompt: str = "") -> None:
        """Raise UserError if `who` is banned here or a prompt has a banned word; the word is never named."""
        guild = guild_key(who.guild_id)
        if await self.is_banned(guild, who.user_id):
            raise UserError(BANNED)
        pattern = await self._banned_pattern(guild)
        if pattern is None:
            return
        for what, text in (("prompt", prompt), ("negative prompt", negative_prompt)):
            if text and pattern.search(text):
                raise UserError(BANNED_WORD.format(what=what))

    async def is_banned(self, guild_id: int | None, user_id: int) -> bool:
        guild = guild_key(guild_id)
        if guild not in self._banned:
            self._banned[guild] = await self.records.banned_users(guild)
        return user_id in self._banned[guild]

    async def model_for(self, guild_id: int | None) -> str:
        """The model a new /imagine in this server uses: the one chosen with /model use, else the default."""
        guild = guild_key(guild_id)
        if guild not in self._defaults:
            self._defaults[guild] = await self.records.guild_setting(guild, "default_model") or ""
        chosen = self._defaults[guild]
        # A model removed from the catalog since it was chosen: fall back rather than fail every job.
        return chosen if chosen in self.catalog.models else self.default_model

    async def _banned_pattern(self, guild: int) -> re.Pattern | None:
        if guild not in self._word_patterns:
            words = await self.records.words(guild)
            # Word boundaries that also hold for phrases and words ending in punctuation: no letter or digit
            # right before or after. Inner spaces match any run of whitespace.
            alternatives = "|".join(r"\s+".join(map(re.escape, w.split())) for w in words)
            self._word_patterns[guild] = (re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
                                          if words else None)
        return self._word_patterns[guild]

    # --- images the safety checker flags ---------------------------------------------------------------

    async def allow_nsfw(self, job: Job, flags: tuple[bool, ...]) -> bool:
        """Record which images the safety checker flagged; False if this server refuses them here."""
        await self.records.flag_images(job.id, [i for i, flagged in enumerate(flags, start=1) if flagged])
        mode, age_restricted_ok = await self.nsfw_settings(job.guild_id)
        if age_restricted_ok and self.age_restricted(job.channel_id):
            return True
        return mode != "refuse"

    async def spoiler(self, job: Job) -> bool:
        """Whether a finished job's image goes out as a spoiler: something in it was flagged (for an upscale,
        the image it enlarges), unless it is in an age-restricted channel the admins opened."""
        flagged = (job.parent_index in await self.records.flagged(job.parent_job_id) if job.kind is JobKind.UPSCALE
                   else bool(await self.records.flagged(job.id)))
        if not flagged:
            return False
        _, age_restricted_ok = await self.nsfw_settings(job.guild_id)
        return not (age_restricted_ok and self.age_restricted(job.channel_id))

    async def nsfw_settings(self, guild_id: int | None) -> tuple[str, bool]:
        guild = guild_key(guild_id)
        mode = await self.records.guild_setting(guild, "nsfw") or "spoiler"
        return mode, bool(await self.records.guild_setting(guild, "nsfw_age_restricted"))
