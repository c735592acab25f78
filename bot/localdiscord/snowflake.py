"""Snowflake ids and timestamps shaped like Discord's."""

from __future__ import annotations

import time
from datetime import datetime, timezone

DISCORD_EPOCH_MS = 1420070400000


class Snowflakes:
    """Hands out increasing snowflakes whose timestamp part is now.

    Real timestamps matter: discord.py derives ``created_at`` from the id.
    """

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(candidate, self._last + 1)
        return self._last


def iso_now() -> str:
    """A timestamp as Discord writes it: 2024-05-01T12:00:00.123000+00:00."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")
