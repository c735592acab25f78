"""Provenance: the `parameters` text chunk AUTOMATIC1111 writes into its PNGs (and reads back from them,
as do ComfyUI's loaders and most image sites), so an image says how it was made:

    a red fox in the snow
    Negative prompt: trees
    Steps: 4, Sampler: Euler, CFG scale: 5.0, Seed: 1234, Size: 64x64, Model: tiny

(with LoRAs: `<lora:ghibli:0.8>` at the end of the prompt and `Lora hashes: "ghibli: 1a2b3c4d5e6f"`; with
pictures, each named by the first 12 hex digits of its sha256, as A1111 names models: `Image prompt: 1a2b3c4d5e6f,
Image weight: 1`, `Style reference`, `Style code`, `Style weight`, `Object reference`, `Object weight`,
`Blend: "latent interpolation of 1a2b3c4d5e6f, 0f9e8d7c6b5a"`; a region painted with the archive's brush:
`Mask: painted 1a2b3c4d5e6f`, where a region of the select says `Mask: top-left`)
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from PIL import Image

from bot.recipe import DEFAULT_IMAGE_WEIGHT, DEFAULT_REFERENCE_WEIGHT, Recipe
from bot.service.canvas import provenance as canvas_fields

CHUNK = "parameters"
JOB_FIELD = "Dreamgrid job"


def recipe_text(recipe: Recipe, *, sampler: str, seed: int, width: int, height: int,
                job_id: int | None = None, loras: tuple[tuple[str, float, str], ...] = (),
                blend_method: str = "") -> str:
    """The text of one image made from a recipe (of a grid's first image, for the grid): the bot's jobs
    and `dreamgrid generate` alike. `loras`: the (name, weight, hash) the engine used, the model's own
    included; as in AUTOMATIC1111, their tags end the prompt and their hashes get a field."""
    extra: dict[str, object] = {"Tiling": True} if recipe.tile else {}
    if recipe.chaos is not None:
        extra["Chaos"] = recipe.chaos
    if recipe.scale is not None:  # Upscale (Creative): A1111's hires fix, the same two steps
        extra["Hires upscale"] = recipe.scale
    if recipe.strength is not None:
        extra["Denoising strength"] = recipe.strength
    if recipe.canvas is not None:  # Zoom / Outpaint / Pan / Mask: what the canvas tool did
        extra.update(canvas_fields(recipe.canvas))
    if recipe.mask is not None:  # Vary (Region) with a brush: the painted mask, by hash, as pictures are named
        extra["Mask"] = f"painted {short_hash(recipe.mask)}"
    extra.update(picture_fields(recipe, blend_method))
    if loras:
        extra["Lora hashes"] = ", ".join(f"{name}: {digest}" for name, _, digest in loras)
    if job_id is not None:
        extra[JOB_FIELD] = job_id
    prompt = " ".join([recipe.prompt, *(f"<lora:{name}:{weight:g}>" for name, weight, _ in loras)])
    return parameters_text(prompt=prompt, negative_prompt=recipe.negative_prompt, steps=recipe.steps,
                           sampler=sampler, guidance=recipe.guidance, seed=seed, width=width, height=height,
                           model=recipe.model, extra=extra)


def picture_fields(recipe: Recipe, blend_method: str = "") -> dict[str, object]:
    """The pictures a recipe was given, by hash, with their weights; a blend says how it mixed them."""
    fields: dict[str, object] = {}
    if len(recipe.image_prompts) > 1:
        fields["Blend"] = f"{blend_method or 'mix'} of {', '.join(short_hash(d) for d in recipe.image_prompts)}"
    elif recipe.image_prompts:
        fields["Image prompt"] = short_hash(recipe.image_prompts[0])
    if recipe.image_prompts and recipe.strength is None:  # V and the canvas tools start from their own image
        fields["Image weight"] = f"{recipe.image_weight if recipe.image_weight is not None else DEFAULT_IMAGE_WEIGHT:g}"
    if recipe.style_refs:
        fields["Style reference"] = ", ".join(short_hash(d) for d in recipe.style_refs)
    if recipe.style_code is not None:
        fields["Style code"] = recipe.style_code
    if recipe.style_refs or recipe.style_code is not None:
        fields["Style weight"] = DEFAULT_REFERENCE_WEIGHT if recipe.style_weight is None else recipe.style_weight
    if recipe.object_refs:
        fields["Object reference"] = ", ".join(short_hash(d) for d in recipe.object_refs)
        fields["Object weight"] = DEFAULT_REFERENCE_WEIGHT if recipe.object_weight is None else recipe.object_weight
    return fields


def short_hash(digest: str) -> str:
    return digest[:12]


def upscaled_text(source_text: str, *, upscaler: str, scale: int, job_id: int) -> str:
    """An upscale's text: its source image's own, and how it was enlarged."""
    text = re.sub(rf", {JOB_FIELD}: \d+", "", source_text)
    return f"{text}, Postprocess upscaler: {upscaler}, Postprocess upscale by: {scale}, {JOB_FIELD}: {job_id}"


def parameters_text(*, prompt: str, negative_prompt: str, steps: int, sampler: str, guidance: float, seed: int,
                    width: int, height: int, model: str, extra: dict[str, object] | None = None) -> str:
    fields = {"Steps": steps, "Sampler": sampler or "unknown", "CFG scale": guidance, "Seed": seed,
              "Size": f"{width}x{height}", "Model": model, **(extra or {})}
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(", ".join(f"{key}: {_value(value)}" for key, value in fields.items()))
    return "\n".join(lines)


def read_parameters(png: bytes | Path) -> str | None:
    """The `parameters` text of a PNG file or its bytes, or None if it has none."""
    source = io.BytesIO(png) if isinstance(png, bytes) else png
    with Image.open(source) as image:
        return image.info.get(CHUNK)


def _value(value: object) -> str:
    # A1111 quotes values that contain its separators, so one field can never split into two.
    text = str(value)
    return f'"{text}"' if any(c in text for c in ',:\n"') else text
