"""Rules Discord enforces that the OpenAPI spec does not (or states more loosely)."""

from __future__ import annotations

import re
from typing import Any

from .errors import FieldError
from .models import IS_COMPONENTS_V2

MAX_CONTENT = 2000  # the spec allows 4000 on channel messages: that is for Nitro users, not bots
MAX_ACTION_ROWS = 5
MAX_ROW_BUTTONS = 5
MAX_CUSTOM_ID = 100
MAX_EMBED_CHARS = 6000
MAX_MODAL_COMPONENTS = 5

ACTION_ROW, BUTTON, TEXT_INPUT = 1, 2, 4
SELECT_TYPES = {3, 5, 6, 7, 8}
LINK_STYLE, PREMIUM_STYLE = 5, 6

# Chat-input command and option names: lower case, no spaces (Discord's CHAT_INPUT regex).
_NAME = re.compile(r"^[-_'\w\u0900-\u097F\u0E00-\u0E7F]{1,32}$")


def check_message(body: dict[str, Any], prefix: tuple[str | int, ...] = ()) -> list[FieldError]:
    """Content, embed and component limits for a message create/edit body."""
    errors: list[FieldError] = []
    content = body.get("content")
    if isinstance(content, str) and len(content) > MAX_CONTENT:
        errors.append(_too_long(prefix + ("content",), MAX_CONTENT))
    embeds = body.get("embeds") or []
    if isinstance(embeds, list) and sum(_embed_chars(e) for e in embeds if isinstance(e, dict)) > MAX_EMBED_CHARS:
        message = f"Embed size exceeds maximum size of {MAX_EMBED_CHARS}"
        errors.append(FieldError(prefix + ("embeds",), message, "MAX_EMBED_SIZE_EXCEEDED"))
    flags = body.get("flags") or 0
    components = body.get("components") or []
    if isinstance(components, list) and isinstance(flags, int):
        errors += _check_components(components, v2=bool(flags & IS_COMPONENTS_V2), prefix=prefix + ("components",))
        if flags & IS_COMPONENTS_V2 and (content or embeds):
            message = "content and embeds cannot be used with IS_COMPONENTS_V2"
            errors.append(FieldError(prefix + ("content",), message, "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2"))
    return errors


def _too_long(path: tuple[str | int, ...], limit: int) -> FieldError:
    return FieldError(path, f"Must be {limit} or fewer in length.", "BASE_TYPE_MAX_LENGTH")


def _embed_chars(embed: dict[str, Any]) -> int:
    total = len(str(embed.get("title") or "")) + len(str(embed.get("description") or ""))
    total += len(str((embed.get("footer") or {}).get("text") or ""))
    total += len(str((embed.get("author") or {}).get("name") or ""))
    for f in embed.get("fields") or []:
        total += len(str(f.get("name") or "")) + len(str(f.get("value") or ""))
    return total


def _check_components(components: list[Any], *, v2: bool, prefix: tuple[str | int, ...]) -> list[FieldError]:
    errors: list[FieldError] = []
    if not v2:
        if len(components) > MAX_ACTION_ROWS:
            errors.append(_too_long(prefix, MAX_ACTION_ROWS))
        for i, row in enumerate(components):
            if isinstance(row, dict) and row.get("type") != ACTION_ROW:
                message = "Only action rows can be top level without IS_COMPONENTS_V2"
                errors.append(FieldError(prefix + (i, "type"), message, "UNION_TYPE_CHOICES"))
    seen: set[str] = set()

    def walk(items: list[Any], path: tuple[str | int, ...]) -> None:
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            here = path + (i,)
            kind = item.get("type")
            children = item.get("components")
            if kind == ACTION_ROW and isinstance(children, list):
                buttons = [c for c in children if isinstance(c, dict) and c.get("type") == BUTTON]
                selects = [c for c in children if isinstance(c, dict) and c.get("type") in SELECT_TYPES]
                if len(buttons) > MAX_ROW_BUTTONS:
                    errors.append(_too_long(here + ("components",), MAX_ROW_BUTTONS))
                if selects and len(children) > 1:
                    message = "A select menu must be alone in its action row"
                    errors.append(FieldError(here + ("components",), message, "COMPONENT_LAYOUT_WIDTH_EXCEEDED"))
            if kind == BUTTON:
                errors.extend(_check_button(item, here))
            custom_id = item.get("custom_id")
            if isinstance(custom_id, str):
                if len(custom_id) > MAX_CUSTOM_ID:
                    errors.append(_too_long(here + ("custom_id",), MAX_CUSTOM_ID))
                if custom_id in seen:
                    message = "Component custom id cannot be duplicated"
                    errors.append(FieldError(here + ("custom_id",), message, "COMPONENT_CUSTOM_ID_DUPLICATED"))
                seen.add(custom_id)
            if isinstance(children, list):
                walk(children, here + ("components",))
            for key in ("accessory", "component"):
                if isinstance(item.get(key), dict):
                    walk([item[key]], here + (key,))

    walk(components, prefix)
    return errors


def _check_button(button: dict[str, Any], path: tuple[str | int, ...]) -> list[FieldError]:
    style = button.get("style")
    problems: list[tuple[str, str, str]] = []  # (field, message, code)
    if style == LINK_STYLE:
        if not button.get("url"):
            problems.append(("url", "A link button needs a url", "BUTTON_COMPONENT_URL_REQUIRED"))
        if button.get("custom_id"):
            problems.append(("custom_id", "A link button cannot have a custom_id", "BUTTON_COMPONENT_CUSTOM_ID_NOT_ALLOWED"))
    elif style == PREMIUM_STYLE:
        if not button.get("sku_id"):
            problems.append(("sku_id", "A premium button needs a sku_id", "BUTTON_COMPONENT_SKU_ID_REQUIRED"))
    else:
        if not button.get("custom_id"):
            problems.append(("custom_id", "This field is required", "BUTTON_COMPONENT_CUSTOM_ID_REQUIRED"))
        if not button.get("label") and not button.get("emoji"):
            problems.append(("label", "A button needs a label or an emoji", "BUTTON_COMPONENT_LABEL_OR_EMOJI_REQUIRED"))
    return [FieldError(path + (name,), message, code) for name, message, code in problems]


def check_modal(data: dict[str, Any]) -> list[FieldError]:
    errors = _check_components(data.get("components") or [], v2=True, prefix=("data", "components"))
    if len(data.get("components") or []) > MAX_MODAL_COMPONENTS:
        errors.append(_too_long(("data", "components"), MAX_MODAL_COMPONENTS))
    return errors


def check_commands(commands: list[dict[str, Any]]) -> list[FieldError]:
    """Names, descriptions and option order of a bulk overwrite."""
    errors: list[FieldError] = []
    seen: set[tuple[str, int]] = set()
    for i, cmd in enumerate(commands):
        kind = cmd.get("type") or 1
        name = str(cmd.get("name", ""))
        key = (name, kind)
        if key in seen:
            message = "Application command names must be unique"
            errors.append(FieldError((i, "name"), message, "APPLICATION_COMMANDS_DUPLICATE_NAME"))
        seen.add(key)
        if kind == 1:
            errors += _check_chat_input(cmd, (i,))
    return errors


def _check_chat_input(node: dict[str, Any], path: tuple[str | int, ...]) -> list[FieldError]:
    errors: list[FieldError] = []
    name = str(node.get("name", ""))
    if not _NAME.match(name) or name != name.lower():
        errors.append(FieldError(path + ("name",), "Command name is invalid", "APPLICATION_COMMAND_INVALID_NAME"))
    description = node.get("description") or ""
    if not 1 <= len(description) <= 100:
        message = "Must be between 1 and 100 in length."
        errors.append(FieldError(path + ("description",), message, "BASE_TYPE_BAD_LENGTH"))
    options = node.get("options") or []
    optional_seen = False
    names: set[str] = set()
    for j, opt in enumerate(options):
        opath = path + ("options", j)
        if opt.get("name") in names:
            message = "Option names must be unique"
            errors.append(FieldError(opath + ("name",), message, "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS"))
        names.add(opt.get("name"))
        if opt.get("type") in (1, 2):
            errors += _check_chat_input(opt, opath)
            continue
        if opt.get("required"):
            if optional_seen:
                message = "Required options must be placed before non-required options"
                errors.append(FieldError(opath + ("required",), message, "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID"))
        else:
            optional_seen = True
        errors += _check_chat_input({**opt, "options": []}, opath)
    return errors
