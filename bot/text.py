"""Text shown to people: shortened to fit, the same way everywhere."""

from __future__ import annotations

ELLIPSIS = "…"


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters: longer text is cut and ends with "…"."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS
