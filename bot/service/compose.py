"""From a typed prompt to what a job runs: description, negative prompt, model, size, steps, guidance, seed.

Layers, the later winning: the model's catalog entry, the user's /settings, their /prefer suffix, their
custom options, and the parameters typed in the prompt. Pure: no store, no engine calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bot.engine import Catalog, CatalogError, ModelSpec
from bot.service.prompt import PromptError, parse_prompt

MAX_ASPECT = 4  # either way: beyond 4:1 the models we serve draw repeated, broken subjects
ANIME_MODEL = "niji"  # a catalog entry of this name is what --niji asks for
DEFAULT_STYLIZE = 100


@dataclass(frozen=True)
class Defaults:
    """A user's /settings and /prefer: None means "the catalog's"."""
    model: str | None = None
    stylize: int | None = None
    quality: float | None = None
    suffix: str = ""
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    prompt: str
    negative_prompt: str
    model: str
    params: dict[str, Any]  # width, height, steps, guidance; stylize, quality, chaos, tile, ar when set
    seed: int | None  # None: a random one
    repeat: int


def plan_job(text: str, catalog: Catalog, default_model: str, defaults: Defaults = Defaults()) -> Plan:
    typed = parse_prompt(text, defaults.options)
    suffix = parse_prompt(defaults.suffix, defaults.options) if defaults.suffix.strip() else None
    values = {**(suffix.values if suffix else {}), **typed.values}
    prompt = " ".join(part for part in (typed.text, suffix.text if suffix else "") if part)
    spec = _model(values, catalog, default_model, defaults)
    stylize = values.get("stylize", defaults.stylize)
    quality = values.get("quality", defaults.quality)
    width, height = spec.width, spec.height
    params: dict[str, Any] = {}
    if "ar" in values:
        width, height = size_for(spec, *values["ar"])
        params["ar"] = "{}:{}".format(*values["ar"])
    if "steps" in values and "quality" in values:
        raise PromptError("`--steps` and `--quality` both set the number of steps: give one of them.")
    steps = values["steps"] if "steps" in values else max(1, round(spec.steps * (quality or 1.0)))
    params.update(width=width, height=height, steps=steps, guidance=guidance_for(spec, stylize))
    if stylize is not None:
        params["stylize"] = stylize
    if quality is not None and "steps" not in values:
        params["quality"] = quality
    for key in ("chaos", "tile"):
        if key in values:
            params[key] = values[key]
    return Plan(prompt=prompt, negative_prompt=values.get("no", ""), model=spec.name, params=params,
                seed=values.get("seed"), repeat=values.get("repeat", 1))


def size_for(spec: ModelSpec, across: int, down: int) -> tuple[int, int]:
    """The model's pixel budget in the shape W:H, both sides multiples of 8 (what the UNet needs)."""
    ratio = across / down
    if max(ratio, 1 / ratio) > MAX_ASPECT:
        raise PromptError(f"`--ar {across}:{down}` is too {'wide' if ratio > 1 else 'tall'}: model `{spec.name}` "
                          f"takes ratios up to {MAX_ASPECT}:1 and 1:{MAX_ASPECT}.")
    budget = spec.width * spec.height
    width = max(8, round(math.sqrt(budget * ratio) / 8) * 8)
    height = max(8, round(math.sqrt(budget / ratio) / 8) * 8)
    return width, height


def guidance_for(spec: ModelSpec, stylize: int | None) -> float:
    """--stylize 0–1000 -> guidance: 100 (the default) is the catalog's guidance, 0 half of it, 1000 twice.

    Guidance-free models (catalog guidance 0, the turbo ones) stay at 0: stylize changes nothing there.
    """
    s = DEFAULT_STYLIZE if stylize is None else stylize
    factor = 0.5 + 0.5 * s / 100 if s <= 100 else 1 + (s - 100) / 900
    return round(spec.guidance * factor, 3)


def shared_noise(chaos: int | None) -> float:
    """--chaos -> the share of starting noise the four images have in common (0: independent images)."""
    return 0.0 if chaos is None else round(0.75 * (100 - chaos) / 100, 4)


def _model(values: dict[str, Any], catalog: Catalog, default_model: str, defaults: Defaults) -> ModelSpec:
    if values.get("niji"):
        if "model" in values:
            raise PromptError("`--niji` and `--model` both pick the model: give one of them.")
        if ANIME_MODEL not in catalog.models:
            raise PromptError(f"`--niji` asks for an anime model, and this server has none. Pick one of "
                              f"{_names(catalog)} with `--model NAME`.")
        return catalog.models[ANIME_MODEL]
    if "model" in values:
        try:
            return catalog.get(values["model"])
        except CatalogError:
            raise PromptError(f"`--model {values['model']}` is not offered here; "
                              f"pick one of {_names(catalog)}.") from None
    # A model chosen in /settings that an admin has since disabled falls back to the server's default.
    return catalog.models.get(defaults.model or "", catalog.models.get(default_model) or catalog.get(default_model))


def _names(catalog: Catalog) -> str:
    return ", ".join(f"`{name}`" for name in catalog.names)



def parameters_of(params: dict[str, Any], negative_prompt: str, model: str) -> str:
    """A job's parameters written back in the prompt language, for Remix and 📋: parsing them gives them back."""
    parts = _look(params, negative_prompt)
    if "quality" not in params and "steps" in params:
        parts.append(f"--steps {params['steps']}")
    return " ".join([*parts, f"--model {model}"])


def parameters_summary(params: dict[str, Any], negative_prompt: str) -> str:
    """The parameters that change how a job looks, for its message (`--ar 2:1 --no snow --tile`); may be empty."""
    return " ".join(_look(params, negative_prompt))


def _look(params: dict[str, Any], negative_prompt: str) -> list[str]:
    parts = [f"--ar {params['ar']}"] if "ar" in params else []
    if negative_prompt:
        parts.append(f"--no {negative_prompt}")
    if "stylize" in params:
        parts.append(f"--stylize {params['stylize']}")
    if "quality" in params:
        parts.append(f"--quality {params['quality']:g}")
    if "chaos" in params:
        parts.append(f"--chaos {params['chaos']}")
    if params.get("tile"):
        parts.append("--tile")
    return parts
