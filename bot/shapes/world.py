"""The shapes world: captioned pictures of one flat shape on a flat background.

Every picture is one shape (circle, square or triangle) of one colour at one of five places (left,
right, top, bottom, center) on a background of another colour, jittered in size and place and
anti-aliased by supersampling. Each picture comes with its ground truth and a caption in one of a few
phrasings; the place is named in about 60% of the captions. Everything is deterministic from a seed.

This is what the `shapes` model is trained on, and what the analyser (bot/shapes/analyser.py) reads back.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

# Eight well separated colours (sRGB). Names are single CLIP tokens.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "orange": (250, 135, 20),
    "yellow": (245, 225, 40),
    "green": (35, 165, 60),
    "blue": (35, 80, 225),
    "purple": (140, 55, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
# Where the centre of the shape's bounding box sits, as fractions of width and height.
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.27, 0.5),
    "right": (0.73, 0.5),
    "top": (0.5, 0.27),
    "bottom": (0.5, 0.73),
    "center": (0.5, 0.5),
}
POSITION_NAMES: tuple[str, ...] = tuple(POSITIONS)

POSITION_NAMED_PROBABILITY = 0.6
SIZE_RANGE = (0.13, 0.18)  # half-extent of the shape as a fraction of min(width, height)
# Each shape's extent in units of that size: the square's half side (about the circle's area), the upright
# triangle's half base and half height.
SQUARE_HALF_SIDE = 0.9
TRIANGLE_HALF_WIDTH, TRIANGLE_HALF_HEIGHT = 1.15, 1.05
JITTER = 0.035  # of width / height, each way
SUPERSAMPLE = 4

# How each place is said. The first phrase of each is the canonical one.
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("on the left", "at the left", "on the left side"),
    "right": ("on the right", "at the right", "on the right side"),
    "top": ("at the top", "on the top", "at the top side"),
    "bottom": ("at the bottom", "on the bottom", "at the bottom side"),
    "center": ("in the center", "in the middle", "in the centre"),
}
# {c}: shape colour, {s}: shape, {b}: background colour, {p}: place phrase.
TEMPLATES_WITH_POSITION: tuple[str, ...] = (
    "a {c} {s} {p} on a {b} background",
    "a {b} background with a {c} {s} {p}",
    "{c} {s} {p}, {b} background",
    "a {c} {s} {p} of a {b} background",
)
TEMPLATES_WITHOUT_POSITION: tuple[str, ...] = (
    "a {c} {s} on a {b} background",
    "a {b} background with a {c} {s}",
    "{c} {s}, {b} background",
    "a {c} {s} on {b}",
)


@dataclass(frozen=True)
class Scene:
    """The ground truth of one picture (all a picture is, plus how it was captioned)."""

    shape: str
    shape_colour: str
    background_colour: str
    position: str
    width: int
    height: int
    cx: float  # centre of the bounding box, in pixels
    cy: float
    size: float  # half-extent in pixels
    caption: str
    position_named: bool

    def attributes(self) -> dict[str, str]:
        return {
            "shape_colour": self.shape_colour,
            "shape": self.shape,
            "background_colour": self.background_colour,
            "position": self.position,
        }

    def to_dict(self) -> dict:
        return asdict(self)


def make_caption(
    shape_colour: str,
    shape: str,
    background_colour: str,
    position: str | None,
    rng: random.Random | None = None,
) -> str:
    """A caption for these attributes (position None: the place is not named). Canonical without rng."""
    if position is None:
        template = rng.choice(TEMPLATES_WITHOUT_POSITION) if rng else TEMPLATES_WITHOUT_POSITION[0]
        phrase = ""
    else:
        template = rng.choice(TEMPLATES_WITH_POSITION) if rng else TEMPLATES_WITH_POSITION[0]
        phrases = POSITION_PHRASES[position]
        phrase = rng.choice(phrases) if rng else phrases[0]
    return template.format(c=shape_colour, s=shape, b=background_colour, p=phrase)


def sample_scene(
    rng: random.Random,
    width: int = 64,
    height: int = 64,
    *,
    shape: str | None = None,
    shape_colour: str | None = None,
    background_colour: str | None = None,
    position: str | None = None,
    position_named: bool | None = None,
) -> Scene:
    """Draw a random scene (any attribute can be fixed); the caption is drawn too."""
    shape = shape or rng.choice(SHAPES)
    shape_colour = shape_colour or rng.choice(COLOUR_NAMES)
    if background_colour is None:
        background_colour = rng.choice([c for c in COLOUR_NAMES if c != shape_colour])
    if background_colour == shape_colour:
        raise ValueError("the shape and background colours must differ")
    position = position or rng.choice(POSITION_NAMES)
    if position_named is None:
        position_named = rng.random() < POSITION_NAMED_PROBABILITY
    side = min(width, height)
    size = rng.uniform(*SIZE_RANGE) * side
    fx, fy = POSITIONS[position]
    cx = (fx + rng.uniform(-JITTER, JITTER)) * width
    cy = (fy + rng.uniform(-JITTER, JITTER)) * height
    # Keep the whole shape inside the picture, one pixel from the border at least.
    cx = min(max(cx, size + 1), width - size - 1)
    cy = min(max(cy, size + 1), height - size - 1)
    caption = make_caption(shape_colour, shape, background_colour, position if position_named else None, rng)
    return Scene(shape, shape_colour, background_colour, position, width, height, cx, cy, size, caption,
                 position_named)


def coverage(scene: Scene, supersample: int = SUPERSAMPLE) -> np.ndarray:
    """Fraction (0..1) of each pixel covered by the shape, float32 (height, width)."""
    return shape_coverage(scene.shape, scene.cx, scene.cy, scene.size, scene.width, scene.height, supersample)


def shape_coverage(shape: str, cx: float, cy: float, size: float, width: int, height: int,
                   supersample: int = SUPERSAMPLE) -> np.ndarray:
    """`coverage` of one shape: (cx, cy) is the centre of its bounding box, `size` its half-extent unit."""
    n = supersample
    offsets = (np.arange(n) + 0.5) / n
    ys = (np.arange(height)[:, None] + offsets[None, :]).reshape(-1)
    xs = (np.arange(width)[:, None] + offsets[None, :]).reshape(-1)
    dx = xs[None, :] - cx
    dy = ys[:, None] - cy
    r = size
    if shape == "circle":
        inside = dx * dx + dy * dy <= r * r
    elif shape == "square":
        half = r * SQUARE_HALF_SIDE
        inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    elif shape == "triangle":
        # Upright isosceles triangle filling its bounding box [cx-hw, cx+hw] x [cy-h, cy+h].
        hw, h = r * TRIANGLE_HALF_WIDTH, r * TRIANGLE_HALF_HEIGHT
        t = (dy + h) / (2 * h)  # 0 at the apex, 1 at the base
        inside = (t >= 0) & (t <= 1) & (np.abs(dx) <= t * hw)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    cov = inside.reshape(height, n, width, n).mean(axis=(1, 3))
    return cov.astype(np.float32)


def template(shape: str, area: float, centroid: tuple[float, float], width: int, height: int) -> np.ndarray:
    """The world's `shape` covering `area` pixels with its centroid at `centroid` (x, y), as `coverage`
    draws it: what the analyser compares a blob with."""
    cx, cy = centroid
    if shape == "circle":
        size = math.sqrt(area / math.pi)
    elif shape == "square":
        size = math.sqrt(area) / (2 * SQUARE_HALF_SIDE)
    else:  # the triangle: area = half base x height; its centroid lies a third of the height below the box centre
        size = math.sqrt(area / (2 * TRIANGLE_HALF_WIDTH * TRIANGLE_HALF_HEIGHT))
        cy -= TRIANGLE_HALF_HEIGHT * size / 3
    return shape_coverage(shape, cx, cy, size, width, height)


def render_array(scene: Scene, supersample: int = SUPERSAMPLE) -> np.ndarray:
    """The picture as uint8 (height, width, 3)."""
    alpha = coverage(scene, supersample)[..., None]
    fg = np.asarray(COLOURS[scene.shape_colour], dtype=np.float32)
    bg = np.asarray(COLOURS[scene.background_colour], dtype=np.float32)
    return np.clip(np.rint(bg * (1 - alpha) + fg * alpha), 0, 255).astype(np.uint8)


def render(scene: Scene, supersample: int = SUPERSAMPLE) -> Image.Image:
    return Image.fromarray(render_array(scene, supersample), "RGB")


def make_example(seed: int, width: int = 64, height: int = 64, **fixed) -> tuple[Image.Image, Scene]:
    """One captioned picture, deterministic from `seed` (and the fixed attributes, if any)."""
    scene = sample_scene(random.Random(seed), width, height, **fixed)
    return render(scene), scene


def render_dataset(
    count: int, seed: int = 0, width: int = 64, height: int = 64
) -> tuple[np.ndarray, list[Scene]]:
    """`count` pictures as uint8 (count, height, width, 3) and their scenes, deterministic from `seed`."""
    rng = random.Random(seed)
    images = np.empty((count, height, width, 3), dtype=np.uint8)
    scenes = []
    for i in range(count):
        scene = sample_scene(rng, width, height)
        images[i] = render_array(scene)
        scenes.append(scene)
    return images, scenes
