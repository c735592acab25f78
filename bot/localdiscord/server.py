"""LocalDiscord: a Discord on 127.0.0.1 that a real discord.py client logs in to.

State lives here (guild, members, channels, messages, commands, interactions); the REST
routes are in ``rest.py`` and the websocket in ``gateway.py``. Tests drive it as users would:
``slash``, ``click``, ``submit_modal``, ``post_message``, then wait for what the bot did.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any, Callable, Iterable, TypeVar

from aiohttp import web

from . import errors as E
from .gateway import (
    ALL_INTENTS,
    DIRECT_MESSAGES,
    GUILD_MEMBERS,
    GUILD_MESSAGES,
    GUILDS,
    MESSAGE_CONTENT,
    RECONNECT,
    Gateway,
    Session,
)
from .models import (
    ADMINISTRATOR,
    APPLICATION_COMMAND,
    APPLICATION_COMMAND_AUTOCOMPLETE,
    ATTACH_FILES,
    EMBED_LINKS,
    EPHEMERAL,
    EVERYONE_PERMISSIONS,
    IS_COMPONENTS_V2,
    LOADING,
    MANAGE_GUILD,
    MANAGE_MESSAGES,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    USE_APPLICATION_COMMANDS,
    VIEW_CHANNEL,
    Attachment,
    Channel,
    Command,
    Guild,
    Interaction,
    Member,
    Message,
    Pulse,
    Role,
    User,
    guess_content_type,
)
from .components import drop_nulls, render_components
from .faults import Faults
from .oauth import OAuth
from .snowflake import Snowflakes, iso_now
from .spec import DiscordSpec

log = logging.getLogger(__name__)
T = TypeVar("T")

BOT_PERMISSIONS = VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY | USE_APPLICATION_COMMANDS
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024  # what a server without boosts allows
SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS = 1 << 2, 1 << 12
CREATE_FLAGS = SUPPRESS_EMBEDS | EPHEMERAL | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2

# Message types.
DEFAULT, REPLY, CHAT_INPUT_COMMAND = 0, 19, 20


class ClientRefused(ValueError):
    """What a real Discord client would not let a user do (click a button that is not there,
    run a command that is not registered or that they lack permission for...)."""


class UploadedFile:
    def __init__(self, filename: str, data: bytes) -> None:
        self.filename = filename
        self.data = data


class LocalDiscord:
    """A Discord server on 127.0.0.1 for one bot application, one guild, one text channel.

    ``async with LocalDiscord() as d:`` binds a free port; point discord.py at it with
    ``use_discord_endpoints(d.api_base, d.gateway_url)`` and start the bot with ``d.bot_token``.
    State (messages, commands) outlives bot restarts, like Discord's.
    """

    def __init__(
        self,
        *,
        bot_name: str = "Dreamgrid",
        guild_name: str = "Dreamgrid Test Server",
        channel_name: str = "general",
        bot_permissions: int = BOT_PERMISSIONS,
        privileged_intents: int = ALL_INTENTS,
        ack_deadline: float = 3.0,
        interaction_token_ttl: float = 15 * 60,
        heartbeat_interval_ms: int = 41250,
        check_responses: bool = False,
        attachment_size_limit: int = ATTACHMENT_SIZE_LIMIT,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.spec = DiscordSpec()
        self.ids = Snowflakes()
        self.gateway = Gateway(self, heartbeat_interval_ms=heartbeat_interval_ms)
        self._pulse = Pulse()
        self.host, self._port = host, port
        self.ack_deadline = ack_deadline
        self.interaction_token_ttl = interaction_token_ttl
        self.privileged_intents = privileged_intents
        self.check_responses = check_responses
        # The guild's upload limit: files the bot sends (413 above it), files users pick as
        # attachment options (the client refuses), and the interactions' attachment_size_limit.
        self.attachment_size_limit = attachment_size_limit

        self.bot_token = "LocalDiscord." + secrets.token_urlsafe(24)
        self.application_id = self.ids.next()
        self.bot = User(self.application_id, bot_name, bot=True)  # a bot's user id is its application id
        self.bot_user_id = self.bot.id
        self.owner = User(self.ids.next(), "guild-owner")
        self.users: dict[int, User] = {self.bot.id: self.bot, self.owner.id: self.owner}

        self.guild_id = self.ids.next()
        guild = Guild(self.guild_id, guild_name, owner_id=self.owner.id)
        guild.roles[guild.id] = Role(guild.id, "@everyone", EVERYONE_PERMISSIONS)  # @everyone's id is the guild's
        bot_role = Role(self.ids.next(), bot_name, bot_permissions, position=1, managed=True, bot_id=self.bot.id)
        guild.roles[bot_role.id] = bot_role
        guild.members[self.owner.id] = Member(self.owner, [])
        guild.members[self.bot.id] = Member(self.bot, [bot_role.id])
        self.guilds: dict[int, Guild] = {guild.id: guild}
        self.channels: dict[int, Channel] = {}
        self.channel_id = self.add_channel(channel_name)

        self.messages: dict[int, Message] = {}
        self.commands: dict[int, Command] = {}
        self.interactions: dict[int, Interaction] = {}
        self.spec_errors: list[str] = []
        self.response_errors: list[str] = []
        self.http_errors: list[tuple[str, str, int, int]] = []
        self.requests: list[tuple[str, str]] = []
        self.presence: Any = None
        # Commands the server opened to @everyone in Server Settings > Integrations: Discord then ignores
        # their default_member_permissions, so the bot's own admin check is all that is left.
        self.open_commands: set[str] = set()
        self.attachment_files: dict[tuple[int, int], Attachment] = {}  # (channel_id, id): messages' files
        self.uploads: dict[int, Attachment] = {}  # what users picked (upload()), by attachment id
        self.ephemeral_files: dict[int, Attachment] = {}  # uploads an interaction carried: on the CDN
        self.cdn_requests: list[tuple[str, str]] = []  # (method, path) of every CDN download (cdn.py)
        self.cdn_secret = secrets.token_bytes(32)  # signs ephemeral attachment links (ex/is/hm)
        # Fault injection (faults.py): make REST fail, reset or hang, or drop the gateway.
        self.faults = Faults(self)
        # Login with Discord (oauth.py): the application's client id/secret, codes and Bearer tokens.
        self.oauth = OAuth(self)
        # Servers the bot is not in (add_outside_guild): only a user's /users/@me/guilds lists them.
        self.outside_guilds: dict[int, Guild] = {}

        self._watched: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._dm_channels: dict[int, int] = {}

    # -- server life ----------------------------------------------------------------------------

    async def start(self) -> None:
        from .rest import build_app  # rest imports this module

        self._runner = web.AppRunner(build_app(self), handle_signals=False, access_log=None)
        self.faults.closing.clear()
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self._port = sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.faults._shutdown()  # held requests would keep the server from closing
        await self.gateway.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LocalDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def api_base(self) -> str:
        return self.base_url + "/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self._port}/gateway/"

    @property
    def cdn_origin(self) -> str:
        """Where this Discord's CDN is ("http://127.0.0.1:PORT", no trailing slash): what the bot
        must take for cdn.discordapp.com / media.discordapp.net in tests. Attachment urls start with it."""
        return self.base_url

    # -- world building -------------------------------------------------------------------------

    @property
    def guild(self) -> Guild:
        return self.guilds[self.guild_id]

    def add_role(self, name: str, permissions: int = 0) -> int:
        guild = self.guild
        role = Role(self.ids.next(), name, permissions, position=len(guild.roles))
        guild.roles[role.id] = role
        self.gateway.dispatch("GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role.to_json()}, intent=GUILDS)
        return role.id

    def add_channel(self, name: str, *, nsfw: bool = False) -> int:
        """A text channel; ``nsfw`` makes it age-restricted."""
        channel = Channel(self.ids.next(), name, guild_id=self.guild_id, position=len(self.guild.channels), nsfw=nsfw)
        self.guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        self.gateway.dispatch("CHANNEL_CREATE", channel.to_json(), intent=GUILDS)
        return channel.id

    def add_user(
        self,
        name: str,
        *,
        roles: Iterable[int] = (),
        manage_guild: bool = False,
        administrator: bool = False,
    ) -> User:
        """A guild member. ``manage_guild``/``administrator`` give them a role with that permission."""
        guild = self.guild
        role_ids = list(roles)
        for flag, wanted, role_name in ((MANAGE_GUILD, manage_guild, "Manager"), (ADMINISTRATOR, administrator, "Admin")):
            if wanted:
                existing = next((r.id for r in guild.roles.values() if r.name == role_name), None)
                role_ids.append(existing or self.add_role(role_name, flag))
        unknown = [r for r in role_ids if r not in guild.roles]
        if unknown:
            raise ValueError(f"unknown role ids {unknown}")
        user = User(self.ids.next(), name)
        self.users[user.id] = user
        member = Member(user, role_ids)
        guild.members[user.id] = member
        self.gateway.dispatch("GUILD_MEMBER_ADD", {**member.to_json(), "guild_id": str(guild.id)}, intent=GUILD_MEMBERS)
        return user

    def add_outside_guild(self, name: str, members: Iterable[User] = (), *, managers: Iterable[User] = ()) -> int:
        """A server the bot is not in, with these users in it (``managers`` with Manage Server): it is in their
        ``/users/@me/guilds`` (OAuth2), never in the bot's gateway or REST. Returns its id."""
        guild = Guild(self.ids.next(), name, owner_id=self.owner.id)
        guild.roles[guild.id] = Role(guild.id, "@everyone", EVERYONE_PERMISSIONS)
        manager = Role(self.ids.next(), "Manager", MANAGE_GUILD, position=1)
        guild.roles[manager.id] = manager
        guild.members[self.owner.id] = Member(self.owner, [])
        managing = {user.id for user in managers}
        for user in [*members, *managers]:
            guild.members[user.id] = Member(user, [manager.id] if user.id in managing else [])
        self.outside_guilds[guild.id] = guild
        return guild.id

    def guilds_of(self, user_id: int) -> list[Guild]:
        """Every server the user is in, the bot's and others, by id."""
        every = [*self.guilds.values(), *self.outside_guilds.values()]
        return sorted((g for g in every if user_id in g.members), key=lambda g: g.id)

    def permissions_of(self, user: User | int) -> int:
        return self.guild.permissions_of(user if isinstance(user, int) else user.id)

    # -- waiting ------------------------------------------------------------------------------

    def _changed(self) -> None:
        self._pulse.fire()

    def watch(self, task: asyncio.Task[Any]) -> None:
        """Make every ``wait_*`` fail at once if this task (a bot's ``client.start``) dies."""
        self._watched.add(task)

    def unwatch(self, task: asyncio.Task[Any]) -> None:
        self._watched.discard(task)

    async def wait_until(self, check: Callable[[], T], timeout: float, what: str) -> T:
        """Wait until ``check()`` is truthy; return its value. Fails fast if a watched bot died."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            for task in self._watched:
                if task.done():
                    exc = None if task.cancelled() else task.exception()
                    raise RuntimeError(f"the bot stopped while waiting for {what}: {exc!r}") from exc
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            await self._pulse.wait(min(left, 0.25))

    def registered_commands(self, guild_id: int | None = None) -> list[Command]:
        """Global commands plus those of ``guild_id`` (the test guild by default)."""
        gid = self.guild_id if guild_id is None else guild_id
        return [c for c in self.commands.values() if c.guild_id in (None, gid)]

    async def wait_for_commands(self, names: Iterable[str], timeout: float = 10.0) -> list[Command]:
        wanted = set(names)

        def ready() -> list[Command] | None:
            cmds = self.registered_commands()
            return cmds if wanted <= {c.name for c in cmds} else None

        return await self.wait_until(ready, timeout, f"commands {sorted(wanted)} to be registered")

    async def wait_for_message(self, predicate: Callable[[Message], Any] = lambda m: True, timeout: float = 10.0) -> Message:
        """The first message (any channel, ephemeral ones too) that satisfies ``predicate``."""

        def ready() -> Message | None:
            return next((m for m in self.messages.values() if not m.deleted and predicate(m)), None)

        return await self.wait_until(ready, timeout, "a matching message")

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await self.wait_until(lambda: self.gateway.connected, timeout, "a bot to connect to the gateway")

    def channel_messages(self, channel_id: int | None = None) -> list[Message]:
        cid = self.channel_id if channel_id is None else channel_id
        return [m for m in self.messages.values() if m.channel_id == cid and not m.deleted]

    # -- users acting -------------------------------------------------------------------------

    def upload(self, filename: str, data: bytes, content_type: str | None = None) -> Attachment:
        """A file a user picked for a slash command's attachment option: pass it as the option's
        value (``d.slash(alice, "imagine", {"image": up})``). ``content_type`` is guessed from the
        name when None, as Discord does. It gets its attachment id now; it is on the CDN (``up.url``,
        signed, under ``/ephemeral-attachments/``) once an interaction carried it."""
        if self._runner is None:
            raise RuntimeError("start LocalDiscord before uploading: the file's url needs its port")
        if not filename or "/" in filename or "\\" in filename:
            raise ValueError(f"not a file name: {filename!r}")
        from .cdn import ephemeral_attachment_url

        att_id = self.ids.next()
        url = ephemeral_attachment_url(self, att_id, filename)
        attachment = Attachment(
            att_id, filename, content_type or guess_content_type(filename), bytes(data), url, ephemeral=True
        )
        self.uploads[att_id] = attachment
        return attachment

    async def slash(
        self, user: User, name: str, options: dict[str, Any] | None = None, *, channel_id: int | None = None
    ) -> Interaction:
        """Run ``/name`` (``"group sub"`` for subcommands) as ``user``; sends INTERACTION_CREATE."""
        channel, command, data = self._command_data(user, name, options, channel_id)
        return await self._send_interaction(APPLICATION_COMMAND, user, channel, data, command=command)

    async def autocomplete(
        self, user: User, name: str, options: dict[str, Any], focused: str, *, channel_id: int | None = None
    ) -> Interaction:
        """Type ``options[focused]`` into an option of ``/name``: the client asks the bot for choices
        (interaction type 4); they are in ``ix.choices`` once it answers (``await ix.wait_acked()``)."""
        channel, command, data = self._command_data(user, name, options, channel_id)
        level = data.get("options", [])
        while level and level[0]["type"] in (1, 2):  # down through subcommand groups and subcommands
            level = level[0]["options"]
        option = next((o for o in level if o["name"] == focused), None)
        if option is None:
            raise ClientRefused(f"/{name} has no option {focused!r} in {options}")
        option["focused"] = True
        return await self._send_interaction(APPLICATION_COMMAND_AUTOCOMPLETE, user, channel, data, command=command)

    def _command_data(
        self, user: User, name: str, options: dict[str, Any] | None, channel_id: int | None
    ) -> tuple[Channel, Command, dict[str, Any]]:
        channel = self._guild_channel(channel_id)
        path = name.split()
        command = next(
            (c for c in sorted(self.registered_commands(channel.guild_id), key=lambda c: c.guild_id is None)
             if c.name == path[0] and c.type == 1),
            None,
        )
        if command is None:
            known = sorted(c.name for c in self.registered_commands(channel.guild_id))
            raise ClientRefused(f"/{path[0]} is not registered (registered: {known})")
        self._check_can_use(user, command)
        from .options import build_options  # small module; keeps this one about state

        data_options, resolved = build_options(self, command.payload, path[1:], options or {})
        for att_id, att_json in resolved.get("attachments", {}).items():  # uploaded as the command is sent
            self.ephemeral_files[int(att_id)] = self.uploads[int(att_id)]
            if self.check_responses:  # not a REST answer, but the same object as the spec's
                for problem in self.spec.validate_schema("AttachmentResponse", att_json):
                    self.response_errors.append(f"resolved attachment {att_id}: {problem.describe()}")
        data: dict[str, Any] = {"id": str(command.id), "name": command.name, "type": 1}
        if data_options:  # Discord leaves the key out when there are none
            data["options"] = data_options
        if resolved:
            data["resolved"] = resolved
        if command.guild_id is not None:
            data["guild_id"] = str(command.guild_id)  # discord.py looks guild commands up by it
        return channel, command, data

    async def forge(self, user: User, kind: int, data: dict[str, Any], *, message_id: int | None = None) -> Interaction:
        """A hostile client: send an interaction of any ``kind`` (3 component, 5 modal submit) with any ``data``
        (custom_id, values, components), as no real client would, on ``message_id`` if given (it must exist)."""
        message = self.messages[message_id] if message_id is not None else None
        channel = self.channels[message.channel_id] if message is not None else self._guild_channel(None)
        return await self._send_interaction(kind, user, channel, data, message=message)

    async def click(self, user: User, message_id: int, custom_id: str) -> Interaction:
        """Press the button ``custom_id`` on a message; raises ClientRefused if it is not there."""
        message = self._visible_message(user, message_id)
        component = message.component(custom_id)
        if component is None or component.get("type") != 2:
            raise ClientRefused(f"message {message_id} has no button {custom_id!r} (it has {message.custom_ids()})")
        if component.get("disabled"):
            raise ClientRefused(f"button {custom_id!r} is disabled")
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._send_interaction(
            MESSAGE_COMPONENT, user, self.channels[message.channel_id], data, message=message
        )

    async def select(self, user: User, message_id: int, custom_id: str, values: list[str]) -> Interaction:
        """Choose ``values`` in the string select ``custom_id`` on a message."""
        message = self._visible_message(user, message_id)
        component = message.component(custom_id)
        if component is None or component.get("type") != 3:
            raise ClientRefused(f"message {message_id} has no string select {custom_id!r}")
        offered = {o["value"] for o in component.get("options", [])}
        lo, hi = component.get("min_values", 1), component.get("max_values", 1)
        if not set(values) <= offered or not lo <= len(values) <= hi:
            raise ClientRefused(f"cannot choose {values} in {custom_id!r} (options {sorted(offered)}, {lo}..{hi})")
        data = {"custom_id": custom_id, "component_type": 3, "values": list(values)}
        return await self._send_interaction(
            MESSAGE_COMPONENT, user, self.channels[message.channel_id], data, message=message
        )

    async def submit_modal(self, user: User, shown_by: Interaction, values: dict[str, Any]) -> Interaction:
        """Fill in and submit the modal the bot answered ``shown_by`` with (callback type 9)."""
        modal = shown_by.modal
        if modal is None:
            raise ClientRefused(f"interaction {shown_by.id} was not answered with a modal")
        if user.id != shown_by.user.id:
            raise ClientRefused("a modal can only be submitted by the user it was shown to")
        from .options import modal_submission

        components = modal_submission(modal, values)
        data = {"custom_id": modal["custom_id"], "components": components}
        message = self.messages.get(shown_by.message_id) if shown_by.message_id else None
        channel = self.channels[shown_by.channel_id]
        return await self._send_interaction(MODAL_SUBMIT, user, channel, data, message=message, shown_by=shown_by)

    async def post_message(self, user: User, content: str, *, channel_id: int | None = None) -> Message:
        """A user writes in a channel (MESSAGE_CREATE; content needs the MESSAGE_CONTENT intent)."""
        channel = self._guild_channel(channel_id)
        message = Message(self.ids.next(), channel.id, channel.guild_id, user, content=content)
        self._store_and_announce(message)
        return message

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the client should come back and RESUME. For an abrupt loss of the
        socket (no close frame, 1006) use ``faults.drop_gateway()``."""
        self.gateway.send_op(RECONNECT)

    def _guild_channel(self, channel_id: int | None) -> Channel:
        channel = self.channels.get(self.channel_id if channel_id is None else channel_id)
        if channel is None or channel.guild_id is None:
            raise ValueError(f"no guild text channel {channel_id}")
        return channel

    def _visible_message(self, user: User, message_id: int) -> Message:
        message = self.messages.get(message_id)
        if message is None or message.deleted:
            raise ClientRefused(f"message {message_id} does not exist")
        if message.ephemeral:
            owner = self.interactions.get(message.interaction_id or 0)
            if owner is None or owner.user.id != user.id:
                raise ClientRefused(f"message {message_id} is ephemeral and only its user can see it")
        return message

    def _check_can_use(self, user: User, command: Command) -> None:
        guild = self.guild
        if user.id not in guild.members:
            raise ClientRefused(f"{user.username} is not a member of the guild")
        perms = guild.permissions_of(user.id)
        if not perms & USE_APPLICATION_COMMANDS:
            raise ClientRefused(f"{user.username} may not use application commands")
        needed = command.payload.get("default_member_permissions")
        if needed is not None and command.name not in self.open_commands and (int(needed) & perms) != int(needed):
            raise ClientRefused(f"/{command.name} needs permissions {needed}; {user.username} has {perms}")
        contexts = command.payload.get("contexts")
        if contexts is not None and 0 not in contexts:
            raise ClientRefused(f"/{command.name} is not available in guilds (contexts {contexts})")

    # -- interactions -------------------------------------------------------------------------

    async def _send_interaction(
        self,
        kind: int,
        user: User,
        channel: Channel,
        data: dict[str, Any],
        *,
        message: Message | None = None,
        command: Command | None = None,
        shown_by: Interaction | None = None,
    ) -> Interaction:
        if not self.gateway.live:
            raise RuntimeError("no bot is connected to LocalDiscord's gateway")
        guild = self.guilds[channel.guild_id] if channel.guild_id else None
        ix_id = self.ids.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)
        payload: dict[str, Any] = {
            "id": str(ix_id),
            "application_id": str(self.application_id),
            "type": kind,
            "token": token,
            "version": 1,
            "data": data,
            "channel_id": str(channel.id),
            "channel": {**channel.to_json(), "permissions": str(self.permissions_of(user))},
            "app_permissions": str(self.permissions_of(self.bot)),
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild.id)} if guild else {"1": str(user.id)},
            "context": 0 if guild else 1,
            "attachment_size_limit": self.attachment_size_limit,
        }
        if guild is not None:
            member = guild.members[user.id]
            payload["guild_id"] = str(guild.id)
            payload["guild"] = {"id": str(guild.id), "locale": "en-US", "features": []}
            payload["guild_locale"] = "en-US"
            payload["member"] = {**member.to_json(), "permissions": str(guild.permissions_of(user.id))}
        else:
            payload["user"] = user.to_json()
        if message is not None:
            payload["message"] = message.to_json()
        ix = Interaction(
            ix_id, token, kind, user, channel.id, channel.guild_id, payload,
            message_id=message.id if message is not None else None, command=command,
            shown_by=shown_by.id if shown_by is not None else None, _local=self,
        )
        self.interactions[ix_id] = ix
        ix.sent_at = time.monotonic()  # Discord's 3 s start when it sends the event
        self.gateway.dispatch("INTERACTION_CREATE", payload)
        self._changed()
        return ix

    def interaction_by_token(self, application_id: int, token: str) -> Interaction:
        """The interaction behind a webhook path, or Discord's error for a bad one."""
        if application_id != self.application_id:
            raise E.unknown_webhook()
        ix = next((i for i in self.interactions.values() if i.token == token), None)
        if ix is None or time.monotonic() - ix.sent_at > self.interaction_token_ttl:
            raise E.invalid_webhook_token()
        if not ix.acked:
            raise E.unknown_webhook()
        return ix

    async def interaction_callback(
        self, ix_id: int, token: str, body: dict[str, Any], files: list[UploadedFile]
    ) -> dict[str, Any]:
        """POST /interactions/{id}/{token}/callback; returns the ``with_response`` body."""
        ix = self.interactions.get(ix_id)
        if ix is None or ix.token != token:
            raise E.unknown_interaction()
        if ix.acked:
            raise E.already_acknowledged()
        if time.monotonic() - ix.sent_at > self.ack_deadline:
            ix.late_callbacks += 1
            raise E.unknown_interaction()
        kind = body["type"]
        allowed = {APPLICATION_COMMAND: {4, 5, 9}, MESSAGE_COMPONENT: {4, 5, 6, 7, 9}, MODAL_SUBMIT: {4, 5, 6, 7},
                   APPLICATION_COMMAND_AUTOCOMPLETE: {8}}[ix.type]
        if ix.type == MODAL_SUBMIT and ix.message_id is None:
            allowed = {4, 5}
        if kind not in allowed:
            message = f"Callback type {kind} is not valid for interaction type {ix.type}"
            raise E.invalid_field(("type",), message, "INTERACTION_CALLBACK_TYPE_INVALID")
        data = body.get("data") or {}
        resource_message: Message | None = None
        if kind == 4:
            message = self._new_message(self.channels[ix.channel_id], self.bot, interaction=ix)
            self._apply_body(message, data, files, creating=True)
            resource_message = message
            ix.original_message_id = message.id
        elif kind == 5:
            message = self._new_message(self.channels[ix.channel_id], self.bot, interaction=ix)
            message.flags = LOADING | ((data.get("flags") or 0) & EPHEMERAL)
            ix.original_message_id = message.id
            resource_message = message
        elif kind in (6, 7):
            assert ix.message_id is not None
            ix.original_message_id = ix.message_id
            if kind == 7:
                resource_message = self.messages[ix.message_id]
                self._apply_body(resource_message, data, files, creating=False)
        elif kind == 9:
            from .limits import check_modal

            problems = check_modal(data)
            if problems:
                raise E.invalid_form_body(problems)
            ix.modal = data
        elif kind == 8:
            ix.choices = list(data.get("choices") or [])
        ix.ack_type, ix.acked_at = kind, time.monotonic()
        if resource_message is not None:
            ix.ephemeral = resource_message.ephemeral
            if kind in (4, 5):
                self._store_and_announce(resource_message)
            else:
                self._announce_edit(resource_message)
        self._changed()
        response: dict[str, Any] = {"interaction": {"id": str(ix.id), "type": ix.type, "channel_id": str(ix.channel_id)}}
        if ix.guild_id is not None:
            response["interaction"]["guild_id"] = str(ix.guild_id)
        if resource_message is not None:
            response["interaction"].update(
                response_message_id=str(resource_message.id),
                response_message_loading=resource_message.loading,
                response_message_ephemeral=resource_message.ephemeral,
            )
            if kind in (4, 7):
                response["resource"] = {"type": kind, "message": resource_message.to_json()}
        return response

    # -- messages -----------------------------------------------------------------------------

    def _new_message(self, channel: Channel, author: User, *, interaction: Interaction | None = None) -> Message:
        message = Message(self.ids.next(), channel.id, channel.guild_id, author)
        if interaction is not None:
            message.interaction_id = interaction.id
            message.webhook_id = self.application_id
            message.application_id = self.application_id
            message.type = CHAT_INPUT_COMMAND if interaction.type == APPLICATION_COMMAND else DEFAULT
            metadata = self._interaction_metadata(interaction)
            message.interaction_metadata = metadata
            if interaction.type == APPLICATION_COMMAND and interaction.command is not None:
                message.interaction = {
                    "id": str(interaction.id),
                    "type": interaction.type,
                    "name": interaction.command.name,
                    "user": interaction.user.to_json(),
                }
        return message

    def _interaction_metadata(self, interaction: Interaction) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "id": str(interaction.id),
            "type": interaction.type,
            "user": interaction.user.to_json(),
            "authorizing_integration_owners": interaction.payload["authorizing_integration_owners"],
        }
        if interaction.type == MESSAGE_COMPONENT and interaction.message_id is not None:
            metadata["interacted_message_id"] = str(interaction.message_id)
        if interaction.original_message_id is not None:
            metadata["original_response_message_id"] = str(interaction.original_message_id)
        trigger = self.interactions.get(interaction.shown_by or 0)
        if interaction.type == MODAL_SUBMIT and trigger is not None:
            metadata["triggering_interaction_metadata"] = self._interaction_metadata(trigger)
        return metadata

    def _apply_body(self, message: Message, body: dict[str, Any], files: list[UploadedFile], *, creating: bool) -> None:
        """Apply a create/edit body to ``message`` (all checks first, then the change)."""
        from .limits import check_message

        problems = check_message(body)
        if problems:
            raise E.invalid_form_body(problems)
        if any(len(f.data) > self.attachment_size_limit for f in files):
            raise E.too_large()
        content = (body["content"] or "") if "content" in body else message.content
        embeds = [_embed(e) for e in body.get("embeds") or []] if "embeds" in body else message.embeds
        attachments = self._attachments(message, body, files, creating=creating)
        components = (
            render_components(body.get("components") or [], attachments, self.ids.next)
            if "components" in body else message.components
        )
        sticker_or_poll = bool(body.get("sticker_ids") or body.get("poll"))
        if not (content or embeds or components or attachments or sticker_or_poll):
            raise E.empty_message()
        message.content, message.embeds, message.components, message.attachments = content, embeds, components, attachments
        for attachment in attachments:  # served from now on (the CDN keeps old ones too)
            self.attachment_files[(message.channel_id, attachment.id)] = attachment
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]
        if creating:
            message.tts = bool(body.get("tts"))
            message.nonce = body.get("nonce")
            message.flags = (body.get("flags") or 0) & CREATE_FLAGS
        else:
            flags = body.get("flags")
            if flags is not None:  # an edit may toggle SUPPRESS_EMBEDS and switch to components v2, no more
                message.flags = (message.flags & ~SUPPRESS_EMBEDS) | (flags & (SUPPRESS_EMBEDS | IS_COMPONENTS_V2))
            message.flags &= ~LOADING
            message.edited_timestamp = iso_now()

    def _attachments(
        self, message: Message, body: dict[str, Any], files: list[UploadedFile], *, creating: bool
    ) -> list[Attachment]:
        uploads = {i: f for i, f in enumerate(files)}
        if body.get("attachments") is None:
            kept = [] if creating else list(message.attachments)
            return kept + [self._attachment(message, f.filename, f.data, None) for f in files]
        result: list[Attachment] = []
        used: set[int] = set()
        for i, item in enumerate(body["attachments"]):
            ref = int(item["id"])
            existing = next((a for a in message.attachments if a.id == ref), None)
            if existing is not None and not creating:
                result.append(existing)
            elif ref in uploads:
                used.add(ref)
                upload = uploads[ref]
                filename = item.get("filename") or upload.filename
                result.append(self._attachment(message, filename, upload.data, item.get("description")))
            else:
                problem = f"Unknown attachment {ref}: no files[{ref}] and no such attachment"
                raise E.invalid_field(("attachments", i, "id"), problem, "ATTACHMENT_NOT_FOUND")
        # Uploads the attachments list does not name are still attached.
        result += [self._attachment(message, f.filename, f.data, None) for i, f in uploads.items() if i not in used]
        return result

    def _attachment(self, message: Message, filename: str, data: bytes, description: str | None) -> Attachment:
        from .cdn import message_attachment_path

        att_id = self.ids.next()
        url = self.cdn_origin + message_attachment_path(message.channel_id, att_id, filename)
        return Attachment(att_id, filename, guess_content_type(filename), data, url, description)

    async def create_channel_message(self, channel: Channel, body: dict[str, Any], files: list[UploadedFile]) -> Message:
        self._require_permissions(channel, VIEW_CHANNEL | SEND_MESSAGES | (ATTACH_FILES if files else 0))
        message = self._new_message(channel, self.bot)
        if body.get("flags") and body["flags"] & EPHEMERAL:
            raise E.invalid_field(("flags",), "Only interaction responses can be ephemeral", "MESSAGE_FLAGS_INVALID")
        self._apply_body(message, body, files, creating=True)
        if body.get("message_reference"):
            message.type = REPLY
        self._store_and_announce(message)
        return message

    def _require_permissions(self, channel: Channel, needed: int) -> None:
        if channel.guild_id is None:
            return
        have = self.guilds[channel.guild_id].permissions_of(self.bot.id)
        if not have & VIEW_CHANNEL:
            raise E.missing_access()
        if have & needed != needed:
            raise E.missing_permissions()

    async def edit_message(self, message: Message, body: dict[str, Any], files: list[UploadedFile]) -> Message:
        self._apply_body(message, body, files, creating=False)
        self._announce_edit(message)
        return message

    async def delete_message(self, message: Message) -> None:
        message.deleted = True
        self._changed()
        if not message.ephemeral:
            data: dict[str, Any] = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id is not None:
                data["guild_id"] = str(message.guild_id)
            self.gateway.dispatch("MESSAGE_DELETE", data, intent=self._message_intent(message))

    def get_message(self, channel_id: int, message_id: int) -> Message:
        """A message as the bot may fetch it through the channel (not ephemeral, not deleted)."""
        message = self.messages.get(message_id)
        if message is None or message.deleted or message.channel_id != channel_id or message.ephemeral:
            raise E.unknown_message()
        return message

    def can_manage_messages(self, channel: Channel) -> bool:
        return channel.guild_id is None or bool(self.guilds[channel.guild_id].permissions_of(self.bot.id) & MANAGE_MESSAGES)

    async def followup(self, ix: Interaction, body: dict[str, Any], files: list[UploadedFile]) -> Message:
        original = ix.original
        if ix.ack_type == 5 and original is not None and original.loading and not original.deleted:
            # After a deferred response, the first followup replaces the "thinking..." message.
            ix.followup_ids.append(original.id)
            return await self.edit_message(original, body, files)
        message = self._new_message(self.channels[ix.channel_id], self.bot, interaction=ix)
        self._apply_body(message, body, files, creating=True)
        ix.followup_ids.append(message.id)
        self._store_and_announce(message)
        return message

    def dm_channel(self, user_id: int) -> Channel:
        if user_id not in self.users or user_id == self.bot.id:
            raise E.invalid_form_body([E.FieldError(("recipient_id",), "Unknown user", "USER_NOT_FOUND")])
        if user_id not in self._dm_channels:
            channel = Channel(self.ids.next(), "", type=1, recipient=self.users[user_id])
            self.channels[channel.id] = channel
            self._dm_channels[user_id] = channel.id
        return self.channels[self._dm_channels[user_id]]

    def _store_and_announce(self, message: Message) -> None:
        self.messages[message.id] = message
        message.history.append(message.snapshot())
        self._changed()
        if not message.ephemeral:  # bots never get gateway events for ephemeral messages
            self.channels[message.channel_id].last_message_id = message.id
            self.gateway.dispatch(
                "MESSAGE_CREATE", self._event_json(message), intent=self._message_intent(message),
            )

    def _announce_edit(self, message: Message) -> None:
        message.history.append(message.snapshot())
        self._changed()
        if not message.ephemeral:
            self.gateway.dispatch("MESSAGE_UPDATE", self._event_json(message), intent=self._message_intent(message))

    def _message_intent(self, message: Message) -> int:
        return GUILD_MESSAGES if message.guild_id is not None else DIRECT_MESSAGES

    def _event_json(self, message: Message) -> Callable[[Session], dict[str, Any]]:
        """MESSAGE_CREATE/UPDATE data per session: without MESSAGE_CONTENT, others' content is empty."""
        data = message.to_json()
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
            member = self.guilds[message.guild_id].members.get(message.author.id)
            if member is not None:
                data["member"] = member.to_json(with_user=False)
        stripped = {**data, "content": "", "embeds": [], "attachments": [], "components": []}

        def for_session(session: Session) -> dict[str, Any]:
            own = message.author.id == self.bot.id or message.guild_id is None
            return data if own or session.intents & MESSAGE_CONTENT else stripped

        return for_session

    # -- payloads -----------------------------------------------------------------------------

    def ready_payload(self, session_id: str) -> dict[str, Any]:
        user = {**self.bot.to_json(), "verified": True, "mfa_enabled": False, "email": None}
        return {
            "v": 10,
            "user": user,
            "user_settings": {},
            "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["local"],
            "session_id": session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url.rstrip("/"),
            "application": {"id": str(self.application_id), "flags": 0},
            "auth": {},
            "_trace": ["localdiscord"],
        }

    def application_json(self) -> dict[str, Any]:
        owner = self.owner.to_json()
        return {
            "id": str(self.application_id),
            "name": self.bot.username,
            "icon": None,
            "description": "A bot on LocalDiscord",
            "summary": "",
            "type": None,
            "bot": self.bot.to_json(),
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": 0,
            "flags_new": "0",
            "hook": True,
            "is_monetized": False,
            "is_verified": False,
            "is_discoverable": False,
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "owner": owner,
            "team": None,
            "approximate_guild_count": len(self.guilds),
            "approximate_user_install_count": 0,
            "approximate_user_authorization_count": 0,
            "explicit_content_filter": 0,
            "eligible_oauth2_scopes": ["bot", "applications.commands"],
            "integration_types_config": {"0": {}},
            "tags": [],
        }

    # -- misc ---------------------------------------------------------------------------------

    def record_error(self, method: str, path: str, error: E.DiscordHTTPError) -> None:
        self.http_errors.append((method, path, error.status, error.code))
        if error.spec_error:
            self.spec_errors.append(f"{method} {short_path(path)}: {error.status} {error.describe()}")
            log.warning("LocalDiscord refused %s %s: %s", method, short_path(path), error.describe())


def short_path(path: str) -> str:
    """A path with its long tokens cut, for messages people read."""
    return "/".join(p if len(p) <= 32 else p[:12] + "..." for p in path.split("/"))


def _embed(embed: dict[str, Any]) -> dict[str, Any]:
    clean = drop_nulls(embed)
    clean.setdefault("type", "rich")
    return clean
