"""The fake's state (users, guild, channels, messages, commands, interactions) and its JSON.

Every ``to_json`` gives the object as Discord sends it: all the fields discord.py reads,
ids as strings, and the fields the OpenAPI response schemas require.
"""

from __future__ import annotations

import asyncio
import copy
import io
import mimetypes
import struct
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

from .snowflake import iso_now

if TYPE_CHECKING:
    from .server import LocalDiscord

# Permission bits used by the fake (https://discord.com/developers/docs/topics/permissions).
CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
CONNECT = 1 << 20
SPEAK = 1 << 21
CHANGE_NICKNAME = 1 << 26
USE_APPLICATION_COMMANDS = 1 << 31
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1

EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE | ADD_REACTIONS | VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES
    | READ_MESSAGE_HISTORY | USE_EXTERNAL_EMOJIS | CONNECT | SPEAK | CHANGE_NICKNAME | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS | SEND_MESSAGES_IN_THREADS
)

# Message flags.
EPHEMERAL = 1 << 6
LOADING = 1 << 7
IS_COMPONENTS_V2 = 1 << 15

# Interaction types.
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
APPLICATION_COMMAND_AUTOCOMPLETE = 4
MODAL_SUBMIT = 5


@dataclass
class User:
    id: int
    username: str
    bot: bool = False
    global_name: str | None = None

    @property
    def name(self) -> str:
        return self.username

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "avatar": None,
            "discriminator": "0",
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "global_name": self.global_name,
            "avatar_decoration_data": None,
            "collectibles": None,
            "primary_guild": None,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass
class Role:
    id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False
    bot_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "description": None,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": self.managed,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass
class Member:
    user: User
    roles: list[int]
    joined_at: str = field(default_factory=iso_now)

    @property
    def id(self) -> int:
        return self.user.id

    def to_json(self, *, with_user: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "roles": [str(r) for r in self.roles],
            "joined_at": self.joined_at,
            "nick": None,
            "avatar": None,
            "banner": None,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.to_json()
        return data


@dataclass
class Channel:
    id: int
    name: str
    type: int = 0  # 0 guild text, 1 DM
    guild_id: int | None = None
    position: int = 0
    recipient: User | None = None
    last_message_id: int | None = None
    nsfw: bool = False  # age-restricted

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "flags": 0,
            "last_message_id": str(self.last_message_id) if self.last_message_id else None,
        }
        if self.type == 1:
            assert self.recipient is not None
            data["recipients"] = [self.recipient.to_json()]
            return data
        data.update(
            {
                "guild_id": str(self.guild_id),
                "name": self.name,
                "position": self.position,
                "parent_id": None,
                "topic": None,
                "nsfw": self.nsfw,
                "rate_limit_per_user": 0,
                "permission_overwrites": [],
                "last_pin_timestamp": None,
            }
        )
        return data


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    created_at: str = field(default_factory=iso_now)
    roles: dict[int, Role] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)

    def permissions_of(self, user_id: int) -> int:
        """Guild-level permissions (the fake has no channel overwrites)."""
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        member = self.members.get(user_id)
        if member is None:
            return 0
        value = self.roles[self.id].permissions
        for role_id in member.roles:
            value |= self.roles[role_id].permissions
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value

    def to_gateway_json(self, *, with_members: bool, bot_id: int) -> dict[str, Any]:
        """The GUILD_CREATE payload. Without the GUILD_MEMBERS intent only the bot is listed."""
        members = [m for m in self.members.values() if with_members or m.id == bot_id]
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "icon_hash": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "application_id": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "widget_enabled": False,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "nsfw": False,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "vanity_url_code": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "features": [],
            "roles": [r.to_json() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "channels": [c.to_json() for c in self.channels.values()],
            "threads": [],
            "members": [m.to_json() for m in members],
            "member_count": len(self.members),
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "joined_at": self.members[bot_id].joined_at,
            "large": False,
            "unavailable": False,
            "lazy": True,
            "incidents_data": None,
            "hub_type": None,
        }


@dataclass
class Attachment:
    """A file on the CDN: a message's attachment, or (``ephemeral``) one a user uploaded as a slash
    command option (``LocalDiscord.upload``), served under ``/ephemeral-attachments/``."""

    id: int
    filename: str
    content_type: str
    data: bytes
    url: str
    description: str | None = None
    ephemeral: bool = False

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def dimensions(self) -> tuple[int, int] | None:
        """(width, height) if the bytes are an image (Discord reports both for images)."""
        if "_dims" not in self.__dict__:
            self.__dict__["_dims"] = image_size(self.data)
        return self.__dict__["_dims"]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
        }
        if self.description is not None:
            data["description"] = self.description
        dims = self.dimensions
        if dims is not None:
            data["width"], data["height"] = dims
        if self.ephemeral:
            data["ephemeral"] = True
        return data


def guess_content_type(filename: str) -> str:
    # Discord sniffs the type from the name; discord.py uploads everything as octet-stream.
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def image_size(data: bytes) -> tuple[int, int] | None:
    """An image's (width, height) from its header: Pillow if it reads the bytes (it only parses the
    header; a decompression bomb's claimed size is reported, as Discord would), else PNG/GIF by hand."""
    try:
        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the size is all we want
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        if width > 0 and height > 0:
            return int(width), int(height)
    except Exception:  # not an image, truncated, too large for Pillow (DecompressionBombError)...
        pass
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    return None


@dataclass
class Message:
    """A message as the fake stores it. Objects are live: edits change them in place."""

    id: int
    channel_id: int
    guild_id: int | None
    author: User
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    tts: bool = False
    timestamp: str = field(default_factory=iso_now)
    edited_timestamp: str | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    interaction: dict[str, Any] | None = None
    allowed_mentions: dict[str, Any] | None = None
    nonce: str | int | None = None
    deleted: bool = False
    history: list[Message] = field(default_factory=list, repr=False)  # every version, oldest first

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    def snapshot(self) -> Message:
        """A frozen copy of this version (kept in ``history``)."""
        return replace(
            self, embeds=copy.deepcopy(self.embeds), components=copy.deepcopy(self.components),
            attachments=list(self.attachments), history=[],
        )

    def walk_components(self) -> list[dict[str, Any]]:
        """Every component, depth first (rows, their children, containers, sections...)."""
        found: list[dict[str, Any]] = []

        def walk(items: list[dict[str, Any]]) -> None:
            for item in items:
                found.append(item)
                walk(item.get("components") or [])
                if isinstance(item.get("accessory"), dict):
                    walk([item["accessory"]])
                if isinstance(item.get("component"), dict):
                    walk([item["component"]])

        walk(self.components)
        return found

    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in self.walk_components() if c.get("custom_id")]

    def component(self, custom_id: str) -> dict[str, Any] | None:
        return next((c for c in self.walk_components() if c.get("custom_id") == custom_id), None)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": self.type,
            "content": self.content,
            "mentions": [],
            "mention_roles": [],
            "attachments": [a.to_json() for a in self.attachments],
            "embeds": self.embeds,
            "timestamp": self.timestamp,
            "edited_timestamp": self.edited_timestamp,
            "flags": self.flags,
            "components": self.components,
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "author": self.author.to_json(),
            "pinned": False,
            "mention_everyone": False,
            "tts": self.tts,
        }
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            data["application_id"] = str(self.application_id)
        if self.interaction_metadata is not None:
            data["interaction_metadata"] = self.interaction_metadata
        if self.interaction is not None:
            data["interaction"] = self.interaction
        if self.nonce is not None:
            data["nonce"] = self.nonce
        return data


@dataclass
class Command:
    """A registered application command; ``payload`` is what the bot sent."""

    id: int
    application_id: int
    guild_id: int | None
    version: int
    payload: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.payload["name"])

    @property
    def type(self) -> int:
        return int(self.payload.get("type") or 1)

    def to_json(self) -> dict[str, Any]:
        p = self.payload
        dmp = p.get("default_member_permissions")
        data: dict[str, Any] = {
            "id": str(self.id),
            "application_id": str(self.application_id),
            "version": str(self.version),
            "default_member_permissions": None if dmp is None else str(dmp),
            "type": self.type,
            "name": p["name"],
            "description": p.get("description") or "",
            "dm_permission": p.get("dm_permission", True) is not False,
            "contexts": p.get("contexts"),
            "integration_types": p.get("integration_types") or [0],
            "nsfw": bool(p.get("nsfw", False)),
        }
        for key in ("name_localizations", "description_localizations"):
            if p.get(key) is not None:
                data[key] = p[key]
        if p.get("options"):
            data["options"] = p["options"]
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        return data


@dataclass
class Interaction:
    """An interaction the fake sent to the bot, and what the bot did with it."""

    id: int
    token: str
    type: int
    user: User
    channel_id: int
    guild_id: int | None
    payload: dict[str, Any]
    sent_at: float = field(default_factory=time.monotonic)
    message_id: int | None = None  # the clicked message, for components
    command: Command | None = None
    shown_by: int | None = None  # for a modal submit: the interaction answered with the modal
    ack_type: int | None = None
    acked_at: float | None = None
    ephemeral: bool = False
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    modal: dict[str, Any] | None = None
    choices: list[dict[str, Any]] | None = None  # what the bot offered for an autocomplete (callback 8)
    late_callbacks: int = 0
    _local: LocalDiscord | None = field(default=None, repr=False)

    @property
    def acked(self) -> bool:
        return self.ack_type is not None

    @property
    def ack_seconds(self) -> float | None:
        return None if self.acked_at is None else self.acked_at - self.sent_at

    @property
    def original(self) -> Message | None:
        if self.original_message_id is None or self._local is None:
            return None
        return self._local.messages.get(self.original_message_id)

    @property
    def original_history(self) -> list[Message]:
        """Every version of the original response, oldest first (the "thinking..." one too)."""
        original = self.original
        return [] if original is None else list(original.history)

    @property
    def followups(self) -> list[Message]:
        assert self._local is not None
        return [self._local.messages[i] for i in self.followup_ids]

    async def wait_acked(self, timeout: float = 5.0) -> int:
        """The callback type once the bot acknowledged the interaction."""
        assert self._local is not None
        await self._local.wait_until(lambda: self.acked, timeout, f"interaction {self.id} to be acknowledged")
        assert self.ack_type is not None
        return self.ack_type

    async def wait_original(
        self, predicate: Callable[[Message], Any] | None = None, timeout: float = 10.0
    ) -> Message:
        """The original response message once ``predicate`` holds for it (by default: once it
        is no longer the "thinking..." message of a deferred response)."""
        assert self._local is not None
        check = predicate or (lambda m: not m.loading)

        def ready() -> Message | None:
            msg = self.original
            return msg if msg is not None and not msg.deleted and check(msg) else None

        return await self._local.wait_until(ready, timeout, f"the original response of interaction {self.id}")

    async def wait_followup(
        self, predicate: Callable[[Message], Any] = lambda m: True, timeout: float = 10.0
    ) -> Message:
        assert self._local is not None

        def ready() -> Message | None:
            return next((m for m in self.followups if not m.deleted and predicate(m)), None)

        return await self._local.wait_until(ready, timeout, f"a followup of interaction {self.id}")

    async def wait_modal(self, timeout: float = 5.0) -> dict[str, Any]:
        assert self._local is not None
        return await self._local.wait_until(lambda: self.modal, timeout, f"a modal for interaction {self.id}")


class Pulse:
    """Wakes every waiter whenever the fake's state changes."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
