"""Who is asking, and whether a state-changing request really comes from our own pages.

`viewer_of(request)` is the one answer to "who is this": a `Viewer` (a Requester, the bot's admin rule,
and the servers they share with the bot).

Without login (no DISCORD_CLIENT_ID/SECRET: settings then keep the server on a loopback address, and the
playground never has one), whoever opens the page is on the bot's own machine: the local admin, `LOCAL`.

With login with Discord (OAuth2 scopes `identify guilds`, the application's own client id and secret):

    GET  /sign-in?next=/archive  a small page: "Log in with Discord" (where pages send those not logged in)
    GET  /login?next=/archive    to Discord's consent page, with a random `state` bound to this browser (a
                                 signed cookie of 10 minutes)
    GET  /oauth/callback         checks the state, exchanges the code, reads /users/@me and /users/@me/guilds,
                                 keeps the servers the bot is in, sets the session cookie, back to `next`
    POST /logout                 (CSRF) ends the session: its id is refused until it would have expired,
                                 after a restart too (kept in SQLite by `Accounts.end_web_session`)

The session is a cookie signed with HMAC-SHA256 (`sign`/`unsign`; the key is WEB_SECRET, else one made once
and kept in DATA_DIR/web-secret, mode 0600): the user's id and name, the servers they share with the bot,
those where they have Manage Server or Administrator, and when it was issued and expires (12 hours); HttpOnly,
SameSite=Lax, Secure when WEB_PUBLIC_URL is https. A missing, forged, altered or expired cookie is "not
logged in": pages redirect to /sign-in, the JSON APIs (and /images) answer 401. Nothing from Discord is kept
but that: the access token is used for the two reads and dropped.

Admins are the bot's own rule: ADMIN_USER_IDS everywhere (`is_admin`); in a server (`admin_guild_ids`,
`is_admin_in`), Manage Server or Administrator (from `/users/@me/guilds`) or a role of ADMIN_ROLE_IDS. The
scopes do not tell roles, so the bot reads them itself (`Login.member_roles`: the Discord bot's own view of
the member, its token, no extra scope): at login for ADMIN_ROLE_IDS, and again when the member starts a job
from the page (`with_roles`), so their quota tier is their roles' there, as a Discord interaction's is.
The servers are read at login: a change (a new server, a new permission) counts from the next login.

Every request that changes something (any method but GET/HEAD/OPTIONS) must carry the session's CSRF token
in an `X-CSRF-Token` header; the pages read it from `GET /api/session` (static/session.js adds it). With
login it is derived from the session (an HMAC of its id), without it a random cookie's value."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web

from bot.service import Accounts, Job, Requester
from bot.settings import Settings

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_COOKIE = "dg_csrf"
SESSION_COOKIE = "dg_session"
STATE_COOKIE = "dg_login"
SESSION_SECONDS = 12 * 3600
STATE_SECONDS = 600
SCOPES = "identify guilds"
REAL_OAUTH = "https://discord.com"
REAL_API = "https://discord.com/api/v10"
KEY_FILE = "web-secret"
MANAGE_GUILD, ADMINISTRATOR = 1 << 5, 1 << 3
# Reachable without a session: the login itself, the pages' files, and what scrapers and probes read.
OPEN_PATHS = frozenset({"/sign-in", "/login", "/oauth/callback", "/logout", "/healthz", "/metrics"})
OPEN_PREFIXES = ("/static/",)
DISCORD_TIMEOUT = aiohttp.ClientTimeout(total=15)
# (server, user) -> the member's role ids there; () when they are not in it or it cannot be told now.
MemberRoles = Callable[[int, int], Awaitable[tuple[int, ...]]]


async def no_roles(guild_id: int, user_id: int) -> tuple[int, ...]:
    return ()  # no Discord bot in this process: nobody's roles are known


@dataclass(frozen=True)
class Viewer:
    requester: Requester  # channel and guild are those of no job: actions take them from the job acted on
    is_admin: bool  # everywhere: ADMIN_USER_IDS (or the local admin)
    guild_ids: frozenset[int] = frozenset()  # servers the viewer shares with the bot
    admin_guild_ids: frozenset[int] = frozenset()  # of those, where they are admins (see the module's doc)

    @property
    def user_id(self) -> int:
        return self.requester.user_id

    def is_admin_in(self, guild_id: int | None) -> bool:
        """The bot's admin rule for a job of that server (None: a DM, only admins everywhere)."""
        return self.is_admin or (guild_id is not None and guild_id in self.admin_guild_ids)


LOCAL = Viewer(Requester(user_id=0, name="local", guild_id=None, channel_id=0), is_admin=True)


@dataclass(frozen=True)
class Login:
    """Login with Discord, as settings configure it (`from_settings`)."""

    client_id: str
    client_secret: str = field(repr=False)
    key: bytes = field(repr=False)  # signs the cookies
    public_url: str  # what members open: the redirect URI is under it
    oauth_url: str = REAL_OAUTH  # /oauth2/authorize under it
    api_base: str = REAL_API  # /oauth2/token, /users/@me... under it
    admin_user_ids: frozenset[int] = frozenset()
    admin_role_ids: frozenset[int] = frozenset()
    bot_guild_ids: Callable[[], Collection[int]] = field(default=lambda: (), repr=False)
    member_roles: MemberRoles = field(default=no_roles, repr=False)
    session_seconds: int = SESSION_SECONDS
    revoked: set[str] = field(default_factory=set, repr=False)  # sessions logged out (kept in SQLite too)

    @property
    def redirect_uri(self) -> str:
        return self.public_url + "/oauth/callback"

    @property
    def secure(self) -> bool:
        return self.public_url.startswith("https://")

    @classmethod
    def from_settings(cls, settings: Settings, bot_guild_ids: Callable[[], Collection[int]],
                      member_roles: MemberRoles = no_roles) -> "Login | None":
        """None when login is off (no client id and secret). `bot_guild_ids` and `member_roles` ask the Discord
        bot (bot/app.py)."""
        if not settings.login:
            return None
        host = f"[{settings.web_host}]" if ":" in settings.web_host else settings.web_host
        public = settings.web_public_url or f"http://{host or '127.0.0.1'}:{settings.web_port}"
        return cls(client_id=settings.discord_client_id, client_secret=settings.discord_client_secret,
                   key=session_key(settings.web_secret, settings.data_dir), public_url=public,
                   oauth_url=settings.discord_oauth_url or REAL_OAUTH,
                   api_base=(settings.discord_api_base or REAL_API).rstrip("/"),
                   admin_user_ids=settings.admin_user_ids, admin_role_ids=settings.admin_role_ids,
                   bot_guild_ids=bot_guild_ids, member_roles=member_roles)


LOGIN = web.AppKey("login", Login)  # on the web app when login is on
_SESSION = web.RequestKey("session", object)  # the request's session (a dict, or None), once unsigned
_ACCOUNTS = web.AppKey("accounts", Accounts)  # where logouts are kept (with login on)


def session_key(configured: str, data_dir: Path) -> bytes:
    """WEB_SECRET, else the key in DATA_DIR/web-secret, made on first use (0600) so sessions survive restarts."""
    if configured:
        return configured.encode()
    path = Path(data_dir) / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return path.read_text().strip().encode()
    key = secrets.token_urlsafe(48)
    with os.fdopen(descriptor, "w") as file:
        file.write(key + "\n")
    log.info("web sessions: made a signing key in %s (WEB_SECRET is not set)", path)
    return key.encode()


# -- signed values ------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, body: str) -> str:
    return _b64(hmac.new(key, f"{purpose}.{body}".encode(), hashlib.sha256).digest())


def sign(key: bytes, purpose: str, payload: dict, seconds: int, now: float | None = None) -> str:
    """`payload` with `iat` and `exp` added, as base64url JSON and its HMAC-SHA256 (for this `purpose` only:
    a login state is never a session)."""
    now = time.time() if now is None else now
    body = _b64(json.dumps({**payload, "iat": int(now), "exp": int(now) + seconds}, separators=(",", ":")).encode())
    return f"{body}.{_mac(key, purpose, body)}"


def unsign(key: bytes, purpose: str, token: str | None, now: float | None = None) -> dict | None:
    """The payload if `token` is ours, for `purpose`, unaltered and not expired; else None."""
    if not token or token.count(".") != 1 or len(token) > 8192:
        return None
    body, mac = token.split(".")
    if not hmac.compare_digest(_mac(key, purpose, body), mac):
        return None
    try:
        payload = json.loads(_unb64(body))
    except ValueError:
        return None
    now = time.time() if now is None else now
    if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int) or payload["exp"] <= now:
        return None
    if not isinstance(payload.get("iat"), int) or payload["iat"] > now + 60:
        return None
    return payload


def local_path(text: str | None) -> str:
    """`text` if it is a path on this site ("/archive?text=fox"), else "/": never an open redirect."""
    if (not text or not text.startswith("/") or text.startswith("//") or "\\" in text
            or any(ord(c) < 32 or ord(c) == 127 for c in text) or len(text) > 2000):
        return "/"
    return text


# -- who is asking -----------------------------------------------------------------------------------------


def _session(request: web.Request, login: Login) -> dict | None:
    """The request's valid session, read once per request (the middlewares and the handler all ask)."""
    if _SESSION not in request:
        session = unsign(login.key, "session", request.cookies.get(SESSION_COOKIE))
        valid = session is not None and str(session.get("uid", "")).isdigit()
        request[_SESSION] = session if valid else None
    session = request[_SESSION]
    return None if session is None or session.get("sid") in login.revoked else session


def _viewer(session: dict, login: Login) -> Viewer:
    user_id = int(session["uid"])
    shared = frozenset(int(g) for g in session.get("g", ())) & frozenset(login.bot_guild_ids())
    return Viewer(Requester(user_id=user_id, name=str(session.get("name", "")), guild_id=None, channel_id=0),
                  is_admin=user_id in login.admin_user_ids, guild_ids=shared,
                  admin_guild_ids=frozenset(int(g) for g in session.get("a", ())) & shared)


def viewer_of(request: web.Request) -> Viewer:
    """Who is asking. With login on and no valid session: raises the 401 (JSON) or the redirect to /sign-in
    (pages) that says so; the middleware has done that already for every route but the open ones."""
    login = request.app.get(LOGIN)
    if login is None:
        return LOCAL
    session = _session(request, login)
    if session is None:
        raise _not_logged_in(request)
    return _viewer(session, login)


def require_admin(request: web.Request) -> Viewer:
    """The viewer if they are an admin everywhere (ADMIN_USER_IDS, or the local admin); else a 403."""
    viewer = viewer_of(request)
    if not viewer.is_admin:
        text = "This page is for the bot's admins (ADMIN_USER_IDS)."
        if _wants_json(request):
            raise web.HTTPForbidden(text=json.dumps({"error": text}), content_type="application/json")
        raise _page_error(web.HTTPForbidden, "Admins only", text, ("Go to the archive", "/archive"))
    return viewer


async def with_roles(request: web.Request, viewer: Viewer, guild_id: int | None) -> Viewer:
    """The viewer acting on a job of that server, with their roles there read now: the quota tier of the jobs
    they start, and ADMIN_ROLE_IDS (as a Discord interaction carries the member's roles)."""
    login = request.app.get(LOGIN)
    if login is None or guild_id is None or guild_id not in viewer.guild_ids:
        return viewer
    roles = await login.member_roles(guild_id, viewer.user_id)
    admin_here = frozenset({guild_id}) if login.admin_role_ids & set(roles) else frozenset()
    return replace(viewer, requester=replace(viewer.requester, role_ids=tuple(roles)),
                   admin_guild_ids=viewer.admin_guild_ids | admin_here)


async def visible_job(request: web.Request, accounts: Accounts, job_id: int) -> Job | None:
    """The job if this viewer may see it (the archive's rule), else None: answer 404, as for a missing one."""
    viewer = viewer_of(request)
    return await accounts.visible_job(viewer.requester, viewer.is_admin, job_id, guild_ids=viewer.guild_ids,
                                      admin_guild_ids=viewer.admin_guild_ids)


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith(("/api/", "/images/"))


def _not_logged_in(request: web.Request) -> web.HTTPException:
    back = local_path(request.path_qs)
    if _wants_json(request):
        body = {"error": "You are not logged in, or your session has expired: log in with Discord, then try "
                         "again.", "login": f"/sign-in?{urlencode({'next': back})}"}
        return web.HTTPUnauthorized(text=json.dumps(body), content_type="application/json")
    return web.HTTPFound(f"/sign-in?{urlencode({'next': back})}")


@web.middleware
async def login_middleware(request: web.Request, handler):
    """With login on, every route but the open ones needs a session."""
    login = request.app.get(LOGIN)
    if login is not None and request.path not in OPEN_PATHS and not request.path.startswith(OPEN_PREFIXES):
        if _session(request, login) is None:
            raise _not_logged_in(request)
    return await handler(request)


# -- CSRF --------------------------------------------------------------------------------------------------


def _csrf_token(request: web.Request) -> str | None:
    login = request.app.get(LOGIN)
    if login is None:
        return request.cookies.get(CSRF_COOKIE)
    session = _session(request, login)
    if session is None:
        return None
    return _mac(login.key, "csrf", str(session.get("sid")))


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
    login = request.app.get(LOGIN)
    token = _csrf_token(request) or secrets.token_urlsafe(32)
    response = web.json_response({"user": {"id": str(viewer.user_id), "name": viewer.requester.name},
                                  "admin": viewer.is_admin, "csrf": token, "login": login is not None},
                                 headers={"Cache-Control": "no-store"})
    if login is None:
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="Strict", path="/")
    return response


# -- the login ---------------------------------------------------------------------------------------------


async def sign_in(request: web.Request) -> web.Response:
    back = local_path(request.query.get("next"))
    if request.app.get(LOGIN) is None:
        raise web.HTTPFound(back)
    link = f"/login?{urlencode({'next': back})}"
    return _page(200, "Log in", "Dreamgrid's pages show the images you made, and the public ones of the servers "
                 "you share with the bot. Discord tells the bot who you are and which servers you are in; "
                 "nothing else.", ("Log in with Discord", link), button_id="login")


async def login(request: web.Request) -> web.Response:
    config = request.app.get(LOGIN)
    back = local_path(request.query.get("next"))
    if config is None:
        raise web.HTTPFound(back)
    state = secrets.token_urlsafe(24)
    query = urlencode({"response_type": "code", "client_id": config.client_id, "redirect_uri": config.redirect_uri,
                       "scope": SCOPES, "state": state}, quote_via=quote)
    response = _redirect(f"{config.oauth_url}/oauth2/authorize?{query}")
    response.set_cookie(STATE_COOKIE, sign(config.key, "login", {"state": state, "next": back}, STATE_SECONDS),
                        max_age=STATE_SECONDS, httponly=True, samesite="Lax", secure=config.secure, path="/")
    return response


class DiscordTrouble(Exception):
    """Discord did not answer, or answered what it should not have: `why` is safe to show."""

    def __init__(self, why: str, status: int = 502) -> None:
        super().__init__(why)
        self.why, self.status = why, status


async def callback(request: web.Request) -> web.Response:
    config = request.app.get(LOGIN)
    if config is None:
        raise web.HTTPFound("/")
    started = unsign(config.key, "login", request.cookies.get(STATE_COOKIE))
    back = local_path(started.get("next") if started else None)
    again = ("Log in again", f"/login?{urlencode({'next': back})}")
    error = request.query.get("error")
    if started is None or not hmac.compare_digest(str(started.get("state")), request.query.get("state", "")):
        return _clear_state(_page(400, "That login link has expired", "This login was not started in this "
                                  "browser, or took more than 10 minutes. Start it again from here.", again))
    if error:
        if error == "access_denied":
            return _clear_state(_page(403, "Login cancelled", "You did not authorize the bot on Discord, so you "
                                      "are not logged in. Nothing was shared.", again))
        log.warning("web login: Discord refused the authorization (%s)", error[:40])
        return _clear_state(_page(400, "Discord refused the login", f"Discord said: {error[:40]}. Try again; if it "
                                  "keeps happening, tell the bot's operator (its OAuth2 settings: client id, "
                                  "redirect URI).", again))
    code = request.query.get("code", "")
    if not code:
        return _clear_state(_page(400, "No login code", "Discord sent no code back. Try again.", again))
    try:
        user, guilds = await _identify(config, code)
    except DiscordTrouble as trouble:
        return _clear_state(_page(trouble.status, "The login did not work", trouble.why, again))
    user_id = int(user["id"])
    ours = frozenset(config.bot_guild_ids())
    shared = [g for g in guilds if int(g["id"]) in ours]
    managed = [g["id"] for g in shared if g.get("owner") or int(g.get("permissions") or 0) & (MANAGE_GUILD | ADMINISTRATOR)]
    managed += await _role_admin_guilds(config, user_id, [int(g["id"]) for g in shared if g["id"] not in managed])
    cookie = sign(config.key, "session", {"uid": str(user_id), "name": user.get("global_name") or user["username"],
                                          "g": [str(g["id"]) for g in shared], "a": [str(g) for g in managed],
                                          "sid": secrets.token_urlsafe(16)}, config.session_seconds)
    log.info("web login: user %s, %d shared server(s)", user_id, len(shared))
    response = _redirect(back)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=config.session_seconds, httponly=True, samesite="Lax",
                        secure=config.secure, path="/")
    response.del_cookie(STATE_COOKIE, path="/")
    return response


async def _role_admin_guilds(config: Login, user_id: int, guild_ids: list[int]) -> list[int]:
    """The servers where the member holds one of ADMIN_ROLE_IDS (a few at a time: the bot's rate limits)."""
    if not config.admin_role_ids:
        return []
    asking = asyncio.Semaphore(4)

    async def holds_one(guild_id: int) -> bool:
        async with asking:
            return bool(config.admin_role_ids & set(await config.member_roles(guild_id, user_id)))

    held = await asyncio.gather(*(holds_one(guild_id) for guild_id in guild_ids))
    return [guild_id for guild_id, yes in zip(guild_ids, held) if yes]


async def _identify(config: Login, code: str) -> tuple[dict, list[dict]]:
    """The code exchanged for a token, and the user and their servers read with it (the token then dropped)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": config.redirect_uri,
            "client_id": config.client_id, "client_secret": config.client_secret}
    try:
        async with aiohttp.ClientSession(timeout=DISCORD_TIMEOUT) as http:
            async with http.post(f"{config.api_base}/oauth2/token", data=form) as answer:
                if answer.status in (400, 401):
                    error = await _json_error(answer)
                    log.warning("web login: Discord refused the code exchange (%s %s)", answer.status, error)
                    if error == "invalid_client":
                        raise DiscordTrouble("Discord does not accept this bot's login settings. Tell the bot's "
                                             "operator: DISCORD_CLIENT_ID and DISCORD_CLIENT_SECRET must be the "
                                             "application's own (developer portal, OAuth2).", 500)
                    raise DiscordTrouble("Discord did not accept the login (the code was used already, expired, "
                                         "or the redirect URI is not the registered one). Log in again; if it "
                                         f"keeps happening, the operator should check that {config.redirect_uri} "
                                         "is a redirect of the application (developer portal, OAuth2).", 400)
                token = (await _ok_json(answer, "the code exchange")).get("access_token")
            if not isinstance(token, str) or not token:
                raise DiscordTrouble("Discord's answer had no access token. Try again in a minute.")
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{config.api_base}/users/@me", headers=headers) as answer:
                user = await _ok_json(answer, "/users/@me")
            async with http.get(f"{config.api_base}/users/@me/guilds", headers=headers) as answer:
                guilds = await _ok_json(answer, "/users/@me/guilds")
    except (aiohttp.ClientError, TimeoutError) as error:
        log.warning("web login: Discord could not be reached (%s)", type(error).__name__)
        raise DiscordTrouble("Discord could not be reached. Try again in a minute.") from None
    if not isinstance(user, dict) or not str(user.get("id", "")).isdigit() or not isinstance(guilds, list):
        raise DiscordTrouble("Discord's answer was not what a login needs. Try again in a minute.")
    return user, [g for g in guilds if isinstance(g, dict) and str(g.get("id", "")).isdigit()]


async def _ok_json(answer: aiohttp.ClientResponse, what: str):
    if answer.status != 200:
        log.warning("web login: Discord answered %s to %s", answer.status, what)
        raise DiscordTrouble(f"Discord answered {answer.status} to {what}: it may be down. Try again in a minute.")
    try:
        return await answer.json(content_type=None)
    except ValueError:
        raise DiscordTrouble(f"Discord's answer to {what} was not JSON. Try again in a minute.") from None


async def _json_error(answer: aiohttp.ClientResponse) -> str:
    try:
        body = await answer.json(content_type=None)
    except ValueError:
        return "?"
    error = body.get("error") if isinstance(body, dict) else None
    return error[:40] if isinstance(error, str) and error.replace("_", "").isalpha() else "?"


async def logout(request: web.Request) -> web.Response:
    response = web.json_response({"logged_out": True, "next": "/sign-in"}, headers={"Cache-Control": "no-store"})
    login = request.app.get(LOGIN)
    if login is not None:
        ended = _session(request, login)
        if ended is not None:  # this cookie no longer works, even if a copy of it was kept, restarts included
            login.revoked.add(str(ended.get("sid")))
            expires = datetime.fromtimestamp(ended["exp"], timezone.utc)  # unsign checked it is an int
            await request.app[_ACCOUNTS].end_web_session(str(ended.get("sid")), expires)
    response.del_cookie(SESSION_COOKIE, path="/")
    if login is None:
        response.del_cookie(CSRF_COOKIE, path="/")
    return response


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})


def _clear_state(response: web.Response) -> web.Response:
    response.del_cookie(STATE_COOKIE, path="/")
    return response


# -- small pages -------------------------------------------------------------------------------------------

_STYLE = ("body{font-family:system-ui,sans-serif;background:#1e1f22;color:#dbdee1;max-width:30rem;margin:4rem auto;"
          "padding:0 1rem;line-height:1.5}h1{font-size:1.4rem}a.button{display:inline-block;background:#5865f2;"
          "color:#fff;padding:.6rem 1.2rem;border-radius:4px;text-decoration:none}a.button:focus{outline:3px solid "
          "#fff}")


def _html(title: str, text: str, link: tuple[str, str] | None, button_id: str = "again") -> str:
    action = (f'<p><a class="button" id="{button_id}" href="{html.escape(link[1])}">{html.escape(link[0])}</a></p>'
              if link else "")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>Dreamgrid · {html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><main><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
            f"{action}</main></body></html>")


def _page(status: int, title: str, text: str, link: tuple[str, str] | None = None,
          button_id: str = "again") -> web.Response:
    return web.Response(status=status, text=_html(title, text, link, button_id), content_type="text/html",
                        headers={"Cache-Control": "no-store"})


def _page_error(kind: type[web.HTTPException], title: str, text: str,
                link: tuple[str, str] | None = None) -> web.HTTPException:
    return kind(text=_html(title, text, link), content_type="text/html")


def auth_app(app: web.Application, login: Login | None, accounts: Accounts) -> None:
    """Login with Discord on `app` (nothing when `login` is None): the routes are in AUTH_ROUTES either way.
    The sessions ended by logout (kept by `accounts`) are refused from the start."""
    if login is None:
        return
    app[LOGIN] = login
    app[_ACCOUNTS] = accounts

    async def ended_sessions(_: web.Application) -> None:
        login.revoked.update(await accounts.ended_web_sessions())

    app.on_startup.append(ended_sessions)


AUTH_ROUTES = [web.get("/api/session", session), web.get("/sign-in", sign_in), web.get("/login", login),
               web.get("/oauth/callback", callback), web.post("/logout", logout)]
MIDDLEWARES = [login_middleware, csrf_middleware]
