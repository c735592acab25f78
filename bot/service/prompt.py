"""Midjourney's prompt language: `a red fox --ar 3:2 --seed 7 --no snow, trees`.

A pure parser: text in, the description and the typed parameters out, or a `PromptError` whose message
names the parameter, the value and what is allowed. It knows no models and no user; `compose.py` turns its
result into a job. Rules, as on Midjourney:

- the description comes first, then the parameters; words after a parameter's value are an error, so a
  typo can never end up in the prompt sent to the model;
- a parameter starts with `--`, or with an em/en dash that phones put in place of `--` (`—ar`);
- image links (Discord's CDN only, checked later) at the very start are image prompts;
- `--no` takes everything up to the next parameter, `--sref` one or more image links, a style code or
  `random`; `--tile` and `--niji` take no value;
- a parameter given twice is an error (which one was meant is a guess we refuse to make);
- `--<name>` of one of the user's custom options (/prefer option) expands to its stored parameters;
  parameters typed in the prompt win over the option's.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Mapping

from bot.recipe import MAX_IMAGE_WEIGHT, MAX_IMAGES, MAX_REFERENCE_WEIGHT, MAX_SEED
from bot.text import shorten

MAX_STEPS = 100
MAX_REPEAT = 4
QUALITIES = (0.25, 0.5, 1.0, 2.0)

# canonical name -> (aliases, what its value is, one line for the list of known parameters)
PARAMETERS: dict[str, tuple[tuple[str, ...], str]] = {
    "ar": (("aspect",), "W:H"),
    "seed": ((), f"0–{MAX_SEED}"),
    "no": ((), "words, to leave out"),
    "chaos": (("c",), "0–100"),
    "stylize": (("s",), "0–1000"),
    "steps": ((), f"1–{MAX_STEPS}"),
    "quality": (("q",), ".25|.5|1|2"),
    "model": (("v", "version"), "NAME"),
    "tile": ((), "no value"),
    "repeat": (("r",), f"1–{MAX_REPEAT}"),
    "niji": ((), "no value"),
    "iw": ((), f"0–{MAX_IMAGE_WEIGHT:g}"),
    "sref": ((), "image link, style code or random"),
    "sw": ((), f"0–{MAX_REFERENCE_WEIGHT}"),
    "oref": ((), "image link"),
    "ow": ((), f"0–{MAX_REFERENCE_WEIGHT}"),
}
_ALIASES = {alias: name for name, (aliases, _) in PARAMETERS.items() for alias in (name, *aliases)}
_NO_VALUE = {"tile", "niji"}
_OPTION_NAME = re.compile(r"^[a-z0-9_-]{1,32}$")


class PromptError(ValueError):
    """The prompt cannot be used; the message says what was wrong and how to write it."""


@dataclass(frozen=True)
class Parsed:
    text: str  # the description, parameters removed, whitespace normalised
    values: dict[str, Any] = field(default_factory=dict)  # canonical name -> checked value
    links: tuple[str, ...] = ()  # image prompts: the links the prompt starts with


def is_link(token: str) -> bool:
    return token.lower().startswith(("http://", "https://"))


def normalise(text: str) -> str:
    """Text as typed, made safe to tokenise and store: NFC, no lone surrogates (a client can send them; they
    are not text), control characters turned into spaces."""
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").replace("\ufffd", "")
    text = unicodedata.normalize("NFC", text)
    return "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)


def known_parameters() -> str:
    return ", ".join(f"--{name}" + (f"/--{'/--'.join(aliases)}" if aliases else "")
                     for name, (aliases, _) in PARAMETERS.items())


def is_flag(token: str) -> bool:
    return token.startswith("--") or (len(token) > 1 and token[0] in "—–" and token[1].isalpha())


def parse_prompt(text: str, options: Mapping[str, str] | None = None) -> Parsed:
    """The description and parameters of `text`; `options` are the user's custom options (name -> text)."""
    tokens = text.split()
    links = tuple(token for token in tokens[:next((i for i, t in enumerate(tokens) if not is_link(t)), len(tokens))])
    tokens = tokens[len(links):]
    if len(links) > MAX_IMAGES:
        raise PromptError(f"The prompt starts with {len(links)} image links; the most is {MAX_IMAGES}.")
    first = next((i for i, token in enumerate(tokens) if is_flag(token)), len(tokens))
    typed, from_options = _parameters(tokens[first:], options or {})
    return Parsed(" ".join(tokens[:first]), {**from_options, **typed}, links)


def parse_option_value(text: str) -> dict[str, Any]:
    """A custom option's stored text: parameters only, no description, no other custom options."""
    parsed = parse_prompt(text)
    if parsed.links or {"sref", "oref"} & set(parsed.values):  # Discord's links expire: no stored pictures
        raise PromptError("A custom option cannot hold image links (Discord's links expire). Keep the weights, "
                          "e.g. `--iw 2 --sw 300`, or a style code, `--sref 1234`.")
    if parsed.text:
        raise PromptError(f"A custom option holds parameters only, but `{_clip(parsed.text)}` is not one. "
                          "Write it like `--ar 2:3 --stylize 250`.")
    if not parsed.values:
        raise PromptError("A custom option needs at least one parameter, e.g. `--ar 2:3 --stylize 250`.")
    return parsed.values


def check_option_name(name: str) -> str:
    name = name.strip().lstrip("-—–").lower()
    if not _OPTION_NAME.match(name):
        raise PromptError(f"`{_clip(name)}` cannot name an option: use 1–32 of a-z, 0-9, _ and -.")
    if name in _ALIASES:
        raise PromptError(f"`--{name}` is already a parameter; pick another name for your option.")
    return name


def _parameters(tokens: list[str], options: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    typed: dict[str, Any] = {}
    from_options: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        flag = tokens[i]
        raw_name = flag.lstrip("-—–")
        name = _ALIASES.get(raw_name.lower())
        i += 1
        if name is None:
            if raw_name.lower() in options:
                from_options.update(parse_option_value(options[raw_name.lower()]))
                i = _no_stray_words(tokens, i, flag)
                continue
            raise PromptError(_unknown(flag, raw_name, options))
        if name in typed:
            raise PromptError(f"`--{name}` is given twice; give it once.")
        if name == "no":
            start = i
            while i < len(tokens) and not is_flag(tokens[i]):
                i += 1
            words = " ".join(tokens[start:i]).strip(" ,")
            if not words:
                raise PromptError("`--no` needs the things to leave out, e.g. `--no text, people`.")
            typed[name] = words
            continue
        if name in ("sref", "oref"):
            start = i
            while i < len(tokens) and not is_flag(tokens[i]):
                i += 1
            typed[name] = _reference(name, flag, tokens[start:i])
            continue
        if name in _NO_VALUE:
            typed[name] = True
            if name == "niji" and i < len(tokens) and re.fullmatch(r"\d{1,2}", tokens[i]):
                i += 1  # `--niji 6`: Midjourney's version number; there is one anime model here at most
            i = _no_stray_words(tokens, i, flag)
            continue
        if i >= len(tokens) or is_flag(tokens[i]):
            raise PromptError(f"`{flag}` needs a value ({PARAMETERS[name][1]}), e.g. {_example(name)}.")
        typed[name] = _value(name, flag, tokens[i])
        i = _no_stray_words(tokens, i + 1, f"{flag} {tokens[i]}")
    return typed, from_options


def _no_stray_words(tokens: list[str], i: int, after: str) -> int:
    if i < len(tokens) and not is_flag(tokens[i]):
        stray = " ".join(tokens[i:]).split(" --")[0]
        raise PromptError(f"`{_clip(stray)}` comes after `{_clip(after)}`: write the description first and the "
                          "`--` parameters at the end, e.g. `a red fox in the snow --ar 3:2`.")
    return i


def _value(name: str, flag: str, raw: str) -> Any:
    shown = f"`{flag} {_clip(raw)}`"
    if name == "ar":
        match = re.fullmatch(r"(\d{1,5}):(\d{1,5})", raw)
        if not match or int(match[1]) < 1 or int(match[2]) < 1:
            raise PromptError(f"{shown} is not an aspect ratio: write two whole numbers from 1 up, like `--ar 16:9`.")
        return int(match[1]), int(match[2])
    if name == "quality":
        try:
            value = float(raw)
        except ValueError:
            value = None
        if value not in QUALITIES:
            raise PromptError(f"{shown} is not a quality: use .25, .5, 1 or 2 (a share of the model's steps).")
        return value
    if name == "model":
        return raw.lower()
    if name == "iw":
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not 0 <= value <= MAX_IMAGE_WEIGHT:
            raise PromptError(f"{shown} is out of range: `--iw` takes a number from 0 to {MAX_IMAGE_WEIGHT:g} "
                              "(how much the image prompt counts; 1 is the default).")
        return value
    low, high = {"seed": (0, MAX_SEED), "chaos": (0, 100), "stylize": (0, 1000), "steps": (1, MAX_STEPS),
                 "repeat": (1, MAX_REPEAT), "sw": (0, MAX_REFERENCE_WEIGHT), "ow": (0, MAX_REFERENCE_WEIGHT)}[name]
    if not re.fullmatch(r"\d{1,12}", raw) or not low <= int(raw) <= high:
        raise PromptError(f"{shown} is out of range: `--{name}` takes a whole number from {low} to {high}.")
    return int(raw)


def _reference(name: str, flag: str, values: list[str]) -> tuple[str, ...] | int | str:
    """--sref: image links, a style code or `random`; --oref: one image link."""
    what = "image links, a style code or `random`" if name == "sref" else "one image link"
    if not values:
        raise PromptError(f"`{flag}` needs {what}, e.g. `{flag} https://cdn.discordapp.com/attachments/…/cat.png`.")
    if name == "sref" and len(values) == 1 and not is_link(values[0]):
        if values[0].lower() == "random":
            return "random"
        if re.fullmatch(r"\d{1,10}", values[0]) and int(values[0]) <= MAX_SEED:
            return int(values[0])
    if not all(is_link(value) for value in values) or (name == "oref" and len(values) > 1):
        codes = f" (style codes are 0–{MAX_SEED})" if name == "sref" else ""
        raise PromptError(f"`{flag} {_clip(' '.join(values))}` is not {what}: write `{flag}` and then "
                          f"{what}{codes}.")
    if len(values) > MAX_IMAGES:
        raise PromptError(f"`{flag}` has {len(values)} images; the most is {MAX_IMAGES}.")
    return tuple(values)


def _unknown(flag: str, raw_name: str, options: Mapping[str, str]) -> str:
    if not raw_name:
        return f"`{_clip(flag)}` has no parameter name after the dashes. Known parameters: {known_parameters()}."
    mine = f" Your custom options: {', '.join('--' + o for o in sorted(options))}." if options else ""
    return f"`{_clip(flag)}` is not a parameter this bot knows. Known parameters: {known_parameters()}.{mine}"


def _example(name: str) -> str:
    return {"ar": "`--ar 3:2`", "seed": "`--seed 1234`", "chaos": "`--chaos 50`", "stylize": "`--stylize 250`",
            "steps": "`--steps 30`", "quality": "`--quality .5`", "model": "`--model tiny`",
            "repeat": "`--repeat 2`", "iw": "`--iw 2`", "sw": "`--sw 250`", "ow": "`--ow 150`"}.get(name, f"`--{name}`")


def _clip(text: str, limit: int = 60) -> str:
    return shorten(text.replace("`", "'"), limit)
