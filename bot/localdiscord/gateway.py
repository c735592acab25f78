"""The gateway websocket: HELLO, IDENTIFY/READY, heartbeats, RESUME and dispatches.

Opcodes and close codes: https://discord.com/developers/docs/topics/opcodes-and-status-codes
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Union

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from .server import LocalDiscord

log = logging.getLogger(__name__)

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE_STATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11

UNKNOWN_OPCODE, DECODE_ERROR, NOT_AUTHENTICATED, AUTH_FAILED, ALREADY_AUTHENTICATED = 4001, 4002, 4003, 4004, 4005
INVALID_SHARD, INVALID_VERSION, INVALID_INTENTS, DISALLOWED_INTENTS = 4010, 4012, 4013, 4014

# Intents (https://discord.com/developers/docs/events/gateway#gateway-intents).
GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_PRESENCES = 1 << 8
GUILD_MESSAGES = 1 << 9
DIRECT_MESSAGES = 1 << 12
MESSAGE_CONTENT = 1 << 15
ALL_INTENTS = (1 << 26) - 1
PRIVILEGED_INTENTS = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT

RESUMABLE_EVENTS = 1000  # how many dispatches a session keeps for RESUME
RESUME_WINDOW = 30.0  # seconds a dropped session stays resumable

EventData = Union[dict[str, Any], Callable[["Session"], dict[str, Any]]]


class Connection:
    """One websocket. Payloads are queued and written by one task, in the order they were
    dispatched (a zlib stream must be written in order, and events must not overtake)."""

    def __init__(self, ws: web.WebSocketResponse, compressor: Any, transport: asyncio.BaseTransport | None = None) -> None:
        self.ws = ws
        self.compressor = compressor
        self.transport = transport
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop())

    @property
    def open(self) -> bool:
        return not self.ws.closed and not self._writer.done()

    def send(self, payload: dict[str, Any]) -> None:
        self._queue.put_nowait(payload)

    async def _write_loop(self) -> None:
        while True:
            payload = await self._queue.get()
            try:
                await self._write(payload)
            except (ConnectionResetError, RuntimeError):
                return  # the socket went away; the session keeps its events for RESUME

    async def _write(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        if self.compressor is None:
            await self.ws.send_str(data.decode())
        elif isinstance(self.compressor, _ZLIB_TYPE):
            # zlib-stream: one deflate stream per connection, each message ends in a sync flush.
            await self.ws.send_bytes(self.compressor.compress(data) + self.compressor.flush(zlib.Z_SYNC_FLUSH))
        else:
            await self.ws.send_bytes(self.compressor.compress(data) + self.compressor.flush(1))  # zstd FLUSH_BLOCK

    async def close(self, code: int, message: bytes) -> None:
        await self.ws.close(code=code, message=message)

    def abort(self) -> None:
        """Lose the socket: TCP closed at once, no close frame (the client sees 1006)."""
        self._writer.cancel()
        if self.transport is not None:
            self.transport.abort()

    def stop(self) -> None:
        self._writer.cancel()


_ZLIB_TYPE = type(zlib.compressobj())


@dataclass
class Session:
    """A gateway session; it outlives its socket so that the client can RESUME it."""

    id: str
    intents: int
    conn: Connection | None = None
    seq: int = 0
    sent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RESUMABLE_EVENTS))
    resumable: bool = True
    dropped_at: float | None = None

    @property
    def connected(self) -> bool:
        return self.conn is not None and self.conn.open

    @property
    def can_resume(self) -> bool:
        return self.resumable and (self.dropped_at is None or time.monotonic() - self.dropped_at < RESUME_WINDOW)


class Gateway:
    def __init__(self, local: LocalDiscord, *, heartbeat_interval_ms: int = 41250) -> None:
        self.local = local
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.sessions: dict[str, Session] = {}
        self.identify_count = 0
        self.resume_count = 0
        self._connections: set[Connection] = set()

    @property
    def connected(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.connected]

    @property
    def live(self) -> list[Session]:
        """Sessions that get events now or on RESUME."""
        return [s for s in self.sessions.values() if s.connected or s.can_resume]

    # -- socket life ------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        conn = Connection(ws, self._compressor(request), request.transport)
        self._connections.add(conn)
        session: Session | None = None
        try:
            if request.query.get("v", "10") != "10":
                await conn.close(INVALID_VERSION, b"Invalid API version")
                return ws
            if request.query.get("encoding", "json") != "json":
                await conn.close(DECODE_ERROR, b"LocalDiscord speaks only encoding=json")
                return ws
            hello = {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["localdiscord"]}
            conn.send({"op": HELLO, "d": hello, "s": None, "t": None})
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                try:
                    payload = json.loads(msg.data)
                    op = payload["op"]
                except (ValueError, KeyError, TypeError):
                    await conn.close(DECODE_ERROR, b"Error while decoding payload.")
                    break
                session = await self._on_op(conn, session, op, payload.get("d"))
        finally:
            conn.stop()
            self._connections.discard(conn)
            if session is not None and session.conn is conn:
                session.conn, session.dropped_at = None, time.monotonic()
                # A clean close (1000/1001) ends the session: it cannot be resumed.
                if ws.close_code in (1000, 1001):
                    session.resumable = False
                    self.sessions.pop(session.id, None)
            self.local._changed()
        return ws

    def _compressor(self, request: web.Request) -> Any:
        wanted = request.query.get("compress")
        if wanted == "zlib-stream":
            return zlib.compressobj()
        if wanted == "zstd-stream":
            try:
                import zstandard  # type: ignore[import-not-found]
            except ImportError:
                log.warning("zstd-stream asked for but zstandard is not installed: sending plain text")
                return None
            return zstandard.ZstdCompressor().compressobj()
        return None

    async def _on_op(self, conn: Connection, session: Session | None, op: int, data: Any) -> Session | None:
        if op == HEARTBEAT:
            conn.send({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
            return session
        if op in (IDENTIFY, RESUME):
            if session is not None:
                await conn.close(ALREADY_AUTHENTICATED, b"Already authenticated.")
                return session
            if op == IDENTIFY:
                return await self._identify(conn, data or {})
            return await self._resume(conn, data or {})
        if session is None:
            await conn.close(NOT_AUTHENTICATED, b"Not authenticated.")
            return None
        if op == REQUEST_MEMBERS:
            self._members_chunk(session, data or {})
        elif op == PRESENCE:
            self.local.presence = data
        elif op != VOICE_STATE:
            await conn.close(UNKNOWN_OPCODE, b"Unknown opcode.")
        return session

    async def _identify(self, conn: Connection, data: dict[str, Any]) -> Session | None:
        local = self.local
        if str(data.get("token", "")).removeprefix("Bot ") != local.bot_token:
            await conn.close(AUTH_FAILED, b"Authentication failed.")
            return None
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0 or intents & ~ALL_INTENTS:
            await conn.close(INVALID_INTENTS, b"Invalid intent(s).")
            return None
        if intents & PRIVILEGED_INTENTS & ~local.privileged_intents:
            await conn.close(DISALLOWED_INTENTS, b"Disallowed intent(s).")
            return None
        shard = data.get("shard")
        valid_shard = (
            isinstance(shard, list) and len(shard) == 2 and all(isinstance(x, int) for x in shard)
            and 0 <= shard[0] < shard[1]
        )
        if shard is not None and not valid_shard:
            await conn.close(INVALID_SHARD, b"Invalid shard.")
            return None
        session = Session(id=secrets.token_hex(16), intents=intents, conn=conn)
        self.sessions[session.id] = session
        self.identify_count += 1
        ready = local.ready_payload(session.id)
        if shard is not None:
            ready["shard"] = shard  # sharded clients (AutoShardedClient) read it back
        self._dispatch_to(session, "READY", ready)
        if intents & GUILDS:
            for guild in local.guilds.values():
                data = guild.to_gateway_json(with_members=bool(intents & GUILD_MEMBERS), bot_id=local.bot_user_id)
                self._dispatch_to(session, "GUILD_CREATE", data)
        local._changed()
        return session

    async def _resume(self, conn: Connection, data: dict[str, Any]) -> Session | None:
        if str(data.get("token", "")).removeprefix("Bot ") != self.local.bot_token:
            await conn.close(AUTH_FAILED, b"Authentication failed.")
            return None
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or not session.can_resume or session.connected:
            conn.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return None
        last = data.get("seq") or 0
        # Replay what the client missed, then RESUMED; nothing can come in between.
        session.conn, session.dropped_at = conn, None
        for payload in list(session.sent):
            if payload["s"] > last:
                conn.send(payload)
        self._dispatch_to(session, "RESUMED", {"_trace": ["localdiscord"]})
        self.resume_count += 1
        self.local._changed()
        return session

    def _members_chunk(self, session: Session, data: dict[str, Any]) -> None:
        guild = self.local.guilds.get(int(data.get("guild_id") or 0))
        if guild is None:
            return
        members = list(guild.members.values())
        if data.get("user_ids"):
            wanted = {int(u) for u in data["user_ids"]}
            members = [m for m in members if m.id in wanted]
        elif data.get("query"):
            members = [m for m in members if m.user.username.startswith(data["query"])]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": [m.to_json() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        self._dispatch_to(session, "GUILD_MEMBERS_CHUNK", chunk)

    # -- sending ------------------------------------------------------------------------------

    def dispatch(self, event: str, data: EventData, *, intent: int | None = None) -> int:
        """Queue an event for every session subscribed to ``intent``, in call order; returns how
        many connected sessions get it (a dropped, resumable session gets it on RESUME).
        ``data`` may be a function of the session, for data that depends on its intents."""
        delivered = 0
        for session in list(self.sessions.values()):
            if not session.connected and not session.can_resume:
                del self.sessions[session.id]
                continue
            if intent is not None and not session.intents & intent:
                continue
            if self._dispatch_to(session, event, data(session) if callable(data) else data):
                delivered += 1
        return delivered

    def _dispatch_to(self, session: Session, event: str, data: dict[str, Any]) -> bool:
        session.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
        session.sent.append(payload)
        if not session.connected:
            return False
        assert session.conn is not None
        session.conn.send(payload)
        return True

    def send_op(self, op: int, data: Any = None) -> None:
        """Send a bare opcode (e.g. RECONNECT) to every connected session."""
        for session in self.connected:
            assert session.conn is not None
            session.conn.send({"op": op, "d": data, "s": None, "t": None})

    def drop_connections(self) -> int:
        """Cut every websocket without a close frame; their sessions stay resumable."""
        dropped = list(self._connections)
        for conn in dropped:
            conn.abort()
        return len(dropped)

    async def close_all(self, code: int = 1001) -> None:
        for conn in list(self._connections):
            await conn.close(code, b"LocalDiscord is shutting down")
