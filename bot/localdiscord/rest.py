"""The REST API under /api/v10: every request is matched to an operation of Discord's OpenAPI
spec and its body validated before a handler sees it; handlers only deal with valid requests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web
from multidict import MultiDictProxy

from . import errors as E
from .cdn import add_routes as add_cdn_routes
from .models import Message
from .oauth import Grant
from .oauth import add_routes as add_oauth_routes
from .server import UploadedFile, short_path
from .spec import Operation

if TYPE_CHECKING:
    from .server import LocalDiscord

API_PREFIX = "/api/v10"


@dataclass
class ApiRequest:
    method: str
    path: str
    op: Operation
    query: MultiDictProxy[str]
    body: Any = None
    files: list[UploadedFile] = field(default_factory=list)
    bearer: Grant | None = None  # an OAuth2 user's token (``Authorization: Bearer``); None: the bot's

    def param(self, name: str) -> int:
        return int(self.op.params[name])

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("1", "true")


Reply = tuple[int, Any]
Handler = Callable[["LocalDiscord", ApiRequest], Awaitable[Reply]]
HANDLERS: dict[tuple[str, str], Handler] = {}


def route(method: str, template: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[(method, template)] = fn
        return fn

    return register


def build_app(local: LocalDiscord) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/gateway/", local.gateway.handle)
    app.router.add_get("/gateway", local.gateway.handle)
    add_cdn_routes(app, local)  # cdn.py: message attachments and uploaded option files
    add_oauth_routes(app, local)  # oauth.py: the consent page and the token endpoint (not in the spec)
    app.router.add_route("*", API_PREFIX + "/{tail:.*}", _api_handler(local))
    return app


def _api_handler(local: LocalDiscord) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        method, path = request.method, "/" + request.match_info["tail"]
        local.requests.append((method, path))
        op: Operation | None = None
        try:
            op, api_request = await _parse(local, request, method, path)
            handler = HANDLERS.get((method, op.template))
            if handler is None:
                local.spec_errors.append(f"{method} {short_path(path)}: LocalDiscord does not implement {op.template} yet")
                body = {"message": f"LocalDiscord does not implement {method} {op.template}", "code": 0}
                return _json(501, body, op.template)
            # Injected faults (faults.py) come after validation: a malformed request is still a spec error.
            fault = await local.faults.intercept(request, op, path, bool(api_request.files))
            if fault is not None:
                _check_response(local, op, fault.status, fault.body)
                return _json(fault.status, fault.body, op.template, fault.headers)
            status, body = await handler(local, api_request)
        except E.DiscordHTTPError as err:
            local.record_error(method, path, err)
            return _json(err.status, err.body(), op.template if op else path)
        _check_response(local, op, status, body)
        if status == 204:
            return web.Response(status=204, headers=ratelimit_headers(op.template))
        return _json(status, body, op.template)

    return handle


async def _parse(local: LocalDiscord, request: web.Request, method: str, path: str) -> tuple[Operation, ApiRequest]:
    found = local.spec.match(method, path)
    if found is None:
        raise E.not_found_route()
    if isinstance(found, str):
        raise E.DiscordHTTPError(405, 0, "405: Method Not Allowed", spec_error=True)
    op = found
    problems = local.spec.validate_params(op)
    if problems:
        raise E.invalid_form_body(problems)
    authorization = request.headers.get("Authorization", "")
    bearer = None
    if authorization.startswith("Bearer "):
        # A user's OAuth2 token: only where the spec lists OAuth2, and with every scope it names there.
        bearer = local.oauth.bearer(authorization[len("Bearer "):])
        needed = op.oauth_scopes
        if bearer is None or needed is None or not needed <= bearer.scopes:
            raise E.unauthorized()
    elif op.needs_bot_token and authorization != f"Bot {local.bot_token}":
        raise E.unauthorized()
    api_request = ApiRequest(method, path, op, request.query, bearer=bearer)
    if local.spec.has_body(op):
        api_request.body, api_request.files, multipart = await _read_body(request)
        problems = local.spec.validate_body(op, api_request.body, multipart=multipart)
        if problems:
            raise E.invalid_form_body(problems)
    return op, api_request


async def _read_body(request: web.Request) -> tuple[Any, list[UploadedFile], bool]:
    """JSON (Content-Type exactly application/json) or multipart with payload_json + files[n]."""
    mime = request.content_type
    if mime == "multipart/form-data":
        payload: Any = {}
        files: list[UploadedFile] = []
        indexed: dict[int, UploadedFile] = {}
        reader = await request.multipart()
        async for part in reader:
            name = part.name or ""
            data = await part.read(decode=False)  # type: ignore[union-attr]
            if name == "payload_json":
                payload = _json_body(bytes(data))
            elif name.startswith("files[") and name.endswith("]") and name[6:-1].isdigit():
                indexed[int(name[6:-1])] = UploadedFile(part.filename or "unknown", bytes(data))  # type: ignore[union-attr]
            else:
                message = "LocalDiscord reads only payload_json and files[n] form fields"
                raise E.invalid_field((name,), message, "FORM_FIELD_UNSUPPORTED")
        # files[n] are referenced by n from the attachments list; keep the numbering.
        if indexed:
            files = [indexed.get(i, UploadedFile("missing", b"")) for i in range(max(indexed) + 1)]
        return payload, files, True
    if mime != "application/json":
        message = f"Content-Type must be application/json or multipart/form-data, not {mime!r}"
        raise E.invalid_field((), message, "CONTENT_TYPE_INVALID")
    return _json_body(await request.read()), [], False


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise E.bad_request(50109, "The request body contains invalid JSON.") from None


def _check_response(local: LocalDiscord, op: Operation, status: int, body: Any) -> None:
    if local.check_responses:
        for problem in local.spec.validate_response(op, status, body):
            local.response_errors.append(f"{op.method} {op.template} -> {status}: {problem.describe()}")


def _json(status: int, body: Any, bucket: str, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json", no charset: discord.py parses nothing else as JSON.
    headers = {**(headers or ratelimit_headers(bucket)), "Content-Type": "application/json"}
    return web.Response(status=status, body=json.dumps(body, separators=(",", ":")).encode(), headers=headers)


def ratelimit_headers(bucket: str) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "50",
        "X-RateLimit-Remaining": "49",
        "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
        "X-RateLimit-Reset-After": "1.000",
        "X-RateLimit-Bucket": format(abs(hash(bucket)), "x"),
    }


# -- identity -------------------------------------------------------------------------------------


@route("GET", "/users/@me")
async def get_me(local: LocalDiscord, req: ApiRequest) -> Reply:
    if req.bearer is not None:  # scope identify: no email, no verified (those come with the email scope)
        return 200, {**local.users[req.bearer.user_id].to_json(), "mfa_enabled": False, "locale": "en-US"}
    return 200, {**local.bot.to_json(), "verified": True, "mfa_enabled": False, "locale": "en-US", "email": None}


@route("GET", "/users/@me/guilds")
async def list_my_guilds(local: LocalDiscord, req: ApiRequest) -> Reply:
    """The user's servers (Bearer, scope guilds), or the bot's: partial guilds with the caller's permissions."""
    user_id = req.bearer.user_id if req.bearer is not None else local.bot.id
    guilds = local.guilds_of(user_id) if req.bearer is not None else sorted(local.guilds.values(), key=lambda g: g.id)
    if "before" in req.query:
        guilds = [g for g in guilds if g.id < int(req.query["before"])]
    if "after" in req.query:
        guilds = [g for g in guilds if g.id > int(req.query["after"])]
    limit = max(1, min(200, int(req.query.get("limit", "200"))))
    return 200, [{"id": str(g.id), "name": g.name, "icon": None, "banner": None, "owner": g.owner_id == user_id,
                  "permissions": str(g.permissions_of(user_id)), "features": []} for g in guilds[:limit]]


@route("GET", "/users/{user_id}")
async def get_user(local: LocalDiscord, req: ApiRequest) -> Reply:
    user = local.users.get(req.param("user_id"))
    if user is None:
        raise E.DiscordHTTPError(404, 10013, "Unknown User")
    return 200, user.to_json()


@route("GET", "/gateway")
async def get_gateway(local: LocalDiscord, req: ApiRequest) -> Reply:
    return 200, {"url": local.gateway_url.rstrip("/")}


@route("GET", "/gateway/bot")
async def get_gateway_bot(local: LocalDiscord, req: ApiRequest) -> Reply:
    limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
    return 200, {"url": local.gateway_url.rstrip("/"), "shards": 1, "session_start_limit": limit}


@route("GET", "/applications/@me")
@route("GET", "/oauth2/applications/@me")
async def get_application(local: LocalDiscord, req: ApiRequest) -> Reply:
    return 200, local.application_json()


# -- application commands -------------------------------------------------------------------------


def _command_scope(local: LocalDiscord, req: ApiRequest) -> int | None:
    if req.param("application_id") != local.application_id:
        raise E.missing_access()
    if "guild_id" not in req.op.params:
        return None
    guild_id = req.param("guild_id")
    if guild_id not in local.guilds:
        raise E.missing_access()
    return guild_id


def _scoped(local: LocalDiscord, guild_id: int | None) -> list[Any]:
    return [c for c in local.commands.values() if c.guild_id == guild_id]


def _validate_commands(commands: list[dict[str, Any]]) -> None:
    from .limits import check_commands

    problems = check_commands(commands)
    if problems:
        raise E.invalid_form_body(problems)


def _upsert(local: LocalDiscord, guild_id: int | None, payload: dict[str, Any]) -> Any:
    from .models import Command

    key = (payload["name"], payload.get("type") or 1)
    existing = next((c for c in _scoped(local, guild_id) if (c.name, c.type) == key), None)
    command_id = existing.id if existing is not None else local.ids.next()
    command = Command(command_id, local.application_id, guild_id, local.ids.next(), payload)
    local.commands[command_id] = command
    return command


@route("GET", "/applications/{application_id}/commands")
@route("GET", "/applications/{application_id}/guilds/{guild_id}/commands")
async def list_commands(local: LocalDiscord, req: ApiRequest) -> Reply:
    return 200, [c.to_json() for c in _scoped(local, _command_scope(local, req))]


@route("PUT", "/applications/{application_id}/commands")
@route("PUT", "/applications/{application_id}/guilds/{guild_id}/commands")
async def bulk_overwrite_commands(local: LocalDiscord, req: ApiRequest) -> Reply:
    guild_id = _command_scope(local, req)
    payloads = req.body or []
    _validate_commands(payloads)
    keep = [_upsert(local, guild_id, p) for p in payloads]
    kept_ids = {c.id for c in keep}
    for stale in [c for c in _scoped(local, guild_id) if c.id not in kept_ids]:
        del local.commands[stale.id]
    local._changed()
    return 200, [c.to_json() for c in keep]


@route("POST", "/applications/{application_id}/commands")
@route("POST", "/applications/{application_id}/guilds/{guild_id}/commands")
async def create_command(local: LocalDiscord, req: ApiRequest) -> Reply:
    guild_id = _command_scope(local, req)
    others = [c.payload for c in _scoped(local, guild_id) if c.name != req.body["name"]]
    _validate_commands(others + [req.body])
    command = _upsert(local, guild_id, req.body)
    local._changed()
    return 201, command.to_json()


def _command(local: LocalDiscord, req: ApiRequest) -> Any:
    guild_id = _command_scope(local, req)
    command = local.commands.get(req.param("command_id"))
    if command is None or command.guild_id != guild_id:
        raise E.unknown_command()
    return command


@route("GET", "/applications/{application_id}/commands/{command_id}")
@route("GET", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}")
async def get_command(local: LocalDiscord, req: ApiRequest) -> Reply:
    return 200, _command(local, req).to_json()


@route("PATCH", "/applications/{application_id}/commands/{command_id}")
@route("PATCH", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}")
async def edit_command(local: LocalDiscord, req: ApiRequest) -> Reply:
    command = _command(local, req)
    merged = {**command.payload, **req.body}
    _validate_commands([c.payload for c in _scoped(local, command.guild_id) if c.id != command.id] + [merged])
    command.payload, command.version = merged, local.ids.next()
    local._changed()
    return 200, command.to_json()


@route("DELETE", "/applications/{application_id}/commands/{command_id}")
@route("DELETE", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}")
async def delete_command(local: LocalDiscord, req: ApiRequest) -> Reply:
    del local.commands[_command(local, req).id]
    local._changed()
    return 204, None


# -- interactions ---------------------------------------------------------------------------------


@route("POST", "/interactions/{interaction_id}/{interaction_token}/callback")
async def interaction_callback(local: LocalDiscord, req: ApiRequest) -> Reply:
    response = await local.interaction_callback(
        req.param("interaction_id"), req.op.params["interaction_token"], req.body, req.files
    )
    return (200, response) if req.flag("with_response") else (204, None)


def _webhook_message(local: LocalDiscord, req: ApiRequest) -> tuple[Any, Message]:
    ix = local.interaction_by_token(req.param("webhook_id"), req.op.params["webhook_token"])
    if "message_id" in req.op.params:
        message_id = req.param("message_id")
        if message_id not in {ix.original_message_id, *ix.followup_ids}:
            raise E.unknown_message()
    else:
        if ix.original_message_id is None:
            raise E.unknown_message()
        message_id = ix.original_message_id
    message = local.messages.get(message_id)
    if message is None or message.deleted:
        raise E.unknown_message()
    return ix, message


@route("GET", "/webhooks/{webhook_id}/{webhook_token}/messages/@original")
@route("GET", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}")
async def get_webhook_message(local: LocalDiscord, req: ApiRequest) -> Reply:
    return 200, _webhook_message(local, req)[1].to_json()


@route("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/@original")
@route("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}")
async def edit_webhook_message(local: LocalDiscord, req: ApiRequest) -> Reply:
    _, message = _webhook_message(local, req)
    await local.edit_message(message, req.body, req.files)
    return 200, message.to_json()


@route("DELETE", "/webhooks/{webhook_id}/{webhook_token}/messages/@original")
@route("DELETE", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}")
async def delete_webhook_message(local: LocalDiscord, req: ApiRequest) -> Reply:
    await local.delete_message(_webhook_message(local, req)[1])
    return 204, None


@route("POST", "/webhooks/{webhook_id}/{webhook_token}")
async def execute_followup(local: LocalDiscord, req: ApiRequest) -> Reply:
    ix = local.interaction_by_token(req.param("webhook_id"), req.op.params["webhook_token"])
    message = await local.followup(ix, req.body, req.files)
    return (200, message.to_json()) if req.flag("wait") else (204, None)


# -- channels and messages ------------------------------------------------------------------------


def _channel(local: LocalDiscord, req: ApiRequest) -> Any:
    channel = local.channels.get(req.param("channel_id"))
    if channel is None:
        raise E.unknown_channel()
    return channel


@route("GET", "/channels/{channel_id}")
async def get_channel(local: LocalDiscord, req: ApiRequest) -> Reply:
    return 200, _channel(local, req).to_json()


@route("POST", "/channels/{channel_id}/typing")
async def trigger_typing(local: LocalDiscord, req: ApiRequest) -> Reply:
    _channel(local, req)
    return 204, None


@route("GET", "/channels/{channel_id}/messages")
async def list_messages(local: LocalDiscord, req: ApiRequest) -> Reply:
    channel = _channel(local, req)
    messages = [m for m in local.channel_messages(channel.id) if not m.ephemeral]
    if "before" in req.query:
        messages = [m for m in messages if m.id < int(req.query["before"])]
    if "after" in req.query:
        messages = [m for m in messages if m.id > int(req.query["after"])]
    limit = max(1, min(100, int(req.query.get("limit", "50"))))
    newest_first = sorted(messages, key=lambda m: m.id, reverse=True)
    if "after" in req.query:
        newest_first = newest_first[-limit:]
    return 200, [m.to_json() for m in newest_first[:limit]]


@route("POST", "/channels/{channel_id}/messages")
async def create_message(local: LocalDiscord, req: ApiRequest) -> Reply:
    message = await local.create_channel_message(_channel(local, req), req.body, req.files)
    body = message.to_json()
    if req.body.get("message_reference"):
        body["message_reference"] = {"type": 0, **req.body["message_reference"]}
    return 200, body


@route("GET", "/channels/{channel_id}/messages/{message_id}")
async def get_message(local: LocalDiscord, req: ApiRequest) -> Reply:
    channel = _channel(local, req)
    return 200, local.get_message(channel.id, req.param("message_id")).to_json()


@route("PATCH", "/channels/{channel_id}/messages/{message_id}")
async def edit_message(local: LocalDiscord, req: ApiRequest) -> Reply:
    channel = _channel(local, req)
    message = local.get_message(channel.id, req.param("message_id"))
    if message.author.id != local.bot.id:
        raise E.not_author()
    await local.edit_message(message, req.body, req.files)
    return 200, message.to_json()


@route("DELETE", "/channels/{channel_id}/messages/{message_id}")
async def delete_message(local: LocalDiscord, req: ApiRequest) -> Reply:
    channel = _channel(local, req)
    message = local.get_message(channel.id, req.param("message_id"))
    if message.author.id != local.bot.id and not local.can_manage_messages(channel):
        raise E.missing_permissions()
    await local.delete_message(message)
    return 204, None


@route("POST", "/users/@me/channels")
async def create_dm(local: LocalDiscord, req: ApiRequest) -> Reply:
    return 200, local.dm_channel(int(req.body["recipient_id"])).to_json()


@route("GET", "/guilds/{guild_id}/members/{user_id}")
async def get_member(local: LocalDiscord, req: ApiRequest) -> Reply:
    guild = local.guilds.get(req.param("guild_id"))
    if guild is None:
        raise E.missing_access()
    member = guild.members.get(req.param("user_id"))
    if member is None:
        raise E.DiscordHTTPError(404, 10007, "Unknown Member")
    return 200, member.to_json()
