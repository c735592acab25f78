"""Discord's official OpenAPI 3.1 description: route matching and request validation.

The spec file in ``discord-api-spec/`` is an unchanged copy; the few places where the real
API accepts more than the spec says are relaxed in memory (``_relax``), each with its reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from .errors import FieldError

SPEC_PATH = Path(__file__).with_name("discord-api-spec") / "openapi.json"
_URI = "urn:discord-openapi"

_VALIDATOR_CODES = {
    "type": "BASE_TYPE_INVALID",
    "maxLength": "BASE_TYPE_MAX_LENGTH",
    "minLength": "BASE_TYPE_MIN_LENGTH",
    "maxItems": "BASE_TYPE_MAX_LENGTH",
    "minItems": "BASE_TYPE_MIN_LENGTH",
    "required": "BASE_TYPE_REQUIRED",
    "enum": "BASE_TYPE_CHOICES",
    "const": "BASE_TYPE_CHOICES",
    "maximum": "NUMBER_TYPE_MAX",
    "minimum": "NUMBER_TYPE_MIN",
    "pattern": "STRING_TYPE_REGEX",
}


@dataclass(frozen=True)
class Operation:
    """A matched route: the spec's path template, its path parameters and the operation object."""

    method: str
    template: str
    params: dict[str, str]
    spec: dict[str, Any]

    @property
    def needs_bot_token(self) -> bool:
        # ``security: [{}, {"BotToken": []}]`` means the token in the path is enough.
        security = self.spec.get("security", [])
        return bool(security) and {} not in security

    @property
    def oauth_scopes(self) -> frozenset[str] | None:
        """The scopes a Bearer token needs here (``security: [{"OAuth2": ["guilds"]}]``); None: no Bearer."""
        for requirement in self.spec.get("security", []):
            if "OAuth2" in requirement:
                return frozenset(requirement["OAuth2"])
        return None

    def body_content_types(self) -> set[str]:
        return set(self.spec.get("requestBody", {}).get("content", {}))


def _relax(doc: dict[str, Any]) -> None:
    """Where Discord accepts more than its spec declares, accept it too (and only there)."""
    schemas = doc["components"]["schemas"]
    # Discord parses snowflakes from JSON integers as well as strings; discord.py sends
    # attachment ids (``{"id": 0}``) and allowed_mentions user/role ids as integers.
    snowflake = schemas["SnowflakeType"]
    schemas["SnowflakeType"] = {
        "oneOf": [snowflake, {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}],
    }
    # Permission bitsets are documented as strings and discord.py sends
    # ``default_member_permissions`` as a string; the spec's request schemas say integer.
    for name, schema in schemas.items():
        prop = schema.get("properties", {}).get("default_member_permissions")
        if name.endswith("Request") or name.endswith("RequestPartial"):
            if prop is not None and "integer" in (prop.get("type") or []):
                schema["properties"]["default_member_permissions"] = {
                    "oneOf": [prop, {"type": "string", "pattern": r"^[0-9]{1,20}$"}],
                }


@lru_cache(maxsize=1)
def _load(path: str) -> tuple[dict[str, Any], Registry]:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    _relax(doc)
    registry = Registry().with_resource(_URI, DRAFT202012.create_resource(doc))
    return doc, registry


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class DiscordSpec:
    """Matches requests to operations and validates them, reporting Discord-style field errors."""

    def __init__(self, path: Path = SPEC_PATH) -> None:
        self.doc, self.registry = _load(str(path))
        self._routes: list[tuple[re.Pattern[str], str, int]] = []
        for template in self.doc["paths"]:
            names = re.findall(r"\{([^}]+)\}", template)
            regex = "^" + re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
            self._routes.append((re.compile(regex), template, len(names)))
        # A literal segment beats a parameter: /users/@me before /users/{user_id}.
        self._routes.sort(key=lambda r: r[2])
        self._validators: dict[str, Draft202012Validator] = {}

    def version(self) -> str:
        return (SPEC_PATH.parent / "VERSION").read_text().split()[0]

    # -- routes -------------------------------------------------------------------------------

    def match(self, method: str, path: str) -> Operation | None | str:
        """The operation for ``path`` (without /api/v10). None: no such route;
        the template string: the route exists but not with this method."""
        method = method.lower()
        for regex, template, _ in self._routes:
            found = regex.match(path)
            if found is None:
                continue
            item = self.doc["paths"][template]
            if method not in item:
                return template
            return Operation(method.upper(), template, found.groupdict(), item[method])
        return None

    def validate_params(self, op: Operation) -> list[FieldError]:
        errors: list[FieldError] = []
        declared = self.doc["paths"][op.template].get("parameters", [])
        for param in declared:
            if param.get("in") != "path" or param["name"] not in op.params:
                continue
            value: Any = op.params[param["name"]]
            schema = param.get("schema", {})
            if "SnowflakeType" in json.dumps(schema) and not re.fullmatch(r"0|[1-9][0-9]*", value):
                errors.append(FieldError((param["name"],), f'Value "{value}" is not snowflake.', "NUMBER_TYPE_COERCE"))
        return errors

    # -- bodies -------------------------------------------------------------------------------

    def has_body(self, op: Operation) -> bool:
        return "requestBody" in op.spec

    def validate_body(self, op: Operation, body: Any, *, multipart: bool = False) -> list[FieldError]:
        kind = "multipart/form-data" if multipart else "application/json"
        content = op.spec.get("requestBody", {}).get("content", {})
        if kind not in content:
            return [FieldError((), f"{op.method} {op.template} takes no {kind} body", "CONTENT_TYPE_INVALID")]
        pointer = "#/" + _pointer("paths", op.template, op.method.lower(), "requestBody", "content", kind, "schema")
        return self.validate(pointer, body)

    def validate_response(self, op: Operation, status: int, body: Any) -> list[FieldError]:
        """Self-check: is an answer of this fake shaped as the spec says Discord answers?"""
        responses = op.spec.get("responses", {})
        if str(status) not in responses:
            return []
        if "application/json" not in responses[str(status)].get("content", {}):
            return []
        pointer = "#/" + _pointer(
            "paths", op.template, op.method.lower(), "responses", str(status), "content", "application/json", "schema"
        )
        return self.validate(pointer, body)

    def validate_schema(self, name: str, instance: Any) -> list[FieldError]:
        return self.validate("#/components/schemas/" + name, instance)

    def validate(self, pointer: str, instance: Any) -> list[FieldError]:
        validator = self._validators.get(pointer)
        if validator is None:
            validator = Draft202012Validator({"$ref": _URI + pointer}, registry=self.registry)
            self._validators[pointer] = validator
        errors: list[FieldError] = []
        for error in validator.iter_errors(instance):
            for leaf in _explain(error):
                path = tuple(leaf.absolute_path)
                message = _message(leaf)
                errors.append(FieldError(path, message, _VALIDATOR_CODES.get(str(leaf.validator), "BASE_TYPE_INVALID")))
        return _dedupe(errors)


def _message(error: ValidationError) -> str:
    """Discord's wording where it has one; jsonschema's otherwise, without the whole value."""
    kind, limit = error.validator, error.validator_value
    if kind == "required":
        return "This field is required"
    if kind in ("maxLength", "maxItems"):
        return f"Must be {limit} or fewer in length."
    if kind in ("minLength", "minItems"):
        return f"Must be {limit} or more in length."
    if kind == "maximum":
        return f"int value should be less than or equal to {limit}."
    if kind == "minimum":
        return f"int value should be greater than or equal to {limit}."
    if kind == "type":
        types = limit if isinstance(limit, list) else [limit]
        return f"Value {_short(error.instance)} is not of type {' or '.join(map(str, types))}."
    if kind in ("enum", "const"):
        return f"Value {_short(error.instance)} is not one of {limit if kind == 'enum' else [limit]}."
    return error.message if len(error.message) < 300 else error.message[:297] + "..."


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dedupe(errors: Iterable[FieldError]) -> list[FieldError]:
    seen: dict[tuple[Any, ...], FieldError] = {}
    for err in errors:
        seen.setdefault((err.path, err.message), err)
    return list(seen.values())


def _explain(error: ValidationError) -> list[ValidationError]:
    """The errors worth showing for one failure: for oneOf/anyOf, the branch the body meant.

    A branch whose ``type`` discriminator (enum/const) rejects the body is not what the body
    meant; among the rest, the one that got furthest into the body wins.
    """
    if not error.context:
        return [error]
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)

    def discriminator_failed(subs: list[ValidationError]) -> bool:
        return any(
            len(s.relative_path) == 1 and s.relative_path[0] == "type" and s.validator in ("enum", "const", "oneOf")
            for s in subs
        ) or any(len(s.relative_path) == 0 and s.validator == "type" for s in subs)

    candidates = [b for b in branches.values() if not discriminator_failed(b)] or list(branches.values())
    if len(candidates) != 1:
        # Ambiguous: keep the union's own message, it names the field at least.
        depth = max(max(len(s.relative_path) for s in b) for b in candidates)
        deepest = [b for b in candidates if max(len(s.relative_path) for s in b) == depth]
        if len(deepest) != 1 or depth == 0:
            return [error]
        candidates = deepest
    leaves: list[ValidationError] = []
    for sub in candidates[0]:
        leaves.extend(_explain(sub))
    return leaves
