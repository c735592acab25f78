"""The CDN: attachments served the way cdn.discordapp.com serves them, at ``LocalDiscord.cdn_origin``.

- a message's attachments at ``/attachments/{channel_id}/{attachment_id}/{filename}``;
- files users uploaded as slash command options (``LocalDiscord.upload``) at
  ``/ephemeral-attachments/{application_id}/{attachment_id}/{filename}?ex=...&is=...&hm=...&``,
  once an interaction carried them. As on Discord the link is signed: ``ex`` (expiry, hex unix
  seconds, 24 h after ``is``), ``is`` (issued) and ``hm`` (an HMAC over the path and both). A link
  without them, altered or expired is answered 404 "This content is no longer available.".

Answers carry the file's Content-Type and Content-Length; unknown files are 404 "404: Not Found"
(text/plain). Downloads are recorded in ``LocalDiscord.cdn_requests`` as ``(method, path)``, not in
``requests``/``http_errors``. CDN fault rules (``faults.py``: ``redirect``, ``chunked``,
``lying_length``, ``slow``, and ``fail``/``reset``/``hold`` with ``cdn=True``) are consulted after
the file was found and the link checked, and are rendered here.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from .models import Attachment

if TYPE_CHECKING:
    from .faults import Rule
    from .server import LocalDiscord

MESSAGE_ROUTE = "/attachments/{channel_id}/{attachment_id}/{filename}"
EPHEMERAL_ROUTE = "/ephemeral-attachments/{application_id}/{attachment_id}/{filename}"
LINK_TTL = 24 * 60 * 60  # Discord's signed attachment links last a day
GONE = "This content is no longer available."
NOT_FOUND = "404: Not Found"
STREAM_CHUNK = 64 * 1024

Lookup = Callable[["LocalDiscord", web.Request], "tuple[Attachment | None, str]"]


def message_attachment_path(channel_id: int, attachment_id: int, filename: str) -> str:
    return f"/attachments/{channel_id}/{attachment_id}/{quote(filename)}"


def ephemeral_attachment_url(local: LocalDiscord, attachment_id: int, filename: str) -> str:
    """The signed link of an uploaded option file, as Discord gives it (trailing ``&`` included)."""
    path = f"/ephemeral-attachments/{local.application_id}/{attachment_id}/{filename}"
    issued = int(time.time())
    expires = issued + LINK_TTL
    quoted = f"/ephemeral-attachments/{local.application_id}/{attachment_id}/{quote(filename)}"
    return f"{local.cdn_origin}{quoted}?ex={expires:08x}&is={issued:08x}&hm={_hm(local, path, expires, issued)}&"


def _hm(local: LocalDiscord, path: str, expires: int, issued: int) -> str:
    return hmac.new(local.cdn_secret, f"{path}\n{expires}\n{issued}".encode(), hashlib.sha256).hexdigest()


def _signed(local: LocalDiscord, request: web.Request) -> bool:
    query = request.query
    try:
        expires, issued = int(query["ex"], 16), int(query["is"], 16)
    except (KeyError, ValueError):
        return False
    if expires < time.time():
        return False
    return hmac.compare_digest(query.get("hm", ""), _hm(local, request.path, expires, issued))


def add_routes(app: web.Application, local: LocalDiscord) -> None:
    app.router.add_get(MESSAGE_ROUTE, _handler(local, MESSAGE_ROUTE, _message_file))
    app.router.add_get(EPHEMERAL_ROUTE, _handler(local, EPHEMERAL_ROUTE, _ephemeral_file))


def _message_file(local: LocalDiscord, request: web.Request) -> tuple[Attachment | None, str]:
    try:
        key = (int(request.match_info["channel_id"]), int(request.match_info["attachment_id"]))
    except ValueError:
        return None, NOT_FOUND
    attachment = local.attachment_files.get(key)
    if attachment is None or attachment.filename != request.match_info["filename"]:
        return None, NOT_FOUND
    return attachment, ""


def _ephemeral_file(local: LocalDiscord, request: web.Request) -> tuple[Attachment | None, str]:
    try:
        app_id, att_id = int(request.match_info["application_id"]), int(request.match_info["attachment_id"])
    except ValueError:
        return None, NOT_FOUND
    attachment = local.ephemeral_files.get(att_id)
    if app_id != local.application_id or attachment is None or attachment.filename != request.match_info["filename"]:
        return None, NOT_FOUND
    if not _signed(local, request):
        return None, GONE
    return attachment, ""


def _handler(local: LocalDiscord, template: str, lookup: Lookup) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def serve(request: web.Request) -> web.StreamResponse:
        local.cdn_requests.append((request.method, request.path))
        attachment, problem = lookup(local, request)
        if attachment is None:
            return web.Response(status=404, text=problem)
        rule = await local.faults.intercept_cdn(request, template)
        if rule is None:
            return web.Response(body=attachment.data, headers={"Content-Type": attachment.content_type})
        return await _render(local, request, rule, attachment)

    return serve


async def _render(local: LocalDiscord, request: web.Request, rule: Rule, attachment: Attachment) -> web.StreamResponse:
    body = attachment.data if rule.body is None else rule.body
    content_type = attachment.content_type
    if rule.kind == "fail":
        return web.Response(status=rule.status, text=rule.message)
    if rule.kind == "redirect":
        return web.Response(status=rule.status, headers={"Location": rule.location})
    if rule.kind == "lying_length":
        # aiohttp's writer stops at the Content-Length it was given, so the answer is written raw.
        head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {rule.claimed}\r\nConnection: close\r\n\r\n"
        transport = request.transport
        if transport is not None:
            transport.write(head.encode("latin-1") + (b"" if request.method == "HEAD" else body))
            transport.close()  # after the buffer is flushed; aiohttp then has nothing to write to
        raise web.HTTPInternalServerError()
    response = web.StreamResponse(headers={"Content-Type": content_type})
    if rule.kind == "chunked":
        response.enable_chunked_encoding()
        step, delay = STREAM_CHUNK, 0.0
    else:  # slow
        response.content_length = len(body)
        step, delay = rule.chunk_size, rule.delay
    try:
        await response.prepare(request)
        if request.method != "HEAD":
            for start in range(0, len(body), step):
                if delay and await _closing(local, delay):
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                await response.write(body[start:start + step])
        await response.write_eof()
    except ConnectionError:  # the client gave up
        pass
    return response


async def _closing(local: LocalDiscord, delay: float) -> bool:
    """Sleep ``delay``; True at once if LocalDiscord is closing."""
    try:
        await asyncio.wait_for(local.faults.closing.wait(), delay)
    except asyncio.TimeoutError:
        return False
    return True
