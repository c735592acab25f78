"""Midjourney's canvas tools as pictures: where the source image goes on a new canvas, and which pixels the
model repaints. Pure Pillow, no model: the runner hands the canvas and its mask to the engine's inpainting.

A mask is white where the model paints and black where the source stays; the engine pastes the black part
back exactly, so a kept pixel is the source's pixel (the pipelines blend the two in latent space, so the
seam is soft). A new area (Zoom, Pan, Make Square) starts as the source's edge colour and is painted at
strength 0.9: on the shapes model that drew a second figure in 8 % of pans against 25 % from pure noise
(strength 1), with the background extended every time (24 prompts). Vary (Region) repaints at strength 1.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from PIL import Image

PAN_DIRECTIONS = ("left", "right", "up", "down")
# Vary (Region): the regions a select offers, as (left, top, right, bottom) fractions of the image.
REGIONS = {
    "left": (0, 0, 0.5, 1), "right": (0.5, 0, 1, 1), "top": (0, 0, 1, 0.5), "bottom": (0, 0.5, 1, 1),
    "top-left": (0, 0, 0.5, 0.5), "top-right": (0.5, 0, 1, 0.5),
    "bottom-left": (0, 0.5, 0.5, 1), "bottom-right": (0.5, 0.5, 1, 1),
    "centre": (0.25, 0.25, 0.75, 0.75),
}
PAINTED = "painted"  # Vary (Region) with a brush: "region painted", its mask in the recipe (Recipe.mask)
MIN_ZOOM, MAX_ZOOM = 1.0, 2.0
OUTPAINT_STRENGTH, REGION_STRENGTH = 0.9, 1.0
# A pan grows the canvas until it holds this many times the model's pixel budget; then the far side goes.
MAX_PAN_AREA = 2.0
_BOX = re.compile(r"(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})")


class CanvasError(ValueError):
    """An operation that cannot be made (a bad factor or box): its message is for the user."""


@dataclass(frozen=True)
class Canvas:
    image: Image.Image  # RGB: the source where it stays, its edge colour where it is new
    mask: Image.Image  # L: 255 paint, 0 keep (exactly)
    strength: float  # how far the painted area may move from `image`


def zoom_out(source: Image.Image, factor: float, size: tuple[int, int]) -> Canvas:
    """The source shrunk to 1/factor at the centre of a canvas of `size`; the border is new."""
    if not MIN_ZOOM <= factor <= MAX_ZOOM:
        raise CanvasError(f"the zoom factor must be {MIN_ZOOM:g} to {MAX_ZOOM:g}, got {factor:g}")
    width, height = size
    inner = (max(1, round(width / factor)), max(1, round(height / factor)))
    return _place(source.resize(inner, Image.Resampling.LANCZOS), size,
                  ((width - inner[0]) // 2, (height - inner[1]) // 2))


def make_square(source: Image.Image, multiple: int) -> Canvas:
    """The source unchanged at the centre of a square canvas as wide as its long side; the bands are new."""
    side = _round_up(max(source.size), multiple)
    return _place(source, (side, side), ((side - source.width) // 2, (side - source.height) // 2))


def pan(source: Image.Image, direction: str, step: int, budget: int, multiple: int) -> Canvas:
    """The canvas grown by `step` pixels on one side; once it would hold more than MAX_PAN_AREA x `budget`
    pixels, the far side is dropped instead, as Midjourney does. The kept part is the source's pixels."""
    if direction not in PAN_DIRECTIONS:
        raise CanvasError(f"pan {direction!r}: one of {', '.join(PAN_DIRECTIONS)}")
    horizontal = direction in ("left", "right")
    along, across = (source.width, source.height) if horizontal else (source.height, source.width)
    step = _round_up(step, multiple)
    most = max(step, (int(MAX_PAN_AREA * budget / across) // multiple) * multiple)
    kept = min(along, most - step)  # of the source, the part nearest the new strip
    total = kept + step
    if horizontal:
        crop = (0, 0, kept, across) if direction == "left" else (along - kept, 0, along, across)
        size, at = (total, across), ((step, 0) if direction == "left" else (0, 0))
    else:
        crop = (0, 0, across, kept) if direction == "up" else (0, along - kept, across, along)
        size, at = (across, total), ((0, step) if direction == "up" else (0, 0))
    return _place(source.crop(crop), size, at)


def region(source: Image.Image, box: tuple[float, float, float, float]) -> Canvas:
    """The source with one box (fractions left, top, right, bottom) to repaint; the rest is kept."""
    left, top, right, bottom = box
    width, height = source.size
    pixels = (round(left * width), round(top * height), round(right * width), round(bottom * height))
    mask = Image.new("L", source.size, 0)
    mask.paste(255, pixels)
    return Canvas(source.convert("RGB"), mask, REGION_STRENGTH)


def brush_mask(painted: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A mask painted with the archive's brush (white: repaint, black: keep; drawn on the upscaled image, so
    usually twice `size`) brought to the source's `size` and thresholded at half: 255 paint, 0 keep. The
    CanvasError (for the user) if its shape is not the image's, or nothing or everything is painted."""
    width, height = size
    if abs(painted.width * height - painted.height * width) > 0.02 * painted.height * width:
        raise CanvasError(f"the mask is {painted.width}×{painted.height} pixels and does not have the image's "
                          f"shape ({width}×{height}); paint on the image itself")
    mask = painted.convert("L").resize(size, Image.Resampling.BILINEAR).point(lambda value: 255 if value >= 128 else 0)
    darkest, brightest = mask.getextrema()
    if brightest == 0:
        raise CanvasError("the mask is empty: paint over the part of the image to repaint, then submit again")
    if darkest == 255:
        raise CanvasError("the mask covers the whole image: leave the part to keep unpainted (or use Vary "
                          "(Strong) to change all of it)")
    return mask


def painted_region(source: Image.Image, mask: Image.Image) -> Canvas:
    """The source with a painted mask (brush_mask's, at the source's size) to repaint; the rest is kept."""
    if mask.size != source.size:
        mask = brush_mask(mask, source.size)
    return Canvas(source.convert("RGB"), mask.convert("L").point(lambda value: 255 if value >= 128 else 0),
                  REGION_STRENGTH)


def parse_region(text: str) -> tuple[float, float, float, float]:
    """A region's name, or a box in percent "left,top,right,bottom" (e.g. "10,20,60,80")."""
    text = text.strip().lower().replace(" ", "")
    if text in REGIONS:
        return REGIONS[text]
    match = _BOX.fullmatch(text)
    if not match:
        raise CanvasError(f"a region is one of {', '.join(REGIONS)}, or a box in percent: left,top,right,bottom "
                          "(e.g. 10,20,60,80)")
    left, top, right, bottom = (int(value) / 100 for value in match.groups())
    if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
        raise CanvasError("the box must lie within 0–100 %, left before right and top before bottom "
                          "(e.g. 10,20,60,80)")
    if (right - left) * (bottom - top) < 0.01:
        raise CanvasError("the box is too small to repaint; make it at least 10 % by 10 %")
    return left, top, right, bottom


def _place(kept: Image.Image, size: tuple[int, int], at: tuple[int, int]) -> Canvas:
    """`kept` at `at` on a canvas of `size`: the rest, in `kept`'s edge colour, is what gets painted."""
    kept = kept.convert("RGB")
    image = Image.new("RGB", size, _edge_colour(kept))
    image.paste(kept, at)
    mask = Image.new("L", size, 255)
    mask.paste(0, (*at, at[0] + kept.width, at[1] + kept.height))
    return Canvas(image, mask, OUTPAINT_STRENGTH)


def _edge_colour(image: Image.Image) -> tuple[int, int, int]:
    """The median colour of the image's outermost pixels: what the background most likely is."""
    width, height = image.size
    edge = [image.getpixel((x, y)) for x in range(width) for y in (0, height - 1)]
    edge += [image.getpixel((x, y)) for y in range(height) for x in (0, width - 1)]
    return tuple(sorted(channel)[len(channel) // 2] for channel in zip(*edge))


def _round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


# --- operations, as a recipe names them ("zoom 2", "square", "pan left", "region top-left") ----------------


def check_operation(operation: str) -> str:
    """The operation written the one way recipes keep it; CanvasError (for the user) if it is not one."""
    verb, _, argument = " ".join(operation.split()).lower().partition(" ")
    if verb == "zoom":
        try:
            factor = float(argument)
        except ValueError:
            raise CanvasError(f"the zoom factor must be a number from {MIN_ZOOM:g} to {MAX_ZOOM:g}, "
                              f"e.g. 1.5") from None
        if not (math.isfinite(factor) and MIN_ZOOM <= factor <= MAX_ZOOM):
            raise CanvasError(f"the zoom factor must be {MIN_ZOOM:g} to {MAX_ZOOM:g}, got {argument}")
        return f"zoom {round(factor, 2):g}"
    if verb == "square" and not argument:
        return "square"
    if verb == "pan" and argument in PAN_DIRECTIONS:
        return f"pan {argument}"
    if verb == "region" and argument == PAINTED:
        return f"region {PAINTED}"
    if verb == "region":
        box = parse_region(argument)
        name = next((name for name, known in REGIONS.items() if known == box), None)
        return f"region {name or ','.join(str(round(edge * 100)) for edge in box)}"
    raise CanvasError(f"unknown canvas operation {operation!r}")


def paint_canvas(operation: str, source: Image.Image, *, model_size: tuple[int, int], multiple: int,
                 mask: Image.Image | None = None) -> Canvas:
    """The canvas and mask an operation makes of `source` (the image at its generation size); `mask`: the
    painted mask of "region painted"."""
    verb, _, argument = check_operation(operation).partition(" ")
    if verb == "region" and argument == PAINTED:
        if mask is None:
            raise CanvasError("a painted region needs its mask: paint it with the brush in the archive")
        return painted_region(source, mask)
    if verb == "zoom":  # a canvas of the source's size: the model's pixel budget at its ratio
        return zoom_out(source, float(argument), source.size)
    if verb == "square":
        return make_square(source, multiple)
    if verb == "pan":
        step = model_size[0] // 2 if argument in ("left", "right") else model_size[1] // 2
        return pan(source, argument, step, model_size[0] * model_size[1], multiple)
    return region(source, parse_region(argument))


def provenance(operation: str) -> dict[str, str]:
    """The `parameters` fields that say what an operation did."""
    verb, _, argument = check_operation(operation).partition(" ")
    return {"zoom": {"Zoom": argument}, "square": {"Outpaint": "square"}, "pan": {"Pan": argument},
            "region": {"Mask": argument}}[verb]
