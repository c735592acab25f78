"""Reads a shapes-world picture back into (shape colour, shape, background colour, position).

The picture is split into two colours: the background is the colour that dominates the border, the
shape is the colour that lies farthest from it. Each pixel gets a coverage (how far it lies from the
background towards the shape colour), the largest connected blob of covered pixels is the shape, both
colours are snapped to the palette, the shape is the one whose template (the world's square, circle or
upright triangle with the blob's area and centroid) it overlaps best, and the position is the anchor
nearest the centre of the bounding box.

Why templates, not a threshold on how much of its bounding box the blob fills: a square fills its box
(1.0), a circle 0.79, so a fill threshold between them lets a circle be misshapen in any way and still
be a circle, while any bump on a square's side widens its box and makes it a "circle". World squares
warped by half a pixel were read as circles 94% of the time that way (tests/shapes/test_analyser.py).
Comparing with every template treats the three shapes alike.

Also a prompt parser: caption -> the attributes it asks for (position may be absent). Tests and the
benchmark compare the two to judge prompt adherence.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

import numpy as np
from PIL import Image

from bot.shapes.world import COLOURS, POSITIONS, SHAPES, template

ATTRIBUTES = ("shape_colour", "shape", "background_colour", "position")

_PALETTE_NAMES = list(COLOURS)
_PALETTE = np.asarray([COLOURS[name] for name in _PALETTE_NAMES], dtype=np.float32)


@dataclass(frozen=True)
class Analysis:
    shape_colour: str | None
    shape: str | None
    background_colour: str | None
    position: str | None
    match: float = 0.0  # overlap (IoU) of the blob with its shape's template: 1 is a perfect shape
    area: float = 0.0  # fraction of the picture covered by the shape

    def attributes(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in ATTRIBUTES}


def snap_colour(rgb) -> str:
    """The palette colour nearest `rgb` (0..255)."""
    d = ((_PALETTE - np.asarray(rgb, dtype=np.float32)[None, :]) ** 2).sum(axis=1)
    return _PALETTE_NAMES[int(np.argmin(d))]


def _to_array(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB picture, got shape {arr.shape}")
    return arr.astype(np.float32)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a boolean mask (numpy + a BFS; pictures are small)."""
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int32)
    best_label, best_size, current = 0, 0, 0
    ys, xs = np.nonzero(mask)
    for y0, x0 in zip(ys.tolist(), xs.tolist()):
        if labels[y0, x0]:
            continue
        current += 1
        labels[y0, x0] = current
        queue = deque([(y0, x0)])
        size = 0
        while queue:
            y, x = queue.popleft()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = current
                    queue.append((ny, nx))
        if size > best_size:
            best_label, best_size = current, size
    return labels == best_label if best_size else np.zeros_like(mask)


def _majority3(mask: np.ndarray) -> np.ndarray:
    """3x3 majority filter (removes speckles, fills pinholes)."""
    padded = np.pad(mask.astype(np.int32), 1, mode="edge")
    h, w = mask.shape
    total = sum(padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))
    return total >= 5


def _dilate(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def analyse(image) -> Analysis:
    """Read one picture (PIL image or HxWx3 array, 0..255) back into its attributes."""
    arr = _to_array(image)
    h, w, _ = arr.shape
    ring = max(1, min(h, w) // 32)
    border = np.concatenate(
        [arr[:ring].reshape(-1, 3), arr[-ring:].reshape(-1, 3), arr[:, :ring].reshape(-1, 3),
         arr[:, -ring:].reshape(-1, 3)]
    )
    # Background: the palette colour most of the border snaps to; its RGB is the median of those pixels.
    border_names = np.argmin(((border[:, None, :] - _PALETTE[None]) ** 2).sum(-1), axis=1)
    bg_index = int(np.bincount(border_names, minlength=len(_PALETTE)).argmax())
    bg_pixels = border[border_names == bg_index]
    bg_rgb = np.median(bg_pixels, axis=0)
    background = _PALETTE_NAMES[bg_index]

    flat = arr.reshape(-1, 3)
    dist = np.sqrt(((flat - bg_rgb) ** 2).sum(-1))
    far = dist > max(48.0, np.percentile(dist, 50))
    if far.sum() < max(4, h * w // 400):
        return Analysis(None, None, background, None)
    # Shape colour: the far pixels' colour, taken from the farthest half of them (the shape's core).
    far_d = dist[far]
    core = flat[far][far_d >= np.median(far_d)]
    fg_rgb = np.median(core, axis=0)
    direction = fg_rgb - bg_rgb
    norm2 = float((direction**2).sum())
    if norm2 < 1e-6:
        return Analysis(None, None, background, None)
    alpha = np.clip(((flat - bg_rgb) @ direction) / norm2, 0.0, 1.0).reshape(h, w)
    # Pixels far from the line bg->fg are neither colour: do not count them as shape.
    off_line = np.sqrt(np.maximum(((flat - bg_rgb) ** 2).sum(-1) - (alpha.reshape(-1) ** 2) * norm2, 0))
    alpha = np.where(off_line.reshape(h, w) > 0.6 * np.sqrt(norm2), 0.0, alpha)

    mask = _largest_component(_majority3(alpha > 0.5))
    if mask.sum() < max(4, h * w // 400):
        return Analysis(None, None, background, None)
    region = _dilate(_dilate(mask))
    a = np.where(region, alpha, 0.0)
    shape_colour = snap_colour(np.median(arr[mask & (alpha > 0.8)] if (mask & (alpha > 0.8)).any() else core,
                                         axis=0))
    if shape_colour == background:
        # A faint blob in nearly the background colour: name the colour by its core anyway.
        shape_colour = snap_colour(fg_rgb)

    shape, match = _nearest_shape(a)

    # Sub-pixel extents: the coverage profile's maximum along each column / row.
    col = a.max(axis=0)
    row = a.max(axis=1)
    ys = np.arange(h, dtype=np.float32)
    xs = np.arange(w, dtype=np.float32)
    cx = float((xs * col).sum() / max(col.sum(), 1e-6)) + 0.5
    cy = float((ys * row).sum() / max(row.sum(), 1e-6)) + 0.5
    fx, fy = cx / w, cy / h
    position = min(POSITIONS, key=lambda name: (POSITIONS[name][0] - fx) ** 2 + (POSITIONS[name][1] - fy) ** 2)
    return Analysis(shape_colour, shape, background, position, match=match, area=float(a.sum()) / (h * w))


def _nearest_shape(coverage: np.ndarray) -> tuple[str, float]:
    """The shape whose template (`world.template`: the blob's area and centroid) overlaps the blob best,
    and that overlap (soft IoU, 0..1). A world picture matches its own shape almost exactly."""
    h, w = coverage.shape
    area = float(coverage.sum())
    centroid = (float((coverage.sum(axis=0) * (np.arange(w) + 0.5)).sum() / area),
                float((coverage.sum(axis=1) * (np.arange(h) + 0.5)).sum() / area))
    scores = {}
    for shape in SHAPES:
        t = template(shape, area, centroid, w, h)
        scores[shape] = float(np.minimum(coverage, t).sum() / np.maximum(coverage, t).sum())
    best = max(SHAPES, key=scores.get)
    return best, scores[best]


# --------------------------------------------------------------------------------------------------
# Prompts

_POSITION_WORDS = {
    "left": "left",
    "right": "right",
    "top": "top",
    "upper": "top",
    "above": "top",
    "bottom": "bottom",
    "lower": "bottom",
    "below": "bottom",
    "center": "center",
    "centre": "center",
    "middle": "center",
    "centered": "center",
    "centred": "center",
}
_SHAPE_WORDS = {"circle": "circle", "disc": "circle", "disk": "circle", "dot": "circle", "ball": "circle",
                "square": "square", "box": "square", "triangle": "triangle"}
_COLOUR_WORDS = {name: name for name in COLOURS} | {"violet": "purple"}
_BACKGROUND_WORDS = {"background", "backdrop", "bg"}


@dataclass(frozen=True)
class PromptAttributes:
    shape_colour: str | None
    shape: str | None
    background_colour: str | None
    position: str | None

    def attributes(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in ATTRIBUTES}


def parse_prompt(prompt: str) -> PromptAttributes:
    """What a prompt asks for. Unnamed attributes are None (a prompt often names no position).

    The shape colour is the colour word right before the shape word; the background colour is the
    colour word next to "background", else the other colour word in the prompt.
    """
    words = re.findall(r"[a-z]+", prompt.lower())
    words = [w[:-1] if w.endswith("s") and w[:-1] in _SHAPE_WORDS else w for w in words]
    shape = shape_colour = background = position = None
    shape_index = None
    for i, word in enumerate(words):
        if word in _SHAPE_WORDS and shape is None:
            shape, shape_index = _SHAPE_WORDS[word], i
            for j in range(i - 1, max(i - 4, -1), -1):  # "a red circle", "a big red circle"
                if words[j] in _COLOUR_WORDS:
                    shape_colour = _COLOUR_WORDS[words[j]]
                    break
    for i, word in enumerate(words):
        if word in _BACKGROUND_WORDS:
            # "a blue background", or "background of blue" / "background: blue"
            for j in (i - 1, i - 2, i + 1, i + 2):
                if 0 <= j < len(words) and words[j] in _COLOUR_WORDS:
                    background = _COLOUR_WORDS[words[j]]
                    break
            if background:
                break
    colours = [(i, _COLOUR_WORDS[w]) for i, w in enumerate(words) if w in _COLOUR_WORDS]
    if shape_colour is None and colours:
        # "red, circle" or no colour right before the shape: the first colour not the background's.
        for i, colour in colours:
            if colour != background:
                shape_colour = colour
                break
    if background is None:
        others = [c for i, c in colours if c != shape_colour or (shape_index is not None and i > shape_index)]
        others = [c for c in others if c != shape_colour] or others
        if others:
            background = others[-1]
    for word in words:
        if word in _POSITION_WORDS:
            position = _POSITION_WORDS[word]
            break
    return PromptAttributes(shape_colour, shape, background, position)


def score(analysis: Analysis, expected: PromptAttributes | dict) -> dict[str, bool | None]:
    """Per attribute: True/False, or None where the prompt did not ask for it. "all" over the asked ones."""
    want = expected.attributes() if hasattr(expected, "attributes") else dict(expected)
    got = analysis.attributes()
    result: dict[str, bool | None] = {}
    for name in ATTRIBUTES:
        result[name] = None if want.get(name) is None else got[name] == want[name]
    asked = [v for v in result.values() if v is not None]
    result["all"] = all(asked) if asked else None
    return result
