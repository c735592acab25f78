"""Fault injection: make LocalDiscord misbehave the way Discord does.

``d.faults`` is consulted by the REST layer for every request that reached a handler: matched to
a spec operation, authorised and with a valid body (a malformed request is still refused with 400
and recorded in ``d.spec_errors``; faults never hide a bot bug). Each rule matches on the HTTP
method, a regex ``path`` (full match against the path after ``/api/v10``, e.g.
``r"/channels/\\d+/messages"``, or against the spec's template, e.g.
``"/channels/{channel_id}/messages"``) and optionally only requests that upload files. The first
rule that matches, in the order they were added, takes the request.

    d.faults.fail(2, status=503, method="POST", path=r"/channels/\\d+/messages")
    d.faults.fail(1, status=429, retry_after=0.2)          # discord.py sleeps 0.2 s and retries
    d.faults.reset(1, method="PATCH", uploads_only=True)   # the connection dies, nothing applied
    hold = d.faults.hold(method="PATCH", path=r"/webhooks/\\d+/[^/]+/messages/@original")
    await hold.arrived(timeout=3); hold.release()          # or hold.drop()
    d.faults.drop_gateway()                                # the websocket dies: discord.py resumes
    d.faults.fired                                         # [("fail", "POST", "/channels/1/messages"), ...]

The CDN (``/attachments/...`` and ``/ephemeral-attachments/...``, served by ``cdn.py``) has its
own rules: ``redirect``, ``chunked``, ``lying_length`` and ``slow`` act on CDN downloads only, and
``fail``/``reset``/``hold`` do with ``cdn=True``. Their ``path`` is matched against the whole
request path (no query), e.g. ``r"/ephemeral-attachments/.*"``, or a CDN template
(``cdn.EPHEMERAL_ROUTE``). API rules never match CDN requests, nor CDN rules API requests.

    d.faults.redirect("http://169.254.169.254/latest", path=r"/ephemeral-attachments/.*")
    d.faults.chunked()                                     # no Content-Length: the body is streamed
    d.faults.lying_length(100)                             # Content-Length: 100, then the whole body
    d.faults.slow(delay=0.5, chunk_size=1024)              # 1 KiB every 0.5 s
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import errors as E

if TYPE_CHECKING:
    from .server import LocalDiscord
    from .spec import Operation

RATE_LIMITED = "You are being rate limited."


CDN_KINDS = ("redirect", "chunked", "lying_length", "slow")
REDIRECTS = (301, 302, 303, 307, 308)


class Rule:
    """One switch: ``kind`` is "fail", "reset" or "hold" (REST, or the CDN with ``cdn``), or one of
    the CDN's "redirect", "chunked", "lying_length", "slow". ``remaining`` counts down as it fires
    (None: until removed); ``fired`` counts how often it did."""

    def __init__(
        self,
        kind: str,
        *,
        method: str | None,
        path: str | re.Pattern[str] | None,
        uploads_only: bool,
        remaining: int | None,
        cdn: bool = False,
    ) -> None:
        if remaining is not None and remaining < 1:
            raise ValueError(f"a fault must fire at least once, not {remaining} times")
        if cdn and uploads_only:
            raise ValueError("uploads_only is for REST requests; CDN downloads upload nothing")
        self.kind = kind
        self.cdn = cdn
        self.method = method.upper() if method else None
        self.pattern = re.compile(path) if isinstance(path, str) else path
        self.uploads_only = uploads_only
        self.remaining = remaining
        self.fired = 0
        # fail only
        self.status = 500
        self.code = 0
        self.message = ""
        self.retry_after = 0.1
        # CDN only
        self.location = ""  # redirect
        self.claimed = 0  # lying_length
        self.delay, self.chunk_size = 0.0, 1024  # slow
        self.body: bytes | None = None  # chunked, lying_length, slow: sent instead of the file

    def matches(self, method: str, path: str, template: str, has_files: bool, *, cdn: bool = False) -> bool:
        if self.cdn != cdn:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.uploads_only and not has_files:
            return False
        if self.pattern is not None and not (self.pattern.fullmatch(path) or self.pattern.fullmatch(template)):
            return False
        return True

    @property
    def active(self) -> bool:
        return self.remaining is None or self.remaining > 0

    def __repr__(self) -> str:
        where = self.pattern.pattern if self.pattern is not None else "*"
        scope = " cdn" if self.cdn and self.kind not in CDN_KINDS else ""
        return f"<Rule {self.kind}{scope} {self.method or '*'} {where} remaining={self.remaining} fired={self.fired}>"


class Hold:
    """Requests that matched ``faults.hold(...)`` wait here, not applied, until ``release()``
    (they then go on to their handler) or ``drop()`` (their connections are closed, nothing is
    applied). Either ends the hold: later requests pass."""

    def __init__(self, faults: Faults, rule: Rule) -> None:
        self._faults = faults
        self.rule = rule
        self._waiting: list[asyncio.Future[bool]] = []
        self._changed = asyncio.Event()
        self.total = 0  # how many requests were held, in all

    @property
    def count(self) -> int:
        """How many requests are waiting now."""
        return len(self._waiting)

    @property
    def active(self) -> bool:
        return self.rule in self._faults.rules

    async def arrived(self, timeout: float = 5.0, n: int = 1) -> int:
        """Wait until at least ``n`` requests are held; returns how many are. TimeoutError if not."""

        async def enough() -> None:
            while self.count < n:
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(enough(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"{self.count} of {n} requests held after {timeout}s ({self.rule!r})") from None
        return self.count

    def release(self) -> int:
        """Let the held requests through to their handlers; returns how many there were."""
        return self._end(apply=True)

    def drop(self) -> int:
        """Close the held requests' connections without applying them; returns how many."""
        return self._end(apply=False)

    def _end(self, *, apply: bool) -> int:
        self._faults._remove(self.rule)
        if self in self._faults.holds:
            self._faults.holds.remove(self)
        waiting, self._waiting = self._waiting, []
        for fut in waiting:
            if not fut.done():
                fut.set_result(apply)
        self._changed.set()
        return len(waiting)

    async def _wait(self) -> bool:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        self.total += 1
        self._changed.set()
        self._faults.local._changed()
        try:
            return await fut
        finally:
            if fut in self._waiting:  # cancelled while held (server shutdown)
                self._waiting.remove(fut)
                self._changed.set()

    def __repr__(self) -> str:
        return f"<Hold {self.rule!r} waiting={self.count}>"


class FaultReply:
    """An injected error answer, rendered by the REST layer."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        self.status, self.body, self.headers = status, body, headers


class Faults:
    """The switchboard (``LocalDiscord.faults``). See the module docstring."""

    def __init__(self, local: LocalDiscord) -> None:
        self.local = local
        self.rules: list[Rule] = []
        self.holds: list[Hold] = []
        self.fired: list[tuple[str, str, str]] = []  # (kind, method, path) of every fault that took effect
        self.closing = asyncio.Event()  # set by LocalDiscord.close(): slow CDN bodies stop

    # -- switches -----------------------------------------------------------------------------

    def fail(
        self,
        n: int | None = 1,
        status: int = 500,
        method: str | None = None,
        path: str | re.Pattern[str] | None = None,
        uploads_only: bool = False,
        *,
        retry_after: float = 0.1,
        message: str | None = None,
        code: int = 0,
        cdn: bool = False,
    ) -> Rule:
        """Answer the next ``n`` matching requests (None: all, until removed) with ``status`` and Discord's error body
        ``{"message", "code"}``, without applying them. A 429 carries ``retry_after`` (seconds)
        and ``global: false`` in its body and the ``Retry-After``/``X-RateLimit-*``/``Via`` headers
        discord.py needs to sleep and retry. With ``cdn``: a CDN download is answered ``status``
        with a text/plain ``message`` (default "404: Not Found"...)."""
        if not 400 <= status <= 599:
            raise ValueError(f"fail() injects error answers (4xx/5xx), not {status}")
        if retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        rule = self._add(Rule("fail", method=method, path=path, uploads_only=uploads_only, remaining=n, cdn=cdn))
        rule.status, rule.code, rule.retry_after = status, code, retry_after
        rule.message = message or (RATE_LIMITED if status == 429 else _phrase(status))
        return rule

    def reset(
        self,
        n: int | None = 1,
        method: str | None = None,
        path: str | re.Pattern[str] | None = None,
        uploads_only: bool = False,
        *,
        cdn: bool = False,
    ) -> Rule:
        """Close the connection of the next ``n`` matching requests (body read, no answer, not
        applied): the client sees ``aiohttp.ServerDisconnectedError``."""
        return self._add(Rule("reset", method=method, path=path, uploads_only=uploads_only, remaining=n, cdn=cdn))

    def hold(
        self,
        method: str | None = None,
        path: str | re.Pattern[str] | None = None,
        uploads_only: bool = False,
        *,
        cdn: bool = False,
    ) -> Hold:
        """Keep matching requests waiting (not applied) until ``release()`` or ``drop()``.
        A released CDN download is then served."""
        rule = self._add(Rule("hold", method=method, path=path, uploads_only=uploads_only, remaining=None, cdn=cdn))
        hold = Hold(self, rule)
        self.holds.append(hold)
        return hold

    # -- CDN switches (downloads of attachments) -------------------------------------------------

    def redirect(
        self,
        location: str,
        n: int | None = 1,
        status: int = 302,
        path: str | re.Pattern[str] | None = None,
        method: str | None = None,
    ) -> Rule:
        """Answer the next ``n`` matching CDN downloads (None: all, until removed) with ``status``
        (301, 302, 303, 307, 308), ``Location: location`` (any URL, absolute or relative) and an
        empty body."""
        if status not in REDIRECTS:
            raise ValueError(f"redirect() answers one of {REDIRECTS}, not {status}")
        rule = self._add(Rule("redirect", method=method, path=path, uploads_only=False, remaining=n, cdn=True))
        rule.status, rule.location = status, location
        return rule

    def chunked(
        self,
        n: int | None = 1,
        path: str | re.Pattern[str] | None = None,
        method: str | None = None,
        *,
        body: bytes | None = None,
    ) -> Rule:
        """Serve the next ``n`` matching CDN downloads without Content-Length
        (``Transfer-Encoding: chunked``): the file (or ``body``, e.g. far more bytes than any upload
        limit) streamed in 64 KiB chunks. A client learns the size only by counting."""
        rule = self._add(Rule("chunked", method=method, path=path, uploads_only=False, remaining=n, cdn=True))
        rule.body = body
        return rule

    def lying_length(
        self,
        claimed: int,
        n: int | None = 1,
        path: str | re.Pattern[str] | None = None,
        method: str | None = None,
        *,
        body: bytes | None = None,
    ) -> Rule:
        """Serve the next ``n`` matching CDN downloads with ``Content-Length: claimed`` but send the
        whole file (or ``body``), then close the connection. ``claimed`` below the real size: an
        HTTP client that honours the header (aiohttp) reads ``claimed`` bytes, a truncated file;
        above it: the client sees the body end early (``aiohttp.ClientPayloadError``)."""
        if claimed < 0:
            raise ValueError("claimed must be >= 0")
        rule = self._add(Rule("lying_length", method=method, path=path, uploads_only=False, remaining=n, cdn=True))
        rule.claimed, rule.body = claimed, body
        return rule

    def slow(
        self,
        n: int | None = 1,
        path: str | re.Pattern[str] | None = None,
        method: str | None = None,
        *,
        delay: float = 0.5,
        chunk_size: int = 1024,
        body: bytes | None = None,
    ) -> Rule:
        """Serve the next ``n`` matching CDN downloads (true Content-Length) ``chunk_size`` bytes at
        a time, ``delay`` seconds before each chunk: for a client's read timeouts. A client that
        gives up ends it; so does ``LocalDiscord.close()``."""
        if delay < 0 or chunk_size < 1:
            raise ValueError("slow() needs delay >= 0 and chunk_size >= 1")
        rule = self._add(Rule("slow", method=method, path=path, uploads_only=False, remaining=n, cdn=True))
        rule.delay, rule.chunk_size, rule.body = delay, chunk_size, body
        return rule

    def drop_gateway(self) -> int:
        """Cut every gateway websocket abruptly (TCP closed, no close frame: the client sees 1006)
        so discord.py reconnects and RESUMEs; returns how many were cut. The polite variant is
        ``LocalDiscord.request_reconnect()`` (op 7 RECONNECT)."""
        dropped = self.local.gateway.drop_connections()
        if dropped:
            self.fired.append(("drop_gateway", "WS", "/gateway"))
        return dropped

    def clear(self) -> None:
        """Remove every rule; held requests are released (applied). ``fired`` is kept."""
        for hold in list(self.holds):
            hold.release()
        self.rules.clear()
        self.holds.clear()

    def _shutdown(self) -> None:
        """LocalDiscord is closing: held requests are dropped, not applied; slow bodies end."""
        self.closing.set()
        for hold in list(self.holds):
            hold.drop()
        self.rules.clear()

    # -- the REST layer asks ------------------------------------------------------------------

    async def intercept(self, request: web.Request, op: Operation, path: str, has_files: bool) -> FaultReply | None:
        """None: go on to the handler. A FaultReply: answer it instead. Resets and drops raise
        (after cutting the connection) so nothing is answered or applied."""
        rule = await self._take(request, path, op.template, has_files, cdn=False)
        if rule is None:
            return None
        self.local.record_error(request.method, path, E.DiscordHTTPError(rule.status, rule.code, rule.message))
        return self._reply(rule, op.template)

    async def intercept_cdn(self, request: web.Request, template: str) -> Rule | None:
        """The CDN asks (``cdn.py``): None, serve the file; else the rule (fail, redirect, chunked,
        lying_length, slow) it renders. Resets and drops raise like REST ones."""
        return await self._take(request, request.path, template, False, cdn=True)

    async def _take(self, request: web.Request, path: str, template: str, has_files: bool, *, cdn: bool) -> Rule | None:
        """The first matching rule, used up by one; resets, holds and drops dealt with here."""
        method = request.method
        rule = next(
            (r for r in self.rules if r.active and r.matches(method, path, template, has_files, cdn=cdn)), None
        )
        if rule is None:
            return None
        rule.fired += 1
        if rule.remaining is not None:
            rule.remaining -= 1
            if rule.remaining == 0:
                self._remove(rule)
        self.fired.append((rule.kind, method, path))
        if rule.kind == "reset":
            raise _cut(request)
        if rule.kind == "hold":
            hold = next(h for h in self.holds if h.rule is rule)
            if await hold._wait():
                return None
            self.fired.append(("drop", method, path))
            raise _cut(request)
        return rule

    def _reply(self, rule: Rule, bucket: str) -> FaultReply:
        from .rest import ratelimit_headers  # rest imports server, which imports this module

        body: dict[str, Any] = {"message": rule.message, "code": rule.code}
        headers = ratelimit_headers(bucket)
        if rule.status == 429:
            body.update(retry_after=rule.retry_after, **{"global": False})
            headers.update(
                {
                    "Retry-After": str(max(1, math.ceil(rule.retry_after))),  # whole seconds, as Discord
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{time.time() + rule.retry_after:.3f}",
                    "X-RateLimit-Reset-After": f"{rule.retry_after:.3f}",
                    "X-RateLimit-Scope": "user",
                    "Via": "1.1 google",  # discord.py takes a 429 without Via for a Cloudflare ban
                }
            )
        return FaultReply(rule.status, body, headers)

    # -- bookkeeping --------------------------------------------------------------------------

    def _add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def _remove(self, rule: Rule) -> None:
        if rule in self.rules:
            self.rules.remove(rule)

    def __repr__(self) -> str:
        return f"<Faults rules={self.rules} fired={len(self.fired)}>"


def _phrase(status: int) -> str:
    try:
        return f"{status}: {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status}: Error"


def _cut(request: web.Request) -> web.HTTPException:
    """Close the request's TCP connection without an answer; the returned exception, raised by the
    caller, ends the handler (aiohttp has nowhere to write it)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.HTTPInternalServerError()
