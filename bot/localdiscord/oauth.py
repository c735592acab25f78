"""Login with Discord, on the local Discord: OAuth2's authorization code grant as Discord runs it.

The bot's application is registered for it: ``d.oauth.client_id`` (the application id, as on Discord),
``d.oauth.client_secret``, and the redirect URIs the developer portal would list (``d.oauth.allow_redirect``).

    GET  /oauth2/authorize             the consent page: which local user logs in, Authorize or Cancel
    POST /oauth2/authorize             the page's form: 302 to redirect_uri?code=...&state=... (or ?error=...)
    POST /api/v10/oauth2/token         form-encoded code exchange (also /api/oauth2/token, as Discord serves it)
    GET  /api/v10/users/@me            with ``Authorization: Bearer``: the user (scope identify)
    GET  /api/v10/users/@me/guilds     with ``Authorization: Bearer``: their servers (scope guilds)

The last two are the spec's own operations (rest.py): a Bearer token is accepted where the spec's
``security`` lists OAuth2, and only with the scopes it names. Strict as Discord is: an unknown client or a
redirect_uri not registered is an error page (never a redirect); a code is single-use and lives
``code_ttl`` seconds (Discord: 10 minutes); the exchange must name the same redirect_uri; client auth by
form fields or HTTP Basic; errors are RFC 6749's JSON (``invalid_grant``, ``invalid_client``, ...).
"""

from __future__ import annotations

import base64
import html
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, unquote_plus, urlencode, urlsplit

from aiohttp import web

if TYPE_CHECKING:
    from .server import LocalDiscord

AUTHORIZE_PATH = "/oauth2/authorize"
TOKEN_PATHS = ("/api/v10/oauth2/token", "/api/oauth2/token")
SCOPES = frozenset({"identify", "email", "guilds", "guilds.members.read", "connections", "openid"})
CODE_TTL = 600.0  # Discord's: 10 minutes
TOKEN_TTL = 604800  # a week, as Discord's access tokens


@dataclass
class Grant:
    """What a user authorized one client to do: a code's, then its tokens'."""

    user_id: int
    client_id: str
    scopes: frozenset[str]
    redirect_uri: str
    expires_at: float  # time.monotonic()


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.description = status, error, description

    def response(self) -> web.Response:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return web.json_response(body, status=self.status, headers={"Cache-Control": "no-store"})


class OAuth:
    """The local Discord's OAuth2 provider for its one application."""

    def __init__(self, local: LocalDiscord, *, code_ttl: float = CODE_TTL) -> None:
        self.local = local
        self.client_id = str(local.application_id)
        self.client_secret = secrets.token_urlsafe(24)
        self.redirect_uris: set[str] = set()
        self.code_ttl = code_ttl
        self.codes: dict[str, Grant] = {}
        self.tokens: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.issued: list[str] = []  # every code and token handed out, for tests that check logs for them
        self.exchanges: list[tuple[str, int]] = []  # (grant_type, status) of every token request

    def allow_redirect(self, uri: str) -> None:
        """Register a redirect URI, as the developer portal's OAuth2 page does."""
        self.redirect_uris.add(uri)

    def bearer(self, token: str) -> Grant | None:
        grant = self.tokens.get(token)
        if grant is None or grant.expires_at < time.monotonic():
            return None
        return grant

    def authorize_url(self, redirect_uri: str, state: str, scope: str = "identify guilds") -> str:
        query = urlencode({"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
                           "scope": scope, "state": state}, quote_via=quote)
        return f"{self.local.base_url}{AUTHORIZE_PATH}?{query}"

    # -- authorize ----------------------------------------------------------------------------

    def _check(self, params) -> tuple[str, frozenset[str], str | None]:
        """(redirect_uri, scopes, error for the redirect) or an error page (web.HTTPException)."""
        if params.get("client_id") != self.client_id:
            raise _page(400, "Unknown Application", "This link names an application that does not exist.")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in self.redirect_uris:
            raise _page(400, "Invalid OAuth2 redirect_uri",
                        "The application did not register this redirect URI in its OAuth2 settings.")
        if params.get("response_type") != "code":
            return redirect_uri, frozenset(), "unsupported_response_type"
        scopes = frozenset(params.get("scope", "").split())
        if not scopes or not scopes <= SCOPES:
            return redirect_uri, scopes, "invalid_scope"
        return redirect_uri, scopes, None

    async def authorize_page(self, request: web.Request) -> web.Response:
        redirect_uri, scopes, error = self._check(request.query)
        if error:
            raise _redirect(redirect_uri, {"error": error, "state": request.query.get("state")})
        users = [u for u in self.local.users.values() if not u.bot]
        hidden = "".join(f'<input type="hidden" name="{name}" value="{html.escape(request.query.get(name, ""))}">'
                         for name in ("response_type", "client_id", "redirect_uri", "scope", "state"))
        choices = "".join(
            f'<label><input type="radio" name="user" value="{u.id}" id="user-{html.escape(u.username)}"'
            f'{" checked" if n == 0 else ""}> {html.escape(u.username)}</label>' for n, u in enumerate(users))
        wants = "".join(f"<li>{html.escape(_SCOPE_TEXT.get(s, s))}</li>" for s in sorted(scopes))
        name = html.escape(self.local.bot.username)
        body = (f"<h1>{name} wants to access your account</h1><form method=post action='{AUTHORIZE_PATH}'>"
                f"{hidden}<fieldset><legend>Log in as</legend>{choices}</fieldset><p>This will allow {name} to:</p>"
                f"<ul>{wants}</ul><button id=cancel name=decision value=deny>Cancel</button> "
                f"<button id=authorize name=decision value=authorize>Authorize</button></form>")
        return web.Response(text=_html("Authorize access", body), content_type="text/html")

    async def authorize(self, request: web.Request) -> web.Response:
        form = await request.post()
        redirect_uri, scopes, error = self._check(form)
        state = form.get("state") or None
        if error:
            raise _redirect(redirect_uri, {"error": error, "state": state})
        if form.get("decision") != "authorize":
            raise _redirect(redirect_uri, {"error": "access_denied", "state": state, "error_description":
                                           "The resource owner or authorization server denied the request"})
        try:
            user = self.local.users[int(str(form.get("user", "")))]
        except (KeyError, ValueError):
            raise _page(400, "Pick a user", "Choose who logs in.") from None
        code = secrets.token_urlsafe(22)
        self.codes[code] = Grant(user.id, self.client_id, scopes, redirect_uri, time.monotonic() + self.code_ttl)
        self.issued.append(code)
        raise _redirect(redirect_uri, {"code": code, "state": state})

    # -- token --------------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        self.local.requests.append((request.method, "/oauth2/token"))
        form: dict[str, str] = {}
        try:
            if request.content_type != "application/x-www-form-urlencoded":
                raise OAuthError(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
            form = dict(parse_qsl((await request.read()).decode("utf-8", "replace"), keep_blank_values=True))
            body = self._token(request, form)
        except OAuthError as error:
            self.exchanges.append((form.get("grant_type", ""), error.status))
            return error.response()
        self.exchanges.append((form["grant_type"], 200))
        return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _token(self, request: web.Request, form: dict[str, str]) -> dict:
        self._authenticate(request, form)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            code = form.get("code")
            if not code:
                raise OAuthError(400, "invalid_request", 'Missing "code" in request.')
            grant = self.codes.pop(code, None)  # single-use: gone after any exchange that names it
            if grant is None or grant.client_id != self.client_id or grant.expires_at < time.monotonic():
                raise OAuthError(400, "invalid_grant", 'Invalid "code" in request.')
            if form.get("redirect_uri") != grant.redirect_uri:
                raise OAuthError(400, "invalid_grant", 'Invalid "redirect_uri" in request.')
        elif grant_type == "refresh_token":
            grant = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if grant is None:
                raise OAuthError(400, "invalid_grant", 'Invalid "refresh_token" in request.')
        elif not grant_type:
            raise OAuthError(400, "invalid_request", 'Missing "grant_type" in request.')
        else:
            raise OAuthError(400, "unsupported_grant_type")
        access, refresh = secrets.token_urlsafe(22), secrets.token_urlsafe(22)
        issued = Grant(grant.user_id, grant.client_id, grant.scopes, grant.redirect_uri, time.monotonic() + TOKEN_TTL)
        self.tokens[access], self.refresh_tokens[refresh] = issued, issued
        self.issued += [access, refresh]
        return {"token_type": "Bearer", "access_token": access, "expires_in": TOKEN_TTL, "refresh_token": refresh,
                "scope": " ".join(sorted(grant.scopes))}

    def _authenticate(self, request: web.Request, form: dict[str, str]) -> None:
        given: tuple[str, str] | None = None
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                name, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise OAuthError(401, "invalid_client") from None
            given = (unquote_plus(name), unquote_plus(password))
            if "client_secret" in form:
                raise OAuthError(400, "invalid_request", "Use one way to authenticate the client, not two.")
        elif "client_id" in form or "client_secret" in form:
            given = (form.get("client_id", ""), form.get("client_secret", ""))
        if given is None or given[0] != self.client_id or not secrets.compare_digest(given[1], self.client_secret):
            raise OAuthError(401, "invalid_client")


_SCOPE_TEXT = {"identify": "Access your username, avatar, and banner", "guilds": "Know what servers you're in",
               "email": "Access your email address", "guilds.members.read": "Read your member info in servers",
               "connections": "Access your third-party connections", "openid": "Know who you are (OpenID)"}


def _redirect(uri: str, params: dict[str, str | None]) -> web.HTTPFound:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    joiner = "&" if urlsplit(uri).query else "?"
    return web.HTTPFound(f"{uri}{joiner}{query}")


def _html(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Discord · {html.escape(title)}</title>"
            "<meta name=viewport content='width=device-width, initial-scale=1'><style>body{font-family:sans-serif;"
            "background:#313338;color:#dbdee1;max-width:28rem;margin:3rem auto;padding:0 1rem}label{display:block;"
            "margin:.3rem 0}button{padding:.5rem 1rem}#authorize{background:#5865f2;color:#fff;border:0}</style>"
            f"</head><body>{body}</body></html>")


def _page(status: int, title: str, text: str) -> web.HTTPException:
    assert status == 400
    return web.HTTPBadRequest(text=_html(title, f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"),
                              content_type="text/html")


def add_routes(app: web.Application, local: LocalDiscord) -> None:
    """Before the API's catch-all route (rest.py): the token endpoint is not in Discord's OpenAPI spec."""
    oauth = local.oauth
    app.router.add_get(AUTHORIZE_PATH, oauth.authorize_page)
    app.router.add_post(AUTHORIZE_PATH, oauth.authorize)
    for path in TOKEN_PATHS:
        app.router.add_post(path, oauth.token)
