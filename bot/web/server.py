"""The bot's web server: an aiohttp Application in the bot's own process and event loop, at
http://WEB_HOST:WEB_PORT (loopback only unless login with Discord is on: bot/settings.py refuses anything else;
bot/web/auth.py: who is asking, the login, CSRF). /metrics, /healthz and the pages' static files are open to
anyone who can reach the server; everything else needs a session when login is on.

    /metrics   Prometheus' text format, from the App's own registry (bot/web/metrics.py)
    /healthz   200 "ok" while the process serves
    /archive   every job, searched and filtered (bot/web/archive.py), with its JSON API under /api; its
               buttons (Rerun, U, V, Vary, Vary (Region) with a brush) under /api/jobs/<id>/… (bot/web/actions.py)
    /status    the operators' status page (bot/web/status.py): queue, devices, jobs per hour, failures
"""

from __future__ import annotations

import logging

from aiohttp import web

from bot.service import Accounts, Admin, Jobs
from bot.settings import SettingsError
from bot.web.actions import JobStarter, action_routes
from bot.web.archive import archive_routes
from bot.web.auth import AUTH_ROUTES, MIDDLEWARES, Login, auth_app
from bot.web.metrics import CONTENT_TYPE, Metrics
from bot.web.pages import STATIC_ROUTE
from bot.web.status import status_routes

log = logging.getLogger(__name__)

METRICS = web.AppKey("metrics", Metrics)
HOME = web.AppKey("home", str)  # where `/` leads: the archive, or the playground where one is mounted


def web_app(metrics: Metrics, jobs: Jobs, accounts: Accounts, admin: Admin | None = None,
            start: JobStarter | None = None, login: Login | None = None) -> web.Application:
    """`start`: how a job the page accepts is started (bot/web/actions.py; where a Discord bot runs, it is
    posted in the job's channel too). `login`: login with Discord (bot/web/auth.py); None: the local admin."""
    app = web.Application(middlewares=MIDDLEWARES)
    auth_app(app, login, accounts)
    app[METRICS] = metrics
    app[HOME] = "/archive"
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/", _to_home)
    app.add_routes([STATIC_ROUTE, *AUTH_ROUTES, *archive_routes(jobs, accounts),
                    *action_routes(jobs, accounts, admin, start or JobStarter(jobs))])
    if admin is not None:
        app.add_routes(status_routes(admin))
    return app


async def _to_home(request: web.Request) -> web.Response:
    raise web.HTTPFound(request.app[HOME])


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()  # microseconds of work: no thread needed
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


class WebServer:
    """`start()` binds host:port (raising SettingsError, one line, if it cannot), `close()` lets it go."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> str:
        runner = web.AppRunner(self.app, access_log=None)  # a scrape every 15 s is not worth a log line
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as error:
            await runner.cleanup()
            raise SettingsError(f"WEB_PORT={self.port}: the web server cannot listen on {self.host}:{self.port} "
                                f"({error.strerror or error}); choose another port, or 0 to turn it off") from None
        self._runner = runner
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
