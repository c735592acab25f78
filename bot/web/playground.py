"""The web playground: a page that looks like a Discord channel, over the local Discord the real bot is logged
in to. This module is the bridge and nothing else: what a Discord client would show a user (the channel's
messages as they change, ephemeral ones only to their user, the commands they may run, the modals they are
shown) goes to the page as JSON over server-sent events, and what the page's user does (a slash command,
a click, a choice in a select, a submitted form) comes back as the LocalDiscord's own user actions
(`slash`, `click`, `select`, `submit_modal`, `upload`), so the fake still refuses what a client would.

Served by the bot's own web server (bot/web/server.py) under /playground, beside the archive and the status
page, and like them behind its CSRF check (static/session.js):

    GET  /playground                   the page (static/playground.html, .css, .js: no build step); `/` opens it
    GET  …/api/state                   the players, the channel, the bot
    GET  …/api/commands?user=ID        the slash commands that user sees, subcommands flattened ("model use")
    GET  …/api/events?user=ID          text/event-stream: "reset" (every visible message), then each "message"
                                       version as it happens, "delete", and "modal" for a form shown to the user
    GET  …/files/CHANNEL/ID/NAME       an attachment's bytes (grids, previews, upscales)
    POST …/api/upload?filename=NAME    the body is a file for an attachment option -> {"id": ...}
    POST …/api/command                 {"user", "command", "options"} (an attachment option: {"upload": id})
    POST …/api/autocomplete            {"user", "command", "options", "focused"} -> {"choices": [...]}
    POST …/api/click                   {"user", "message", "custom_id"}
    POST …/api/select                  {"user", "message", "custom_id", "values"}
    POST …/api/modal                   {"user", "interaction", "values"}; …/api/dismiss {"user", "interaction"}
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from aiohttp import web

from bot.localdiscord import ClientRefused, Interaction, LocalDiscord, Message, User
from bot.localdiscord.models import ADMINISTRATOR, MANAGE_GUILD
from bot.web.pages import page
from bot.web.server import HOME

KEEPALIVE = 15.0  # seconds between SSE comments on a quiet channel
ACK_WAIT = 3.5  # Discord's 3 s, then "This interaction failed"
OPTION_TYPES = {3: "string", 4: "integer", 5: "boolean", 6: "user", 7: "channel", 8: "role", 9: "mentionable",
                10: "number", 11: "attachment"}
PREFIX = "/playground"
PLAYERS = (("alice", False), ("bob", False), ("admin", True))  # (name, Manage Server)


def add_players(discord: LocalDiscord) -> list[User]:
    """Two members and an admin (Manage Server), so ownership, quotas and fairness can be tried."""
    return [discord.add_user(name, manage_guild=admin) for name, admin in PLAYERS]


class Bridge:
    """What one LocalDiscord shows each player, and the players' actions on it."""

    def __init__(self, discord: LocalDiscord, players: list[User]) -> None:
        self.discord = discord
        self.players = {user.id: user for user in players}
        self.closed_modals: set[int] = set()  # submitted or dismissed

    def player(self, ident: Any) -> User:
        try:
            return self.players[int(ident)]
        except (KeyError, TypeError, ValueError):
            raise web.HTTPNotFound(text=json.dumps({"error": f"no player {ident!r}"}),
                                   content_type="application/json") from None

    def state(self) -> dict[str, Any]:
        d = self.discord
        return {
            "bot": d.bot.username,
            "guild": d.guild.name,
            "channel": d.channels[d.channel_id].name,
            "players": [{"id": str(u.id), "name": u.username, "admin": self._is_admin(u)}
                        for u in self.players.values()],
            "names": {str(u.id): u.username for u in d.users.values()},  # for <@id> mentions
            "channels": {str(c.id): c.name for c in d.guild.channels.values()},
        }

    def _is_admin(self, user: User) -> bool:
        return bool(self.discord.permissions_of(user) & (MANAGE_GUILD | ADMINISTRATOR))

    # -- what a client shows ----------------------------------------------------------------------------------

    def commands(self, user: User) -> list[dict[str, Any]]:
        """The slash commands `user` sees, as a client lists them: hidden when they lack the permissions."""
        d = self.discord
        perms = d.permissions_of(user)
        seen: dict[str, dict[str, Any]] = {}
        for command in sorted(d.registered_commands(), key=lambda c: c.guild_id is None):  # guild ones first
            payload = command.payload
            needed = payload.get("default_member_permissions")
            if command.type != 1 or command.name in seen:
                continue
            if needed is not None and command.name not in d.open_commands and int(needed) & perms != int(needed):
                continue
            seen[command.name] = payload
        found: list[dict[str, Any]] = []
        for name in sorted(seen):
            found += _flatten(seen[name], [])
        return found

    def visible(self, user: User, message: Message) -> bool:
        if message.channel_id != self.discord.channel_id:
            return False
        if not message.ephemeral:
            return True
        owner = self.discord.interactions.get(message.interaction_id or 0)
        return owner is not None and owner.user.id == user.id

    def message_json(self, message: Message, version: Message | None = None) -> dict[str, Any]:
        """One version of a message (`version`, from its history) as the page draws it."""
        m = version or message
        ix = self.discord.interactions.get(message.interaction_id or 0)
        via = None
        if ix is not None:
            via = {"user": ix.user.username, "command": _command_path(ix), "message":
                   str(ix.message_id) if ix.message_id else None}
        return {
            "id": str(message.id),
            "author": {"id": str(m.author.id), "name": m.author.username, "bot": m.author.bot},
            "content": m.content,
            "timestamp": m.timestamp,
            "edited": m.edited_timestamp is not None,
            "ephemeral": m.ephemeral,
            "loading": m.loading,
            "via": via,
            "attachments": [{"id": str(a.id), "filename": a.filename, "content_type": a.content_type,
                             "size": a.size, "url": f"{PREFIX}/files/{m.channel_id}/{a.id}/{a.filename}",
                             "width": (a.dimensions or (None, None))[0], "height": (a.dimensions or (None, None))[1]}
                            for a in m.attachments],
            "embeds": m.embeds,
            "components": m.components,
        }

    def _signature(self) -> int:
        d = self.discord
        return (sum(len(m.history) + m.deleted for m in d.messages.values())
                + sum(1 for ix in d.interactions.values() if ix.modal is not None) + len(self.closed_modals))

    async def events(self, user: User) -> AsyncIterator[dict[str, Any] | None]:
        """"reset", then every change `user` can see, version by version; None now and then on a quiet channel."""
        d = self.discord
        seen = {m.id: len(m.history) for m in d.messages.values()}
        gone = {m.id for m in d.messages.values() if m.deleted}
        modals = {ix.id for ix in d.interactions.values() if ix.modal is not None}  # only new ones open
        yield {"type": "reset", "messages": [self.message_json(m) for m in d.messages.values()
                                             if not m.deleted and self.visible(user, m)]}
        mark = self._signature()
        while True:
            try:
                await d.wait_until(lambda: self._signature() != mark, KEEPALIVE, "a change in the channel")
            except TimeoutError:
                yield None
                continue
            mark = self._signature()
            for message in list(d.messages.values()):
                if not self.visible(user, message):
                    continue
                versions = message.history[seen.get(message.id, 0):]
                seen[message.id] = len(message.history)
                for version in versions:
                    yield {"type": "message", "message": self.message_json(message, version)}
                if message.deleted and message.id not in gone:
                    gone.add(message.id)
                    yield {"type": "delete", "id": str(message.id)}
            for ix in list(d.interactions.values()):
                if ix.modal is not None and ix.id not in modals and ix.user.id == user.id:
                    modals.add(ix.id)
                    if ix.id not in self.closed_modals:
                        yield {"type": "modal", "interaction": str(ix.id), "modal": ix.modal}

    # -- what a user does -------------------------------------------------------------------------------------

    def options(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The page's option values; an attachment option names an upload ({"upload": id})."""
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if isinstance(value, dict) and "upload" in value:
                upload = self.discord.uploads.get(int(value["upload"]))
                if upload is None:
                    raise ClientRefused(f"option {name}: no such upload {value['upload']!r}")
                value = upload
            values[name] = value
        return values

    async def acked(self, ix: Interaction) -> dict[str, Any]:
        try:
            await ix.wait_acked(timeout=ACK_WAIT)
        except TimeoutError:
            return {"interaction": str(ix.id), "failed": "This interaction failed"}
        return {"interaction": str(ix.id)}

    def interaction(self, user: User, ident: Any) -> Interaction:
        ix = self.discord.interactions.get(int(ident))
        if ix is None or ix.user.id != user.id:
            raise ClientRefused(f"no form {ident!r} for {user.username}")
        return ix


def _flatten(payload: dict[str, Any], path: list[str]) -> list[dict[str, Any]]:
    """A command and its subcommands (groups included) as the entries a client's command picker lists."""
    options = payload.get("options") or []
    subs = [o for o in options if o.get("type") in (1, 2)]
    if subs:
        return [entry for sub in subs for entry in _flatten(sub, path + [payload["name"]])]
    return [{
        "name": " ".join(path + [payload["name"]]),
        "description": payload.get("description") or "",
        "options": [{
            "name": o["name"], "description": o.get("description") or "", "type": OPTION_TYPES.get(o["type"], "?"),
            "required": bool(o.get("required")), "choices": o.get("choices") or [],
            "autocomplete": bool(o.get("autocomplete")),
            **{k: o[k] for k in ("min_value", "max_value", "min_length", "max_length") if k in o},
        } for o in options],
    }]


def _command_path(ix: Interaction) -> str | None:
    if ix.command is None:
        return None
    names, level = [ix.command.name], ix.payload["data"].get("options") or []
    while level and level[0].get("type") in (1, 2):
        names.append(level[0]["name"])
        level = level[0].get("options") or []
    return " ".join(names)


def mount_playground(app: web.Application, bridge: Bridge) -> None:
    """Serve the playground from the bot's own web server (bot/web/server.py), under PREFIX; `/` opens it."""
    streams: set[asyncio.Task[Any]] = set()
    routes = web.RouteTableDef()
    upload_limit = bridge.discord.attachment_size_limit

    async def body(request: web.Request) -> tuple[User, dict[str, Any]]:
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text='{"error": "not JSON"}', content_type="application/json") from None
        return bridge.player(data.get("user")), data

    def refused(error: Exception) -> web.Response:
        return web.json_response({"error": str(error)}, status=400)

    async def acting(request: web.Request, act) -> web.Response:
        """A player's action on the local Discord (`act(user, data)` -> its Interaction), answered with the ack;
        what a client would not send is a 400 with the local Discord's reason."""
        user, data = await body(request)
        try:
            ix = await act(user, data)
        except (ClientRefused, ValueError) as error:
            return refused(error)
        return web.json_response(await bridge.acked(ix))

    @routes.get(PREFIX)
    async def playground(request: web.Request) -> web.FileResponse:
        return page("playground.html")

    @routes.get(f"{PREFIX}/api/state")
    async def state(request: web.Request) -> web.Response:
        return web.json_response(bridge.state())

    @routes.get(f"{PREFIX}/api/commands")
    async def commands(request: web.Request) -> web.Response:
        return web.json_response(bridge.commands(bridge.player(request.query.get("user"))))

    @routes.get(f"{PREFIX}/api/events")
    async def events(request: web.Request) -> web.StreamResponse:
        user = bridge.player(request.query.get("user"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        streams.add(task)
        try:
            async for event in bridge.events(user):
                chunk = ": quiet\n\n" if event is None else f"data: {json.dumps(event)}\n\n"
                await response.write(chunk.encode())
        except (ConnectionResetError, asyncio.CancelledError, RuntimeError):
            pass  # the page went away, the server is closing, or the bot stopped
        finally:
            streams.discard(task)
        return response

    @routes.get(PREFIX + "/files/{channel}/{attachment}/{filename}")
    async def files(request: web.Request) -> web.Response:
        try:
            key = (int(request.match_info["channel"]), int(request.match_info["attachment"]))
        except ValueError:
            raise web.HTTPNotFound() from None
        attachment = bridge.discord.attachment_files.get(key)
        if attachment is None:
            raise web.HTTPNotFound()
        return web.Response(body=attachment.data, content_type=attachment.content_type,
                            headers={"Cache-Control": "max-age=3600"})

    @routes.post(f"{PREFIX}/api/upload")
    async def upload(request: web.Request) -> web.Response:
        data = bytearray()
        async for chunk in request.content.iter_chunked(1 << 16):  # the server's own 1 MB cap is for forms
            data += chunk
            if len(data) > upload_limit:
                return web.json_response({"error": f"that file is over the {upload_limit // 2**20} MB an "
                                                   "attachment may have"}, status=413)
        try:
            up = bridge.discord.upload(request.query.get("filename", ""), bytes(data))
        except ValueError as error:
            return refused(error)
        return web.json_response({"id": str(up.id), "filename": up.filename, "size": up.size})

    @routes.post(f"{PREFIX}/api/command")
    async def command(request: web.Request) -> web.Response:
        return await acting(request, lambda user, data: bridge.discord.slash(
            user, str(data.get("command", "")), bridge.options(data.get("options") or {})))

    @routes.post(f"{PREFIX}/api/autocomplete")
    async def autocomplete(request: web.Request) -> web.Response:
        user, data = await body(request)
        try:
            ix = await bridge.discord.autocomplete(user, str(data.get("command", "")),
                                                   bridge.options(data.get("options") or {}), str(data.get("focused")))
            await ix.wait_acked(timeout=ACK_WAIT)
        except (ClientRefused, ValueError, TimeoutError) as error:
            return refused(error)
        return web.json_response({"choices": ix.choices or []})

    @routes.post(f"{PREFIX}/api/click")
    async def click(request: web.Request) -> web.Response:
        return await acting(request, lambda user, data: bridge.discord.click(
            user, int(data.get("message", 0)), str(data.get("custom_id", ""))))

    @routes.post(f"{PREFIX}/api/select")
    async def select(request: web.Request) -> web.Response:
        return await acting(request, lambda user, data: bridge.discord.select(
            user, int(data.get("message", 0)), str(data.get("custom_id", "")),
            [str(v) for v in data.get("values") or []]))

    @routes.post(f"{PREFIX}/api/modal")
    async def modal(request: web.Request) -> web.Response:
        async def submit(user: User, data: dict[str, Any]) -> Interaction:
            shown_by = bridge.interaction(user, data.get("interaction"))
            bridge.closed_modals.add(shown_by.id)
            return await bridge.discord.submit_modal(user, shown_by, dict(data.get("values") or {}))

        return await acting(request, submit)

    @routes.post(f"{PREFIX}/api/dismiss")
    async def dismiss(request: web.Request) -> web.Response:
        user, data = await body(request)
        try:
            bridge.closed_modals.add(bridge.interaction(user, data.get("interaction")).id)
        except (ClientRefused, ValueError) as error:
            return refused(error)
        return web.json_response({})

    async def close_streams(app: web.Application) -> None:
        for task in list(streams):
            task.cancel()

    app.add_routes(routes)
    app.on_shutdown.append(close_streams)
    app[HOME] = PREFIX
