"""What admins run from Discord: models (list, use, load, unload, info), bans, banned words, statistics and
the audit log. Also the rules every new job passes through (`JobService.policy`): a banned user and a
prompt with a banned word are refused before anything is charged. Knows the store and the engine, never
Discord."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

from bot.engine import Catalog, CatalogError, EngineError, LoadedState, ModelSpec, WorkerPool
from bot.engine.tokens import prompt_tokens
from bot.service.jobs import JobService, Requester, UserError
from bot.store import Job, Store, utcnow
from bot.store.admin import AdminStore, AuditEntry

MAX_WORD_CHARS = 50
# A banned "word" may be a short phrase: letters and digits, with inner spaces, hyphens or apostrophes.
_WORD = re.compile(r"^[\w][\w '\-]*$")
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
NSFW_MODES = ("spoiler", "refuse")  # what happens to images the model's safety checker flags

BANNED = ("You are banned from using Dreamgrid on this server, so nothing was done. "
          "If you think this is a mistake, ask a server admin.")
BANNED_WORD = ("Your {what} contains a word this server does not allow, so nothing was queued or charged. "
               "Rephrase it and try again.")


class LoadFailed(UserError):
    """A model could not be loaded (missing files, bad weights, out of memory); nothing changed."""


@dataclass(frozen=True)
class FoundModel:
    """Something under models/ that looks like weights: a diffusers folder or a single-file checkpoint."""
    path: str  # relative to the models dir
    kind: str  # "diffusers folder" | "checkpoint"
    in_catalog: str | None  # the catalog entry that uses it, if any


@dataclass(frozen=True)
class ModelRow:
    spec: ModelSpec
    loaded: list[LoadedState]
    is_default: bool


@dataclass(frozen=True)
class ModelStats:
    model: str
    jobs: int
    images: int
    mean_seconds: float | None


@dataclass(frozen=True)
class Stats:
    queued: int
    running: int
    per_model: list[ModelStats]
    memory: dict[str, int]  # device -> bytes of loaded weights

    @property
    def jobs(self) -> int:
        return sum(m.jobs for m in self.per_model)

    @property
    def images(self) -> int:
        return sum(m.images for m in self.per_model)


def guild_key(guild_id: int | None) -> int:
    return guild_id or 0  # direct messages are "server 0"


class AdminService:
    def __init__(self, jobs: JobService, models_dir: Path) -> None:
        self.jobs = jobs
        self.store: Store = jobs.store
        self.pool: WorkerPool = jobs.pool
        self.catalog: Catalog = jobs.catalog
        self.records = AdminStore(self.store)
        self.models_dir = Path(models_dir)
        self._defaults: dict[int, str] = {}
        # Whether a channel is age-restricted: only the Discord layer knows; it sets this when it starts.
        self.age_restricted: Callable[[int], bool] = lambda channel_id: False
        self._word_patterns: dict[int, re.Pattern | None] = {}
        # Asked on every command and job: kept in memory per server, read once, changed with the table.
        self._banned: dict[int, set[int]] = {}

    # --- the rules every job passes (JobService.policy) -------------------------------------------

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

    async def server_model(self, guild_id: int | None) -> str | None:
        """The model chosen with /model use in this server, if any."""
        guild = guild_key(guild_id)
        if guild not in self._defaults:
            self._defaults[guild] = await self.records.guild_setting(guild, "default_model") or ""
        chosen = self._defaults[guild]
        # A model removed from the catalog since it was chosen: fall back rather than fail every job.
        return chosen if chosen in self.catalog.models else None

    async def default_model(self, guild_id: int | None) -> str:
        return await self.jobs.model_for(guild_id)

    async def is_banned(self, guild_id: int | None, user_id: int) -> bool:
        guild = guild_key(guild_id)
        if guild not in self._banned:
            self._banned[guild] = await self.records.banned_users(guild)
        return user_id in self._banned[guild]

    # --- models -----------------------------------------------------------------------------------

    def model(self, name: str) -> ModelSpec:
        """The catalog entry called `name`; anything else (a path, a typo) is refused with the names."""
        try:
            return self.catalog.get(name.strip())
        except CatalogError:
            known = ", ".join(f"`{n}`" for n in sorted(self.catalog.models))
            raise UserError(f"There is no model called `{_plain(name)}`. Models you can pick: {known} "
                            "(see /model list).") from None

    def model_names(self, typed: str = "") -> list[str]:
        typed = typed.strip().lower()
        return [name for name in sorted(self.catalog.models) if typed in name][:25]

    async def models(self, guild_id: int | None) -> list[ModelRow]:
        default = await self.default_model(guild_id)
        loaded = self.pool.loaded()
        return [ModelRow(spec, [s for s in loaded if s.name == spec.name], spec.name == default)
                for spec in self.catalog.models.values()]

    def found_models(self) -> list[FoundModel]:
        """Diffusers folders (one or two levels deep, for owner/name) and single-file checkpoints under models/."""
        by_source = {spec.source: spec.name for spec in self.catalog.models.values()}
        found: list[FoundModel] = []
        if not self.models_dir.is_dir():
            return found
        candidates = [p for p in self.models_dir.iterdir() if not p.name.startswith(".")]
        candidates += [q for p in candidates if p.is_dir() and not (p / "model_index.json").is_file()
                       for q in p.iterdir() if not q.name.startswith(".")]
        for path in sorted(candidates):
            relative = path.relative_to(self.models_dir).as_posix()
            if path.is_dir() and (path / "model_index.json").is_file():
                found.append(FoundModel(relative, "diffusers folder", by_source.get(relative)))
            elif path.is_file() and path.suffix in CHECKPOINT_SUFFIXES:
                found.append(FoundModel(relative, "checkpoint", by_source.get(relative)))
        return found

    async def use(self, who: Requester, name: str) -> tuple[str, list[LoadedState]]:
        """Make `name` the server's default. It is loaded first, so a model that cannot load never becomes
        the default: the previous one keeps serving. Returns the previous default and where it loaded."""
        spec = self.model(name)
        previous = await self.default_model(who.guild_id)
        states = await self._load(spec, previous)
        guild = guild_key(who.guild_id)
        await self.records.set_guild_setting(guild, "default_model", spec.name)
        self._defaults[guild] = spec.name
        return previous, states

    async def load(self, who: Requester, name: str) -> list[LoadedState]:
        spec = self.model(name)
        return await self._load(spec, await self.default_model(who.guild_id))

    async def unload(self, who: Requester, name: str) -> list[str]:
        spec = self.model(name)
        if spec.name == await self.default_model(who.guild_id):
            raise UserError(f"`{spec.name}` is this server's default model, so it stays loaded. "
                            "Pick another default with /model use first.")
        devices = await self.pool.unload(spec.name)
        if not devices:
            raise UserError(f"`{spec.name}` is not loaded, so there was nothing to free.")
        return devices

    async def _load(self, spec: ModelSpec, serving: str) -> list[LoadedState]:
        try:
            states = await self.pool.load(spec.name)
        except (EngineError, CatalogError) as error:
            raise LoadFailed(f"Model `{spec.name}` could not be loaded: {error}. Nothing changed: "
                            f"`{serving}` is still the default. Check the model's files and its catalog "
                            "entry, then try again.") from None
        # Its tokenizer too (~2 s once), so the first /imagine on it does not wait for it.
        await asyncio.to_thread(prompt_tokens, spec, self.models_dir, "")
        return states

    # --- bans and banned words --------------------------------------------------------------------

    async def ban(self, who: Requester, user_id: int, reason: str = "") -> None:
        if user_id == who.user_id:
            raise UserError("You cannot ban yourself.")
        guild = guild_key(who.guild_id)
        added = await self.records.ban(guild, user_id, who.user_id, reason.strip())
        self._banned.pop(guild, None)
        if not added:
            raise UserError("That member is banned already; /unban lifts it.")

    async def unban(self, who: Requester, user_id: int) -> None:
        guild = guild_key(who.guild_id)
        lifted = await self.records.unban(guild, user_id)
        self._banned.pop(guild, None)
        if not lifted:
            raise UserError("That member is not banned, so there was nothing to lift.")

    async def add_word(self, who: Requester, word: str) -> str:
        word = _normal_word(word)
        guild = guild_key(who.guild_id)
        if not await self.records.add_word(guild, word, who.user_id):
            raise UserError(f"`{word}` is on the list already.")
        self._word_patterns.pop(guild, None)
        return word

    async def remove_word(self, who: Requester, word: str) -> str:
        word = _normal_word(word)
        guild = guild_key(who.guild_id)
        if not await self.records.remove_word(guild, word):
            raise UserError(f"`{word}` is not on the list. /moderation words list shows it.")
        self._word_patterns.pop(guild, None)
        return word

    async def words(self, guild_id: int | None) -> list[str]:
        return await self.records.words(guild_key(guild_id))

    async def _banned_pattern(self, guild: int) -> re.Pattern | None:
        if guild not in self._word_patterns:
            words = await self.records.words(guild)
            # Word boundaries that also hold for phrases and words ending in punctuation: no letter or digit
            # right before or after. Inner spaces match any run of whitespace.
            alternatives = "|".join(r"\s+".join(map(re.escape, w.split())) for w in words)
            self._word_patterns[guild] = (re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
                                          if words else None)
        return self._word_patterns[guild]

    # --- NSFW -------------------------------------------------------------------------------------

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
        flagged = (job.parent_index in await self.records.flagged(job.parent_job_id) if job.kind == "upscale"
                   else bool(await self.records.flagged(job.id)))
        if not flagged:
            return False
        _, age_restricted_ok = await self.nsfw_settings(job.guild_id)
        return not (age_restricted_ok and self.age_restricted(job.channel_id))

    async def nsfw_settings(self, guild_id: int | None) -> tuple[str, bool]:
        guild = guild_key(guild_id)
        mode = await self.records.guild_setting(guild, "nsfw") or "spoiler"
        return mode, bool(await self.records.guild_setting(guild, "nsfw_age_restricted"))

    async def set_nsfw(self, who: Requester, mode: str, age_restricted: bool) -> None:
        if mode not in NSFW_MODES:
            raise UserError(f"The NSFW mode is one of {', '.join(NSFW_MODES)}.")
        guild = guild_key(who.guild_id)
        await self.records.set_guild_setting(guild, "nsfw", mode)
        await self.records.set_guild_setting(guild, "nsfw_age_restricted", int(age_restricted))

    # --- statistics and audit ---------------------------------------------------------------------

    async def stats(self, hours: int = 1) -> Stats:
        since = (utcnow() - timedelta(hours=hours)).isoformat()
        rows = await self.records.job_stats(since)
        active = await self.store.active_jobs()
        memory: dict[str, int] = {device: 0 for device in self.pool.devices}
        for state in self.pool.loaded():
            memory[state.device] += state.weight_bytes
        return Stats(
            queued=sum(job.status == "queued" for job in active),
            running=sum(job.status == "running" for job in active),
            per_model=[ModelStats(r["model"], r["jobs"], r["images"], r["mean_seconds"]) for r in rows],
            memory=memory,
        )

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


def _plain(text: str, limit: int = 60) -> str:
    """User text shown inside `code`: no backticks to break out of it, and short."""
    text = text.replace("`", "'").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
