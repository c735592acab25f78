"""What a Discord client puts in interaction ``data``: slash options and modal submissions.

The client validates before sending (a user cannot omit a required option or pick a value
outside the choices), so invalid input raises ClientRefused instead of reaching the bot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .models import Attachment, Channel, User

if TYPE_CHECKING:
    from .server import LocalDiscord

SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 3, 4, 5, 6, 7, 8, 9, 10, 11
TEXT_INPUT, STRING_SELECT, TEXT_DISPLAY, LABEL = 4, 3, 10, 18


def _refused(message: str) -> Exception:
    from .server import ClientRefused

    return ClientRefused(message)


def build_options(
    local: LocalDiscord, command: dict[str, Any], path: list[str], values: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``data.options`` (nested for subcommands) and ``data.resolved`` for a slash command."""
    declared = command.get("options") or []
    if path:
        subs = [o for o in declared if o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP)]
        sub = next((o for o in subs if o.get("name") == path[0]), None)
        if sub is None:
            raise _refused(f"/{command['name']} has no subcommand {path[0]!r}")
        inner, resolved = build_options(local, sub, path[1:], values)
        return [{"name": sub["name"], "type": sub["type"], "options": inner}], resolved
    if any(o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in declared):
        raise _refused(f"/{command['name']} needs a subcommand: one of {[o['name'] for o in declared]}")
    by_name = {o["name"]: o for o in declared}
    unknown = set(values) - set(by_name)
    if unknown:
        raise _refused(f"/{command['name']} has no options {sorted(unknown)} (it has {sorted(by_name)})")
    missing = [n for n, o in by_name.items() if o.get("required") and n not in values]
    if missing:
        raise _refused(f"/{command['name']} requires {missing}")
    options: list[dict[str, Any]] = []
    resolved: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        spec = by_name[name]
        options.append({"name": name, "type": spec["type"], "value": _option_value(local, spec, value, resolved)})
    return options, resolved


def _option_value(local: LocalDiscord, spec: dict[str, Any], value: Any, resolved: dict[str, dict[str, Any]]) -> Any:
    kind, name = spec["type"], spec["name"]
    if kind == STRING:
        if not isinstance(value, str):
            raise _refused(f"option {name} takes a string, not {value!r}")
        lo, hi = spec.get("min_length", 0), spec.get("max_length", 6000)
        if not lo <= len(value) <= hi:
            raise _refused(f"option {name} must be {lo}..{hi} characters long")
    elif kind in (INTEGER, NUMBER):
        ok = isinstance(value, int) if kind == INTEGER else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            raise _refused(f"option {name} takes {'an integer' if kind == INTEGER else 'a number'}, not {value!r}")
        if spec.get("min_value") is not None and value < spec["min_value"]:
            raise _refused(f"option {name} must be >= {spec['min_value']}")
        if spec.get("max_value") is not None and value > spec["max_value"]:
            raise _refused(f"option {name} must be <= {spec['max_value']}")
    elif kind == BOOLEAN:
        if not isinstance(value, bool):
            raise _refused(f"option {name} takes true/false, not {value!r}")
    elif kind in (USER, MENTIONABLE) and isinstance(value, User):
        member = local.guild.members.get(value.id)
        resolved.setdefault("users", {})[str(value.id)] = value.to_json()
        if member is not None:
            resolved.setdefault("members", {})[str(value.id)] = {
                **member.to_json(with_user=False), "permissions": str(local.permissions_of(value))
            }
        return str(value.id)
    elif kind in (CHANNEL, MENTIONABLE, ROLE):
        ident = int(value.id if isinstance(value, Channel) else value)
        if kind == CHANNEL and ident in local.channels:
            channel = local.channels[ident]
            resolved.setdefault("channels", {})[str(ident)] = {
                "id": str(ident), "name": channel.name, "type": channel.type,
                "permissions": str(local.permissions_of(local.bot)), "flags": 0,
            }
        elif ident in local.guild.roles:
            resolved.setdefault("roles", {})[str(ident)] = local.guild.roles[ident].to_json()
        else:
            raise _refused(f"option {name}: no such {'channel' if kind == CHANNEL else 'role'} {ident}")
        return str(ident)
    elif kind == ATTACHMENT:
        # The user picks a file in the client (LocalDiscord.upload); the client checks its size
        # against the guild's upload limit before it sends anything.
        if not isinstance(value, Attachment) or local.uploads.get(value.id) is not value:
            what = f"attachment {value.filename!r} of a message" if isinstance(value, Attachment) else repr(value)[:80]
            raise _refused(f"option {name} takes a file uploaded with LocalDiscord.upload(), not {what}")
        if value.size > local.attachment_size_limit:
            raise _refused(
                f"option {name}: {value.filename} is {value.size} bytes, over the upload limit of "
                f"{local.attachment_size_limit}"
            )
        resolved.setdefault("attachments", {})[str(value.id)] = value.to_json()
        return str(value.id)
    else:
        raise _refused(f"option {name}: LocalDiscord cannot send option type {kind} yet")
    choices = spec.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise _refused(f"option {name} must be one of {[c['value'] for c in choices]}")
    return value


def modal_submission(modal: dict[str, Any], values: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``components`` of a modal submit, mirroring the layout the bot sent."""
    seen: set[str] = set()

    def field(component: dict[str, Any]) -> dict[str, Any]:
        custom_id = component["custom_id"]
        seen.add(custom_id)
        out: dict[str, Any] = {"type": component["type"], "custom_id": custom_id}
        if "id" in component:
            out["id"] = component["id"]
        if component["type"] == TEXT_INPUT:
            value = str(values.get(custom_id, component.get("value") or ""))
            if component.get("required", True) and not value:
                raise _refused(f"modal field {custom_id!r} is required")
            lo, hi = component.get("min_length", 0), component.get("max_length", 4000)
            if value and not lo <= len(value) <= hi:
                raise _refused(f"modal field {custom_id!r} must be {lo}..{hi} characters long")
            out["value"] = value
        elif component["type"] == STRING_SELECT:
            chosen = values.get(custom_id, [])
            out["values"] = [chosen] if isinstance(chosen, str) else list(chosen)
        else:
            raise _refused(f"LocalDiscord cannot fill modal component type {component['type']} yet")
        return out

    result: list[dict[str, Any]] = []
    for i, top in enumerate(modal.get("components") or []):
        ident = top.get("id", i + 1)
        if top["type"] == 1:
            result.append({"type": 1, "id": ident, "components": [field(c) for c in top.get("components", [])]})
        elif top["type"] == LABEL:
            result.append({"type": LABEL, "id": ident, "component": field(top["component"])})
        elif top["type"] == TEXT_DISPLAY:
            result.append({"type": TEXT_DISPLAY, "id": ident})
    unknown = set(values) - seen
    if unknown:
        raise _refused(f"the modal has no fields {sorted(unknown)} (it has {sorted(seen)})")
    return result
