"""Who asks (a Requester, from any front end) and what they are told when their input is refused."""

from __future__ import annotations

from dataclasses import dataclass


class UserError(Exception):
    """Bad input from a person. The message says what was wrong and what to do; nothing was changed."""


@dataclass(frozen=True)
class Requester:
    user_id: int
    name: str
    guild_id: int | None
    channel_id: int
    role_ids: tuple[int, ...] = ()  # for role quota tiers


def guild_key(guild_id: int | None) -> int:
    return guild_id or 0  # direct messages are "server 0"
