"""Logging set-up. Secrets never reach a log line: a filter replaces them wherever they appear — the Discord
token, and every interaction token (a 15-minute credential that discord.py's DEBUG lines carry in request
URLs and in the gateway's INTERACTION_CREATE payloads)."""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
TOKEN_SHAPES = (  # each keeps group 1 and redacts what follows it
    re.compile(r"(/webhooks/\d+/)[A-Za-z0-9_.\-]+"),  # follow-ups: /webhooks/<application>/<token>/messages/…
    re.compile(r"(/interactions/\d+/)[A-Za-z0-9_.\-]+"),  # the answer: /interactions/<id>/<token>/callback
    re.compile(r"""(\\*["']token\\*["']\s*:\s*\\*["'])[^"'\\]+"""),  # a payload's "token": JSON or a dict's repr
)


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        for shape in TOKEN_SHAPES:
            text = shape.sub(rf"\g<1>{REDACTED}", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def setup_logging(level: str, secrets: list[str]) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
