"""Discord's JSON error answers, raised inside handlers and rendered by the REST layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of a request body, as Discord reports it."""

    path: tuple[str | int, ...]
    message: str
    code: str = "BASE_TYPE_INVALID"

    def describe(self) -> str:
        where = ".".join(str(p) for p in self.path) or "<body>"
        return f"{where}: {self.message}"


def nest_errors(errors: list[FieldError]) -> dict[str, Any]:
    """Discord's nested ``errors`` object: {"content": {"_errors": [{code, message}]}}."""
    root: dict[str, Any] = {}
    for err in errors:
        node = root
        for part in err.path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": err.code, "message": err.message})
    return root


class DiscordHTTPError(Exception):
    """An error answer. ``spec_error`` is set when the request itself was malformed:
    those are the bot's bugs and are collected in ``LocalDiscord.spec_errors``."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: list[FieldError] | None = None,
        spec_error: bool = False,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []
        self.spec_error = spec_error

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = nest_errors(self.errors)
        return body

    def describe(self) -> str:
        if not self.errors:
            return self.message
        return f"{self.message}: " + "; ".join(e.describe() for e in self.errors)


def invalid_form_body(errors: list[FieldError]) -> DiscordHTTPError:
    return DiscordHTTPError(400, 50035, "Invalid Form Body", errors=errors, spec_error=True)


def invalid_field(path: tuple[str | int, ...], message: str, code: str) -> DiscordHTTPError:
    return invalid_form_body([FieldError(path, message, code)])


def bad_request(code: int, message: str) -> DiscordHTTPError:
    """A request Discord refuses for what it says (not a runtime condition): a bot bug."""
    return DiscordHTTPError(400, code, message, spec_error=True)


def not_found_route() -> DiscordHTTPError:
    return DiscordHTTPError(404, 0, "404: Not Found", spec_error=True)


def unauthorized() -> DiscordHTTPError:
    return DiscordHTTPError(401, 0, "401: Unauthorized")


def unknown_channel() -> DiscordHTTPError:
    return DiscordHTTPError(404, 10003, "Unknown Channel")


def unknown_message() -> DiscordHTTPError:
    return DiscordHTTPError(404, 10008, "Unknown Message")


def unknown_webhook() -> DiscordHTTPError:
    return DiscordHTTPError(404, 10015, "Unknown Webhook")


def unknown_interaction() -> DiscordHTTPError:
    return DiscordHTTPError(404, 10062, "Unknown interaction")


def unknown_command() -> DiscordHTTPError:
    return DiscordHTTPError(404, 10063, "Unknown application command")


def already_acknowledged() -> DiscordHTTPError:
    return DiscordHTTPError(400, 40060, "Interaction has already been acknowledged.")


def invalid_webhook_token() -> DiscordHTTPError:
    return DiscordHTTPError(401, 50027, "Invalid Webhook Token")


def missing_access() -> DiscordHTTPError:
    return DiscordHTTPError(403, 50001, "Missing Access")


def missing_permissions() -> DiscordHTTPError:
    return DiscordHTTPError(403, 50013, "Missing Permissions")


def not_author() -> DiscordHTTPError:
    return DiscordHTTPError(403, 50005, "Cannot edit a message authored by another user")


def empty_message() -> DiscordHTTPError:
    return DiscordHTTPError(400, 50006, "Cannot send an empty message", spec_error=True)


def too_large() -> DiscordHTTPError:
    return DiscordHTTPError(413, 40005, "Request entity too large", spec_error=True)

