"""RedactSecrets: the bot token and every interaction token are replaced by [redacted] in a record's
message and exception text, whatever shape discord.py logs them in."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from bot.logs import RedactSecrets

BOT_TOKEN = "MTIzNDU2Nzg5.bot-token.secret"
TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5OmFiY2RlZg_-x.Y"  # an interaction token: base64url and dots


def record(msg: str, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("discord.http", logging.DEBUG, __file__, 1, msg, args, exc_info)


def shown(rec: logging.LogRecord) -> str:
    RedactSecrets([BOT_TOKEN]).filter(rec)
    return logging.Formatter("%(message)s").format(rec)


@pytest.mark.parametrize("msg, args, expected", [
    ("%s %s with %s has returned %s", ("POST", f"http://127.0.0.1:5/api/v10/interactions/123/{TOKEN}/callback",
                                        None, 204),
     "POST http://127.0.0.1:5/api/v10/interactions/123/[redacted]/callback with None has returned 204"),
    ("Webhook ID %s with %s %s has returned status code %s",
     (42, "PATCH", f"https://discord.com/api/v10/webhooks/42/{TOKEN}/messages/@original", 200),
     "Webhook ID 42 with PATCH https://discord.com/api/v10/webhooks/42/[redacted]/messages/@original has returned"
     " status code 200"),
    ("POST /webhooks/42/%s?wait=true", (TOKEN,), "POST /webhooks/42/[redacted]?wait=true"),
    ("For Shard ID %s: WebSocket Event: %s", (None, {"t": "INTERACTION_CREATE", "d": {"id": "7", "token": TOKEN}}),
     "For Shard ID None: WebSocket Event: {'t': 'INTERACTION_CREATE', 'd': {'id': '7', 'token': '[redacted]'}}"),
    ("sent %s", (json.dumps({"token": TOKEN, "type": 2}),), 'sent {"token": "[redacted]", "type": 2}'),
    ("Authorization: Bot %s", (BOT_TOKEN,), "Authorization: Bot [redacted]"),
    ("nothing secret in /webhooks or /interactions/ here", (), "nothing secret in /webhooks or /interactions/ here"),
])
def test_tokens_in_messages_are_redacted(msg, args, expected):
    assert shown(record(msg, *args)) == expected


def test_tokens_in_exception_text_are_redacted():
    try:
        raise RuntimeError(f"404 Not Found (error code: 10015) for PATCH /webhooks/42/{TOKEN}/messages/@original"
                           f" with {json.dumps({'token': TOKEN})} and {BOT_TOKEN}")
    except RuntimeError:
        rec = record("request failed", exc_info=sys.exc_info())
    text = shown(rec)
    assert TOKEN not in text and BOT_TOKEN not in text
    assert "/webhooks/42/[redacted]/messages/@original" in text and '{"token": "[redacted]"}' in text
