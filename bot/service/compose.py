"""From a typed prompt to what a job runs: description, negative prompt, model, size, steps, guidance, seed.

Layers, the later winning: the model's catalog entry, the user's /settings, their /prefer suffix, their
custom options, and the parameters typed in the prompt. Pure: no store, no engine calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from bot.engine import Catalog, CatalogError, ModelSpec
from bot.engine.loras import LoraError, parse_loras
from bot.recipe import Recipe, random_seed
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
class Links:
    """The image links a prompt gave, not fetched yet: image prompts, --sref and --oref."""
    image: tuple[str, ...] = ()
    style: tuple[str, ...] = ()
    object: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.image or self.style or self.object)


@dataclass(frozen=True)
class Plan:
    recipe: Recipe  # its seed is resolved: the typed one, or a random one
    repeat: int  # --repeat: this many grids
    seed_typed: bool  # --seed given: every repeated grid uses it; otherwise each gets its own
    links: Links = Links()  # the recipe's pictures, fetched and filled in by admission

    def recipes(self) -> list[Recipe]:
        """One recipe per grid of a --repeat."""
        if self.seed_typed:
            return [self.recipe] * self.repeat
        return [self.recipe, *(replace(self.recipe, seed=random_seed()) for _ in range(self.repeat - 1))]


def plan_job(text: str, catalog: Catalog, default_model: str, defaults: Defaults = Defaults()) -> Plan:
    text, typed_loras = _loras(text)
    suffix_text, suffix_loras = _loras(defaults.suffix)
    typed = parse_prompt(text, defaults.options)
    suffix = parse_prompt(suffix_text, defaults.options) if suffix_text.strip() else None
    values = {**(suffix.values if suffix else {}), **typed.values}
    prompt = " ".join(part for part in (typed.text, suffix.text if suffix else "") if part)
    spec = _model(values, catalog, default_model, defaults)
    stylize = values.get("stylize", defaults.stylize)
    quality = values.get("quality", defaults.quality)
    width, height = size_for(spec, *values["ar"]) if "ar" in values else (spec.width, spec.height)
    if "steps" in values and "quality" in values:
        raise PromptError("`--steps` and `--quality` both set the number of steps: give one of them.")
    steps = values["steps"] if "steps" in values else max(1, round(spec.steps * (quality or 1.0)))
    recipe = Recipe(
        prompt=prompt, negative_prompt=values.get("no", ""), model=spec.name,
        seed=values["seed"] if "seed" in values else random_seed(),
        width=width, height=height, steps=steps, guidance=guidance_for(spec, stylize),
        tile=bool(values.get("tile")), chaos=values.get("chaos"),
        ar="{}:{}".format(*values["ar"]) if "ar" in values else None, stylize=stylize,
        quality=quality if "steps" not in values else None,
        loras=tuple({**dict(suffix_loras), **dict(typed_loras)}.items()),  # what was typed wins
        image_weight=values.get("iw"), style_weight=values.get("sw"), object_weight=values.get("ow"),
        style_code=_style_code(values.get("sref")))
    links = Links(image=typed.links, style=values["sref"] if isinstance(values.get("sref"), tuple) else (),
                  object=values.get("oref", ()))
    return Plan(recipe=recipe, repeat=values.get("repeat", 1), seed_typed="seed" in values, links=links)


def _style_code(sref: Any) -> int | None:
    """--sref <code> is that style; --sref random draws a code, shown with the grid so it can be reused."""
    if sref == "random":
        return random_seed()
    return sref if isinstance(sref, int) else None


def _loras(text: str) -> tuple[str, tuple[tuple[str, float], ...]]:
    """The text without its <lora:name:weight> tags, and the tags' (name, weight)."""
    try:
        text, uses = parse_loras(text)
    except LoraError as error:
        raise PromptError(f"{str(error)[0].upper()}{str(error)[1:]}.") from None
    return text, tuple((use.name, use.weight) for use in uses)


def size_for(spec: ModelSpec, across: int, down: int) -> tuple[int, int]:
    """The model's pixel budget in the shape W:H, both sides multiples of its family's size rule (8 for
    UNet families: the UNet halves the latents)."""
    ratio = across / down
    if max(ratio, 1 / ratio) > MAX_ASPECT:
        raise PromptError(f"`--ar {across}:{down}` is too {'wide' if ratio > 1 else 'tall'}: model `{spec.name}` "
                          f"takes ratios up to {MAX_ASPECT}:1 and 1:{MAX_ASPECT}.")
    budget, step = spec.width * spec.height, spec.family.size_multiple
    width = max(step, round(math.sqrt(budget * ratio) / step) * step)
    height = max(step, round(math.sqrt(budget / ratio) / step) * step)
    return width, height


def guidance_for(spec: ModelSpec, stylize: int | None) -> float:
    """--stylize 0–1000 -> guidance: 100 (the default) is the catalog's guidance, 0 half of it, 1000 twice.

    Guidance-free models (catalog guidance 0, the turbo ones) stay at 0: stylize changes nothing there.
    """
    s = DEFAULT_STYLIZE if stylize is None else stylize
    factor = 0.5 + 0.5 * s / 100 if s <= 100 else 1 + (s - 100) / 900
    return round(spec.guidance * factor, 3)


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

