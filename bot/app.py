"""Putting the rooms together: settings -> catalog, worker pool, store, job service, the web server (and the
Discord bot)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web as aiohttp_web

from bot.engine import Catalog, DeviceOptions, EnginePool, WorkerPool, load_catalog
from bot.engine.tokens import prompt_tokens
from bot.service import Accounts, Admin, ImageLimits, Jobs, open_services
from bot.service.quota import QuotaRules
from bot.settings import Settings
from bot.store import Store
from bot.web.actions import JobStarter
from bot.web.auth import Login, MemberRoles, no_roles
from bot.web.metrics import Metrics
from bot.web.server import WebServer, web_app

log = logging.getLogger(__name__)


def device_options(settings: Settings) -> DeviceOptions:
    return DeviceOptions(dtype=settings.torch_dtype, attention=settings.attention,
                         channels_last=settings.channels_last, compile_unet=settings.compile_unet,
                         vae_tiling=settings.vae_tiling, cpu_offload=settings.cpu_offload)


@dataclass
class App:
    settings: Settings
    catalog: Catalog
    pool: EnginePool
    store: Store
    jobs: Jobs
    accounts: Accounts
    admin: Admin
    metrics: Metrics = field(default_factory=Metrics)  # this App's own registry
    web: WebServer | None = None  # None: WEB_PORT=0
    starter: JobStarter | None = None  # starts the jobs the web page accepts (posted by the Discord bot, if any)
    # The servers the Discord bot is in (the web login keeps a member's shared ones); none until it exists.
    guild_ids: Callable[[], frozenset[int]] = field(default=lambda: frozenset(), repr=False)
    # A member's role ids in one of those servers (the web's quota tiers and ADMIN_ROLE_IDS); () until it exists.
    member_roles: MemberRoles = field(default=no_roles, repr=False)

    @classmethod
    async def open(cls, settings: Settings, add_pages: Callable[[aiohttp_web.Application], None] | None = None) -> "App":
        """`add_pages`: more pages on the web server (the playground's), added before it starts."""
        catalog = load_catalog(settings.catalog_path)
        default_model = settings.default_model or catalog.default
        catalog.get(default_model)  # an unknown DEFAULT_MODEL stops start-up with the catalog's names
        pool = engine_pool(settings, catalog)
        await pool.start(preload=[default_model])
        # Build the default model's tokenizer now (~2 s, once per process), not in a user's first /imagine.
        await asyncio.to_thread(prompt_tokens, catalog.get(default_model), settings.models_dir, "")
        store = await Store.open(settings.database_path)
        metrics = Metrics()
        services = open_services(store, pool, catalog, data_dir=settings.data_dir, models_dir=settings.models_dir,
                                 default_model=default_model, quota_rules=quota_rules(settings),
                                 max_prompt_chars=settings.max_prompt_chars,
                                 position_interval=settings.position_interval, job_timeout=settings.job_timeout,
                                 delivery_timeout=settings.delivery_timeout,
                                 image_limits=ImageLimits(settings.image_hosts, settings.max_image_mb,
                                                          settings.max_image_megapixels),
                                 metrics=metrics)
        metrics.watch_queue(services.jobs.waiting)
        app = cls(settings, catalog, pool, store, services.jobs, services.accounts, services.admin, metrics)
        app.starter = JobStarter(services.jobs)
        if settings.web_port:
            login = Login.from_settings(settings, lambda: app.guild_ids(),
                                        lambda guild_id, user_id: app.member_roles(guild_id, user_id))
            pages = web_app(metrics, services.jobs, services.accounts, services.admin, app.starter, login)
            if add_pages is not None:
                add_pages(pages)
            web = WebServer(pages, settings.web_host, settings.web_port)
            try:
                log.info("web server at %s (metrics at %s/metrics)", await web.start(), web.url)
                if login is not None:
                    log.info("web pages: login with Discord, redirect URI %s (list it in the developer portal)",
                             login.redirect_uri)
            except BaseException:
                await app.close()
                raise
            app.web = web
        return app

    async def close(self) -> None:
        if self.web is not None:
            await self.web.close()
        await self.jobs.close()
        await self.pool.close()
        await self.store.close()

    def discord_bot(self):
        from bot.discord_ui.client import DreamgridBot
        from bot.discord_ui.endpoints import use_discord_endpoints
        from bot.discord_ui.job_message import JobMessage

        use_discord_endpoints(self.settings.discord_api_base or None, self.settings.discord_gateway_url or None)
        bot = DreamgridBot(self.settings, self.jobs, self.accounts, self.admin, on_ack=self.metrics.acknowledged)
        # A job started in the web page is posted in its Discord channel too, as a job with no interaction.
        self.starter.listener_for = lambda job: JobMessage(bot, job)
        self.guild_ids = lambda: frozenset(guild.id for guild in bot.guilds)
        self.member_roles = bot.member_roles
        return bot


def engine_pool(settings: Settings, catalog: Catalog) -> EnginePool:
    """ENGINE=local: worker threads on DEVICES; ENGINE=ray: the same interface over HTTP to Ray Serve."""
    if settings.engine == "ray":
        from bot.engine.remote import RemotePool

        return RemotePool(catalog, settings.ray_serve_url, max_running_per_owner=settings.max_running_per_user,
                          max_batch_jobs=settings.max_batch_jobs, preview_interval=settings.preview_interval)
    return WorkerPool(catalog, settings.models_dir, devices=settings.devices, torch_threads=settings.torch_threads,
                      max_running_per_owner=settings.max_running_per_user, max_batch_jobs=settings.max_batch_jobs,
                      preview_interval=settings.preview_interval, device_options=device_options(settings))


def quota_rules(settings: Settings) -> QuotaRules:
    return QuotaRules(fast_images=settings.daily_images, period_days=settings.quota_period_days,
                      max_running=settings.max_running_per_user, max_waiting=settings.max_waiting_per_user,
                      queue_limit=settings.queue_limit, relax_allowed=settings.relax_allowed)
