"""The three doors the Discord layer (or any other front end) uses: `Jobs` (new jobs, running them, their
images), `Accounts` (a member's settings, allowance and history) and `Admin` (models, moderation, quotas,
the audit). Each is a narrow API over the rooms behind it; nothing outside the service reaches past them
into the store or the engine."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bot.engine import Catalog, EnginePool
from bot.recipe import JobStatus
from bot.service.admission import Admission
from bot.service.describing import Describing
from bot.service.fetch import ImageFetcher, Upload, parse_hosts
from bot.service.images import ImageFiles
from bot.service.models import ModelAdmin, OperatorsStatus
from bot.service.moderation import Moderation
from bot.service.policy import Policy
from bot.service.prompt import PromptError, check_option_name, normalise, parse_option_value, parse_prompt
from bot.service.quota import QuotaAdmin, QuotaError, QuotaRules, QuotaService
from bot.service.retention import prune_forever
from bot.service.running import JobListener, JobMetrics, Runner
from bot.service.sources import SourceImages
from bot.service.users import Requester, UserError
from bot.store import Job, Refused, Store, StoredImage
from bot.store.admin import AdminStore
from bot.store.archive import Archive, ArchivePage
from bot.store.logouts import WebLogouts
from bot.store.pictures import Description, Pictures
from bot.store.preferences import MAX_OPTIONS, Preferences, UserPreferences
from bot.store.quotas import Account

MAX_SUFFIX = 200


class Jobs:
    """New jobs (planned, checked, charged), running them, and what they made."""

    def __init__(self, store: Store, runner: Runner, admission: Admission, policy: Policy,
                 images: ImageFiles, describing: Describing, fetcher: ImageFetcher) -> None:
        self._store = store
        self._runner = runner
        self._admission = admission
        self.policy = policy
        self._images = images
        self._describing = describing
        self._fetcher = fetcher

    # Accepting: each returns the accepted job(s) or Refused (the allowance), or raises UserError.
    async def imagine(self, who: Requester, prompt: str, image: Upload | None = None) -> list[Job] | Refused:
        """`image`: an uploaded image prompt (Discord's CDN), besides any the prompt links to."""
        return await self._admission.imagine(who, prompt, image)

    async def blend(self, who: Requester, images: list[Upload], shape: str = "square") -> list[Job] | Refused:
        return await self._admission.blend(who, images, shape)

    async def describe(self, who: Requester, image: Upload | None = None, link: str | None = None) -> Description:
        """Four prompts for a picture (not a job: nothing is charged); raises UserError."""
        return await self._describing.describe(who, image, link)

    async def description(self, description_id: int) -> Description | None:
        return await self._describing.description(description_id)

    async def reroll(self, who: Requester, parent: Job, remix: str | None = None) -> Job | Refused:
        return await self._admission.reroll(who, parent, remix)

    async def vary(self, who: Requester, parent: Job, index: int, strength: str | None = None,
                   remix: str | None = None) -> Job | Refused:
        return await self._admission.vary(who, parent, index, strength, remix)

    async def upscale(self, who: Requester, parent: Job, index: int) -> Job | Refused:
        return await self._admission.upscale(who, parent, index)

    async def canvas(self, who: Requester, parent: Job, operation: str, remix: str | None = None) -> Job | Refused:
        """Zoom Out / Make Square / Pan / Vary (Region) on an upscaled image (bot/service/canvas.py)."""
        return await self._admission.canvas(who, parent, operation, remix)

    async def creative(self, who: Requester, parent: Job) -> Job | Refused:
        return await self._admission.creative(who, parent)

    async def paint_region(self, who: Requester, parent: Job, mask_png: bytes,
                           remix: str | None = None) -> Job | Refused:
        """Vary (Region) with a brush on an upscaled image: `mask_png` white where to repaint, black where to
        keep (kept by digest in the recipe); otherwise the Discord Vary (Region) job, Remix path and all."""
        return await self._admission.painted_region(who, parent, mask_png, remix)

    # Running.
    def start(self, job: Job, listener: JobListener) -> asyncio.Task:
        return self._runner.start(job, listener)

    async def stop(self, job_id: int) -> Job | None:
        return await self._runner.stop(job_id)

    def cancel(self, job_id: int) -> bool:
        return self._runner.cancel(job_id)

    def position(self, job_id: int) -> int | None:
        return self._runner.position(job_id)

    def progress(self, job_id: int) -> float | None:
        """A running job's fraction of steps done (0..1); None when it is not running."""
        return self._runner.progress(job_id)

    def waiting(self) -> dict[str, int]:
        """Jobs waiting for a worker in each lane, {"fast": n, "relax": m}: the operators' queue depth."""
        return self._runner.pool.queued_by_lane()

    async def unfinished(self) -> list[Job]:
        """Jobs accepted before a stop or crash that never ended, or whose result was never shown: they run
        (or are shown) again on start."""
        jobs = await self._store.active_jobs() + await self._store.undelivered_jobs()
        return sorted(jobs, key=lambda job: job.id)

    # Reading.
    async def get(self, job_id: int) -> Job | None:
        return await self._store.get_job(job_id)

    async def parent(self, job: Job) -> Job | None:
        return await self._store.get_job(job.parent_job_id) if job.parent_job_id else None

    async def active(self, owner_id: int) -> list[Job]:
        return await self._store.active_jobs(owner_id)

    async def images(self, job_id: int) -> list[StoredImage]:
        return await self._store.images(job_id)

    def result_file(self, job: Job) -> Path:
        return self._images.result_file(job)

    async def spoiler(self, job: Job) -> bool:
        """Whether the job's image is posted hidden: the model's safety checker flagged it."""
        return await self.policy.spoiler(job)

    async def remember_message(self, job_id: int, message_id: int) -> None:
        """The message that shows the job: edited by id once the interaction's token has expired."""
        await self._store.set_message(job_id, message_id)

    async def model_for(self, guild_id: int | None) -> str:
        return await self.policy.model_for(guild_id)

    async def prune_forever(self, days: int) -> None:
        """The retention task: image files older than `days` are deleted, once an hour."""
        await prune_forever(self._store, self._images.data_dir, days)

    async def close(self) -> None:
        await self._runner.close()
        await self._fetcher.close()


class Accounts:
    """A member's /settings and /prefer, their allowance and mode, and their history."""

    def __init__(self, store: Store, catalog: Catalog, preferences: Preferences, quota: QuotaService,
                 policy: Policy) -> None:
        self._store = store
        self._catalog = catalog
        self._preferences = preferences
        self._quota = quota
        self._policy = policy
        self._archive = Archive(store)
        self._logouts = WebLogouts(store)

    @property
    def relax_allowed(self) -> bool:
        return self._quota.rules.relax_allowed

    @property
    def model_names(self) -> list[str]:
        return self._catalog.names

    def offers(self, model: str) -> bool:
        return model in self._catalog.models

    async def model_for(self, guild_id: int | None) -> str:
        return await self._policy.model_for(guild_id)

    async def preferences(self, user_id: int) -> UserPreferences:
        return await self._preferences.get(user_id)

    async def update_preferences(self, user_id: int, **changes) -> UserPreferences:
        return await self._preferences.update(user_id, **changes)

    async def set_suffix(self, user_id: int, value: str) -> str:
        """Text and parameters added to every prompt; raises UserError (nothing changed) if unusable."""
        value = " ".join(normalise(value).split())
        if len(value) > MAX_SUFFIX:
            raise UserError(f"The suffix is {len(value)} characters; the limit is {MAX_SUFFIX}. "
                            "Shorten it and try again.")
        try:
            parse_prompt(value, (await self._preferences.get(user_id)).options)
        except PromptError as error:
            raise UserError(f"That suffix cannot be used: {error} Nothing was changed.") from None
        await self._preferences.update(user_id, suffix=value)
        return value

    async def set_option(self, user_id: int, name: str, value: str) -> tuple[str, str]:
        """`--name` stands for `value`; returns both as stored, or raises UserError (nothing changed)."""
        name, value = normalise(name), normalise(value)
        try:
            name = check_option_name(name)
            parse_option_value(value)
        except PromptError as error:
            raise UserError(f"{error} Nothing was changed.") from None
        value = " ".join(value.split())
        if not await self._preferences.set_option(user_id, name, value):
            raise UserError(f"You have {MAX_OPTIONS} custom options already, the most allowed. "
                            "Delete one with /prefer option delete first.")
        return name, value

    async def delete_option(self, user_id: int, name: str) -> bool:
        return await self._preferences.delete_option(user_id, name)

    async def account(self, who: Requester) -> Account:
        return await self._quota.account(who.user_id, who.guild_id, who.role_ids)

    async def set_mode(self, who: Requester, mode: str) -> None:
        try:
            await self._quota.set_mode(who.user_id, who.name, mode)
        except QuotaError as error:
            raise UserError(str(error)) from None

    async def history(self, owner_id: int, page: int, size: int, text: str = "") -> tuple[list[Job], int]:
        return await self._quota.quotas.history(owner_id, page, size, text)

    async def archive(self, viewer: Requester, is_admin: bool, *, guild_ids: Collection[int] = (),
                      admin_guild_ids: Collection[int] = (), text: str = "", model: str | None = None,
                      kind: str | None = None, since: datetime | None = None, until: datetime | None = None,
                      aspect: str | None = None, before_id: int | None = None, limit: int = 50,
                      statuses: Collection[JobStatus] | None = (JobStatus.DONE,)) -> ArchivePage:
        """One page of the archive, newest first (bot/store/archive.py: the filters, the prompt search, the
        cursor: pass the page's `next_before_id` as `before_id` for the next one). Who sees what: a member
        their own jobs and the public ones (not private, not in a DM) of `guild_ids`, the servers they share
        with the bot; every job of `admin_guild_ids`, where they are an admin; an admin everywhere
        (`is_admin`, as the front end decides it) everyone's. Raises UserError for an unknown kind, aspect or
        status, or a limit below 1."""
        try:
            return await self._archive.page(
                viewer_ids=None if is_admin else frozenset({viewer.user_id}), public_guild_ids=guild_ids,
                every_guild_ids=admin_guild_ids, text=text, model=model, kind=kind, since=since, until=until,
                aspect=aspect, before_id=before_id, limit=limit, statuses=statuses)
        except ValueError as error:
            raise UserError(f"{error}. Nothing was searched.") from None

    async def visible_job(self, viewer: Requester, is_admin: bool, job_id: int, *, guild_ids: Collection[int] = (),
                          admin_guild_ids: Collection[int] = ()) -> Job | None:
        """The job, if the archive's rule (`archive`) lets this viewer see it, in any status; else None, the
        same as a job that does not exist."""
        found = await self._archive.page(
            viewer_ids=None if is_admin else frozenset({viewer.user_id}), public_guild_ids=guild_ids,
            every_guild_ids=admin_guild_ids, job_id=job_id, limit=1, statuses=None)
        return found.jobs[0] if found.jobs else None

    # The web pages' logouts: an ended session stays refused until it would have expired, restarts included.
    async def end_web_session(self, session_id: str, expires_at: datetime) -> None:
        await self._logouts.add(session_id, expires_at)

    async def ended_web_sessions(self) -> set[str]:
        return await self._logouts.current()


@dataclass(frozen=True)
class Admin:
    """What admins run: models, moderation, quotas; and the audit every admin command writes."""

    models: ModelAdmin
    moderation: Moderation
    quota: QuotaAdmin
    policy: Policy

    async def is_banned(self, guild_id: int | None, user_id: int) -> bool:
        return await self.policy.is_banned(guild_id, user_id)

    def watch_age_restriction(self, age_restricted) -> None:
        """Only the Discord layer knows whether a channel is age-restricted: it answers for the NSFW rules."""
        self.policy.age_restricted = age_restricted

    async def audit(self, who: Requester, action: str, detail: str, outcome: str) -> None:
        await self.moderation.audit(who, action, detail, outcome)

    async def status(self) -> OperatorsStatus:
        """Read only, for the operators' status page: queue by lane and member, devices and their models,
        the last 24 hours' jobs, the last failures."""
        return await self.models.status()


@dataclass(frozen=True)
class Services:
    jobs: Jobs
    accounts: Accounts
    admin: Admin


@dataclass(frozen=True)
class ImageLimits:
    """Where members' pictures may come from and how big they may be (IMAGE_HOSTS, MAX_IMAGE_*)."""
    hosts: str = "cdn.discordapp.com,media.discordapp.net"
    max_mb: float = 25.0
    max_megapixels: float = 40.0


def open_services(store: Store, pool: EnginePool, catalog: Catalog, *, data_dir: Path, models_dir: Path,
                  default_model: str, quota_rules: QuotaRules, max_prompt_chars: int,
                  position_interval: float = 0.0, job_timeout: float = 0.0,
                  delivery_timeout: float = 600.0, image_limits: ImageLimits = ImageLimits(),
                  metrics: JobMetrics | None = None) -> Services:
    """Every room of the service, built once, each given what it needs at construction. `metrics`: what the
    Runner reports for the operators (bot/web/metrics.py); none by default."""
    images, sources = ImageFiles(data_dir), SourceImages(data_dir)
    fetcher = ImageFetcher(parse_hosts(image_limits.hosts), max_bytes=round(image_limits.max_mb * 2**20),
                           max_pixels=int(image_limits.max_megapixels * 1e6))
    policy = Policy(AdminStore(store), catalog, default_model)
    preferences = Preferences(store)
    quota = QuotaService(store, quota_rules)
    admission = Admission(store, catalog, Path(models_dir), images, policy, preferences, quota, fetcher, sources,
                          max_prompt_chars=max_prompt_chars)
    runner = Runner(store, pool, catalog, images, policy, sources, position_interval=position_interval,
                    job_timeout=job_timeout, delivery_timeout=delivery_timeout, metrics=metrics)
    describing = Describing(catalog, pool, fetcher, sources, Pictures(store), policy, preferences)
    return Services(
        jobs=Jobs(store, runner, admission, policy, images, describing, fetcher),
        accounts=Accounts(store, catalog, preferences, quota, policy),
        admin=Admin(ModelAdmin(store, pool, catalog, models_dir, policy), Moderation(store, policy),
                    QuotaAdmin(store, quota_rules), policy),
    )
