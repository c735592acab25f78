"""Who is asking, and whether a state-changing request really comes from our own pages.

`viewer_of(request)` is the one answer to "who is this": a `Viewer` (a Requester, the bot's admin rule,
and the servers they share with the bot). On a loopback-only server with no login configured, whoever
opens the page is on the bot's own machine: the local admin. (Login with Discord plugs in here.)

Every request that changes something (any method but GET/HEAD/OPTIONS) must carry the session's CSRF token
in an `X-CSRF-Token` header; the pages read it from `GET /api/session` (static/session.js adds it)."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from bot.service import Requester

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_COOKIE = "dg_csrf"


@dataclass(frozen=True)
class Viewer:
    requester: Requester  # channel and guild are those of no job: actions take them from the job acted on
    is_admin: bool
    guild_ids: frozenset[int] = frozenset()  # servers the viewer shares with the bot

    @property
    def user_id(self) -> int:
        return self.requester.user_id


LOCAL = Viewer(Requester(user_id=0, name="local", guild_id=None, channel_id=0), is_admin=True)


def viewer_of(request: web.Request) -> Viewer:
    return LOCAL


def _csrf_token(request: web.Request) -> str | None:
    return request.cookies.get(CSRF_COOKIE)


@web.middleware
async def csrf_middleware(request: web.Request, handler):
    if request.method not in SAFE_METHODS:
        expected, given = _csrf_token(request), request.headers.get(CSRF_HEADER, "")
        if not expected or not hmac.compare_digest(expected, given):
            return web.json_response({"error": "This request did not come from Dreamgrid's own page (its CSRF "
                                               "token is missing or wrong). Reload the page and try again."},
                                     status=403)
    return await handler(request)


async def session(request: web.Request) -> web.Response:
    viewer = viewer_of(request)
    token = _csrf_token(request) or secrets.token_urlsafe(32)
    response = web.json_response({"user": {"id": str(viewer.user_id), "name": viewer.requester.name},
                                  "admin": viewer.is_admin, "csrf": token, "login": False},
                                 headers={"Cache-Control": "no-store"})
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="Strict", path="/")
    return response


AUTH_ROUTES = [web.get("/api/session", session)]
