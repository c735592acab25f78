"""What a job is: its kind, its status, and its recipe — everything that makes its pictures, resolved once
when the job is planned. Plain data, no I/O: the store keeps it, the service runs it, the Discord layer
shows it, and `dreamgrid generate` uses the same recipe as /imagine.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import secrets
from dataclasses import dataclass
from typing import Any

GRID_SIZE = 4  # images in a grid: /imagine, 🔄 and V make four
MAX_SEED = 2**32 - 1  # seeds users see and type: 0..MAX_SEED (what AUTOMATIC1111 and Midjourney use)
UPSCALE_FACTOR = 2
# img2img strength of a variation: how far it may move from its source image.
VARIATION_STRENGTH = {"subtle": 0.35, "strong": 0.7}
# Upscale (Creative): the img2img pass over the enlarged image adds detail, and keeps the picture.
CREATIVE_STRENGTH = 0.3
# --iw 0..3 (Midjourney's range, default 1) -> how much of an image prompt is kept: each unit of weight keeps
# 30% more of it (img2img strength 1.0 at --iw 0: the image is only a faint start; 0.1 at --iw 3).
MAX_IMAGE_WEIGHT, DEFAULT_IMAGE_WEIGHT, IMAGE_WEIGHT_STEP = 3.0, 1.0, 0.3
# --sw / --ow 0..1000 (default 100) -> the IP-Adapter's scale: 0..100 is 0..1 (1: the adapter's usual full
# strength), 100..1000 is 1..2 (beyond 2 an IP-Adapter's pictures break up), as --stylize maps to guidance.
MAX_REFERENCE_WEIGHT, DEFAULT_REFERENCE_WEIGHT = 1000, 100
MAX_IMAGES = 5  # pictures in one prompt, or in one /blend


class JobKind(enum.StrEnum):
    IMAGINE = "imagine"
    REROLL = "reroll"
    VARIATION = "variation"
    UPSCALE = "upscale"  # U, Midjourney's Upscale (Subtle): the super-resolution network
    CREATIVE = "creative"  # Upscale (Creative): U's image with a low-strength img2img pass for detail
    ZOOM = "zoom"  # Zoom Out 2x / 1.5x / custom, and Make Square: the border is painted
    PAN = "pan"  # ⬅️ ➡️ ⬆️ ⬇️: the canvas grows on one side, painted
    REGION = "region"  # Vary (Region): one part repainted, the rest kept
    BLEND = "blend"  # /blend: 2-5 pictures mixed into a grid

    @property
    def images(self) -> int:
        """Images the job makes: a grid of four, or one enlarged image."""
        return 1 if self in (JobKind.UPSCALE, JobKind.CREATIVE) else GRID_SIZE

    @property
    def cost(self) -> int:
        """What it is charged, in images: a grid costs 4, an upscale 1."""
        return self.images

    @property
    def is_grid(self) -> bool:
        return self.images == GRID_SIZE

    @property
    def is_canvas(self) -> bool:
        """It paints on a canvas made from an upscaled image (bot/service/canvas.py)."""
        return self in (JobKind.ZOOM, JobKind.PAN, JobKind.REGION)

    @property
    def result_file(self) -> str:
        """The file its message shows, in the job's image folder."""
        return "grid.png" if self.is_grid else "1.png"

    @property
    def needs_source(self) -> bool:
        """Whether it starts from one image of its parent job (all but /imagine, 🔄 and /blend)."""
        return self not in (JobKind.IMAGINE, JobKind.REROLL, JobKind.BLEND)


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        """Accepted and not yet ended: it runs (again, after a restart) until it does."""
        return self in ACTIVE

    @property
    def refunded(self) -> bool:
        """Ended without images: its charge was given back."""
        return self in (JobStatus.FAILED, JobStatus.CANCELLED)


ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def _reference_scale(weight: int | None) -> float:
    weight = DEFAULT_REFERENCE_WEIGHT if weight is None else weight
    return round(weight / 100 if weight <= 100 else 1 + (weight - 100) / 900, 4)


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


@dataclass(frozen=True)
class Recipe:
    """Everything that makes a job's pictures, with every default already applied (catalog entry, the
    user's /settings, suffix and options, the typed parameters). Nothing downstream fills anything in."""

    prompt: str
    model: str
    seed: int  # the first image's; a grid's images take seed, seed + 1, ...
    width: int
    height: int
    steps: int
    guidance: float
    negative_prompt: str = ""
    tile: bool = False  # --tile: the image wraps around at its edges
    chaos: int | None = None  # --chaos 0..100: how different the grid's four images are
    strength: float | None = None  # a variation: img2img strength
    scale: int | None = None  # an upscale: the factor
    # As typed (they are already in size, steps and guidance): the message shows them, Remix gives them back.
    ar: str | None = None
    stylize: int | None = None
    quality: float | None = None
    # <lora:name:weight> tags, taken out of the prompt: (name, weight) in the order typed
    loras: tuple[tuple[str, float], ...] = ()
    # A canvas job's operation (bot/service/canvas.py): "zoom 2", "square", "pan left", "region top-left"...
    canvas: str | None = None
    # Pictures given with the prompt, by digest (bot/service/sources.py): image prompts (img2img from one, a
    # blend of several; /blend's), the --sref style and --oref object references; the weights as typed.
    image_prompts: tuple[str, ...] = ()
    image_weight: float | None = None  # --iw 0..3 (None: 1)
    style_refs: tuple[str, ...] = ()
    style_code: int | None = None  # --sref <code> (or random, drawn when planned): a style as a number
    style_weight: int | None = None  # --sw 0..1000 (None: 100)
    object_refs: tuple[str, ...] = ()
    object_weight: int | None = None  # --ow 0..1000 (None: 100)
    # Vary (Region) with a brush (canvas "region painted"): the painted mask, kept like the pictures above
    # (white: repaint, black: keep, at the generation size), by digest.
    mask: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in 0..{MAX_SEED}, got {self.seed}")
        if min(self.width, self.height, self.steps) < 1:
            raise ValueError(f"size and steps must be positive, got {self.width}x{self.height}, {self.steps} steps")

    # --- stored with the job ----------------------------------------------------------------------

    # Kept in their own columns (searched and shown on their own): the rest is the `params` JSON.
    COLUMNS = ("prompt", "negative_prompt", "model", "seed")

    # The fields that name kept pictures by digest (bot/service/sources.py; retention keeps what they name).
    # Tuples in the recipe are lists in JSON; `mask` is one digest.
    PICTURES = ("image_prompts", "style_refs", "object_refs", "mask")

    def params(self) -> dict[str, Any]:
        """The JSON stored with the job: only what is set, so older rows read back the same."""
        out: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name in Recipe.COLUMNS or value is None or value is False or value == ():
                continue
            if item.name == "loras":
                value = [list(lora) for lora in value]
            out[item.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_params(cls, params: dict[str, Any], *, prompt: str, negative_prompt: str, model: str,
                    seed: int) -> Recipe:
        known = {item.name for item in dataclasses.fields(cls)}
        values = {key: value for key, value in params.items() if key in known}
        if "loras" in values:  # JSON has lists only
            values["loras"] = tuple((name, float(weight)) for name, weight in values["loras"])
        for name in Recipe.PICTURES:
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls(prompt=prompt, negative_prompt=negative_prompt, model=model, seed=seed, **values)

    # --- what other jobs start from ---------------------------------------------------------------

    def generation(self) -> Recipe:
        """What made the pictures (size, steps, guidance, --tile, --chaos...): what a reroll or a variation
        starts from. The strength, scale and canvas (and a painted mask) belong to a job's own kind."""
        return dataclasses.replace(self, strength=None, scale=None, canvas=None, mask=None)

    def again(self) -> Recipe:
        """The same pictures' settings with a new random seed: what 🔄 and V start from."""
        return dataclasses.replace(self.generation(), seed=random_seed())

    def variation(self, strength: str) -> Recipe:
        """img2img from one of the source job's images, at Subtle or Strong strength."""
        return dataclasses.replace(self.generation(), strength=VARIATION_STRENGTH[strength])

    def painted(self, operation: str, width: int, height: int, strength: float, mask: str | None = None) -> Recipe:
        """A canvas job: the operation on a canvas of its own size, painted at `strength` (`mask`: the digest of
        a painted region's mask); its --ar was the source's, so it goes."""
        return dataclasses.replace(self.generation(), canvas=operation, width=width, height=height, ar=None,
                                   strength=strength, mask=mask)

    def creative(self) -> Recipe:
        """Upscale (Creative), from an upscale's recipe: its enlarged image through a low-strength img2img
        pass at the enlarged size (width and height stay the generation's, as for every upscale)."""
        return dataclasses.replace(self, strength=CREATIVE_STRENGTH)

    def pictures(self) -> dict[str, Any]:
        """The pictures and their weights: what a remixed prompt keeps from its parent unless it gives its own."""
        return {name: getattr(self, name) for name in ("image_prompts", "image_weight", "style_refs", "style_code",
                                                       "style_weight", "object_refs", "object_weight")}

    def keeping_pictures_of(self, parent: Recipe) -> Recipe:
        """A remix: the pictures it does not give anew (an image prompt, a style, an object), and their weights
        where not typed, are its parent's."""
        changes: dict[str, Any] = {}
        if not self.image_prompts:
            changes["image_prompts"] = parent.image_prompts
        if not self.style_refs and self.style_code is None:
            changes.update(style_refs=parent.style_refs, style_code=parent.style_code)
        if not self.object_refs:
            changes["object_refs"] = parent.object_refs
        for weight in ("image_weight", "style_weight", "object_weight"):
            if getattr(self, weight) is None:
                changes[weight] = getattr(parent, weight)
        return dataclasses.replace(self, **changes)

    @property
    def has_references(self) -> bool:
        """--sref (pictures or a code) or --oref: it needs a model with an IP-Adapter."""
        return bool(self.style_refs or self.style_code is not None or self.object_refs)

    @property
    def image_strength(self) -> float:
        """The img2img strength its image prompts are used at (--iw), leaving at least one denoising step."""
        weight = DEFAULT_IMAGE_WEIGHT if self.image_weight is None else self.image_weight
        return max(round(1.0 - IMAGE_WEIGHT_STEP * weight, 4), math.ceil(10_000 / self.steps) / 10_000)

    @property
    def style_scale(self) -> float:
        return _reference_scale(self.style_weight)

    @property
    def object_scale(self) -> float:
        return _reference_scale(self.object_weight)

    @property
    def output_size(self) -> tuple[int, int]:
        """The size of the images it makes: an upscale's are `scale` times the generation's."""
        scale = self.scale or 1
        return self.width * scale, self.height * scale

    def upscale(self, seed: int) -> Recipe:
        """The enlarged image keeps its source's seed, and the generation settings travel along, so Vary on
        the upscale works at the model's own size."""
        return dataclasses.replace(self.generation(), seed=seed, scale=UPSCALE_FACTOR)

    # --- derived ----------------------------------------------------------------------------------

    def seeds(self, count: int = GRID_SIZE) -> tuple[int, ...]:
        return tuple((self.seed + i) % (MAX_SEED + 1) for i in range(count))

    @property
    def shared_noise(self) -> float:
        """--chaos -> the share of starting noise the four images have in common (0: independent images)."""
        return 0.0 if self.chaos is None else round(0.75 * (100 - self.chaos) / 100, 4)

    def summary(self) -> str:
        """The parameters that change how it looks, for its message (`--ar 2:1 --no snow --tile`); may be empty."""
        return " ".join(self._look())

    def prompt_language(self) -> str:
        """The parameters written back in the prompt language, for Remix and 📋: parsing them gives them back."""
        parts = self._look()
        if self.quality is None:
            parts.append(f"--steps {self.steps}")
        return " ".join([*parts, f"--model {self.model}"])

    @property
    def lora_tags(self) -> str:
        """The LoRAs as typed: `<lora:ghibli:0.8> <lora:film:1>`; empty without any."""
        return " ".join(f"<lora:{name}:{weight:g}>" for name, weight in self.loras)

    def _look(self) -> list[str]:
        parts = [self.lora_tags] if self.loras else []
        if self.ar:
            parts.append(f"--ar {self.ar}")
        if self.negative_prompt:
            parts.append(f"--no {self.negative_prompt}")
        if self.stylize is not None:
            parts.append(f"--stylize {self.stylize}")
        if self.quality is not None:
            parts.append(f"--quality {self.quality:g}")
        if self.chaos is not None:
            parts.append(f"--chaos {self.chaos}")
        if self.tile:
            parts.append("--tile")
        if self.image_weight is not None:
            parts.append(f"--iw {self.image_weight:g}")
        if self.style_code is not None:
            parts.append(f"--sref {self.style_code}")
        if self.style_weight is not None:
            parts.append(f"--sw {self.style_weight}")
        if self.object_weight is not None:
            parts.append(f"--ow {self.object_weight}")
        return parts
