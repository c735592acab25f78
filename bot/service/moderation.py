"""Moderation from Discord: bans, banned words, the NSFW mode, and the audit table of every admin action.
The rules themselves are applied to every new job by the Policy; each change here makes it read them again."""

from __future__ import annotations

import re

from bot.service.policy import NSFW_MODES, Policy
from bot.service.users import Requester, UserError, guild_key
from bot.store import Store
from bot.store.admin import AdminStore, AuditEntry

MAX_WORD_CHARS = 50
# A banned "word" may be a short phrase: letters and digits, with inner spaces, hyphens or apostrophes.
_WORD = re.compile(r"^[\w][\w '\-]*$")


class Moderation:
    def __init__(self, store: Store, policy: Policy) -> None:
        self.records = AdminStore(store)
        self.policy = policy

    async def ban(self, who: Requester, user_id: int, reason: str = "") -> None:
        if user_id == who.user_id:
            raise UserError("You cannot ban yourself.")
        guild = guild_key(who.guild_id)
        added = await self.records.ban(guild, user_id, who.user_id, reason.strip())
        self.policy.forget(guild)
        if not added:
            raise UserError("That member is banned already; /unban lifts it.")

    async def unban(self, who: Requester, user_id: int) -> None:
        guild = guild_key(who.guild_id)
        lifted = await self.records.unban(guild, user_id)
        self.policy.forget(guild)
        if not lifted:
            raise UserError("That member is not banned, so there was nothing to lift.")

    async def add_word(self, who: Requester, word: str) -> str:
        word = _normal_word(word)
        guild = guild_key(who.guild_id)
        if not await self.records.add_word(guild, word, who.user_id):
            raise UserError(f"`{word}` is on the list already.")
        self.policy.forget(guild)
        return word

    async def remove_word(self, who: Requester, word: str) -> str:
        word = _normal_word(word)
        guild = guild_key(who.guild_id)
        if not await self.records.remove_word(guild, word):
            raise UserError(f"`{word}` is not on the list. /moderation words list shows it.")
        self.policy.forget(guild)
        return word

    async def words(self, guild_id: int | None) -> list[str]:
        return await self.records.words(guild_key(guild_id))

    async def nsfw_settings(self, guild_id: int | None) -> tuple[str, bool]:
        return await self.policy.nsfw_settings(guild_id)

    async def set_nsfw(self, who: Requester, mode: str, age_restricted: bool) -> None:
        if mode not in NSFW_MODES:
            raise UserError(f"The NSFW mode is one of {', '.join(NSFW_MODES)}.")
        guild = guild_key(who.guild_id)
        await self.records.set_guild_setting(guild, "nsfw", mode)
        await self.records.set_guild_setting(guild, "nsfw_age_restricted", int(age_restricted))
        self.policy.forget(guild)

    async def audit(self, who: Requester, action: str, detail: str, outcome: str) -> None:
        await self.records.audit(guild_key(who.guild_id), who.user_id, who.name, action, detail, outcome)

    async def audit_log(self, guild_id: int | None, limit: int = 20) -> list[AuditEntry]:
        return await self.records.audit_log(guild_key(guild_id), limit)


def _normal_word(word: str) -> str:
    word = " ".join(word.split()).lower()
    if not word or len(word) > MAX_WORD_CHARS or not _WORD.match(word):
        raise UserError(f"A banned word is 1-{MAX_WORD_CHARS} letters or digits (a short phrase may have spaces, "
                        "hyphens or apostrophes inside). Try again with just the word.")
    return word

