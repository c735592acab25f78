"""What callers ask the engine for, what it reports while working, and what it hands back.

Plain data only (no torch), so the service layer can build requests without loading the ML stack.
"""

from __future__ import annotations

import functools
import hashlib
import math
import weakref
from dataclasses import dataclass, field
from typing import Union

from PIL import Image

# What torch.Generator.manual_seed accepts (kept non-negative so seeds print nicely). Users pick seeds from
# a smaller range (bot/recipe.py); this bound only guards the engine.
GENERATOR_MAX_SEED = 2**63 - 1

# --sref <code>: a style drawn from the code alone (bot/engine/ip_adapter.py), the same on every machine.
STYLE_CODE_MAX = 2**32 - 1
# The largest IP-Adapter scale a request may carry (--sw and --ow are mapped into 0..this by the service);
# past about 1.5 an IP-Adapter copies its reference and ignores the prompt.
MAX_REFERENCE_SCALE = 2.0
# /blend takes 2 to 5 pictures.
BLEND_IMAGES = (2, 5)
# The img2img strength of a blend without an IP-Adapter (the pictures' latents averaged, then denoised):
# high enough to repaint the averaged picture into one of the model's own, low enough to keep what the
# pictures share (on the shapes model, a background colour both have survives; tests/engine/test_ip_adapter.py).
BLEND_STRENGTH = 0.75
# The IP-Adapter scale of a blend on a model that has one: the pictures' averaged embedding is the whole
# prompt (IP-Adapter's authors use 1.0 for image-only prompts).
BLEND_IP_SCALE = 1.0


class EngineError(Exception):
    """A failure whose message is safe to show to the user who asked."""


class Cancelled(EngineError):
    """The task was cancelled before it finished (by its owner, or because the pool closed)."""


@dataclass(frozen=True)
class GenerateRequest:
    """txt2img; img2img when `init_image` is set; inpainting when `mask_image` is set too (white: repaint,
    black: keep); a blend when `blend_images` are set. One image per seed either way. Any of them may carry
    image references (--sref, --oref) for a model with an IP-Adapter.

    Fully resolved: the caller has already applied the catalog's defaults, so the engine never guesses.
    txt2img needs width and height; img2img and inpainting leave them None (the output has the init image's
    size) and run int(steps * strength) denoising steps.
    """

    model: str
    prompt: str
    seeds: tuple[int, ...]
    steps: int = field(kw_only=True)  # keyword-only: required, yet the defaulted fields keep their positions
    guidance: float = field(kw_only=True)
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    init_image: Image.Image | None = None
    mask_image: Image.Image | None = None  # greyscale, the init image's size
    strength: float = 0.6
    tile: bool = False  # seamless: the image wraps around at its edges (circular padding in every conv)
    shared_noise: float = 0.0  # 0..1 share of starting noise all images take from the first (txt2img only)
    loras: tuple[tuple[str, float], ...] = ()  # (name under models/loras, weight), besides the model's own
    # Image references through the model's IP-Adapter (bot/engine/ip_adapter.py). --sref: the style of these
    # pictures (their embeddings averaged), or of a style code, applied to the UNet's style layer only; --oref:
    # the object/character of these pictures, through every layer. A scale of 0 changes nothing.
    style_images: tuple[Image.Image, ...] = ()
    style_code: int | None = None  # 0..STYLE_CODE_MAX; a request has style_images or a style_code, not both
    style_scale: float = 0.0  # 0..MAX_REFERENCE_SCALE
    object_images: tuple[Image.Image, ...] = ()
    object_scale: float = 0.0  # 0..MAX_REFERENCE_SCALE
    # /blend: 2..5 pictures merged into one (txt2img-sized: width and height set, no init_image). Through the
    # IP-Adapter where the model has one (their embeddings averaged, at BLEND_IP_SCALE), else their latents
    # averaged and denoised at `strength` (BLEND_STRENGTH is the usual value).
    blend_images: tuple[Image.Image, ...] = ()

    def __post_init__(self) -> None:
        # These are programming errors in the caller, not user input problems: fail loudly and early.
        if not isinstance(self.seeds, tuple) or not self.seeds:
            raise ValueError(f"seeds must be a non-empty tuple of ints, got {self.seeds!r}")
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= GENERATOR_MAX_SEED:
                raise ValueError(f"each seed must be an int in 0..{GENERATOR_MAX_SEED}, got {seed!r}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")
        if not 0.0 <= self.shared_noise <= 1.0:
            raise ValueError(f"shared_noise must be in [0, 1], got {self.shared_noise}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an int of at least 1, got {self.steps!r}")
        if isinstance(self.guidance, bool) or not isinstance(self.guidance, (int, float)) or not self.guidance >= 0:
            raise ValueError(f"guidance must be a number of at least 0, got {self.guidance!r}")
        object.__setattr__(self, "guidance", float(self.guidance))  # 5 and 5.0 are one batch key and one result
        if self.mask_image is not None and (self.init_image is None or self.mask_image.size != self.init_image.size):
            raise ValueError("mask_image needs an init_image of the same size")
        if self.init_image is not None:
            if self.width is not None or self.height is not None:
                raise ValueError("img2img takes its size from init_image; leave width and height unset")
        elif self.width is None or self.height is None:
            raise ValueError(f"txt2img needs width and height, got {self.width}x{self.height}")
        self._check_references()

    def _check_references(self) -> None:
        for name in ("style_images", "object_images", "blend_images"):
            images = getattr(self, name)
            if not isinstance(images, tuple) or not all(isinstance(image, Image.Image) for image in images):
                raise ValueError(f"{name} must be a tuple of PIL images, got {images!r}")
        code = self.style_code
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)
                                 or not 0 <= code <= STYLE_CODE_MAX):
            raise ValueError(f"style_code must be None or an int in 0..{STYLE_CODE_MAX}, got {code!r}")
        if self.style_images and code is not None:
            raise ValueError("a request has style_images or a style_code, not both")
        for name, has_reference in (("style_scale", bool(self.style_images) or code is not None),
                                    ("object_scale", bool(self.object_images))):
            scale = getattr(self, name)
            if (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale)
                    or not 0 <= scale <= MAX_REFERENCE_SCALE):
                raise ValueError(f"{name} must be a number in 0..{MAX_REFERENCE_SCALE}, got {scale!r}")
            if scale and not has_reference:
                raise ValueError(f"{name} is {scale} but the request has no reference for it")
            object.__setattr__(self, name, float(scale))
        if self.blend_images:
            low, high = BLEND_IMAGES
            if not low <= len(self.blend_images) <= high:
                raise ValueError(f"a blend takes {low} to {high} images, got {len(self.blend_images)}")
            if self.init_image is not None:
                raise ValueError("a blend is txt2img-sized: width and height, no init_image")
            if self.object_images:
                raise ValueError("a blend uses the IP-Adapter's object slot: it takes no object_images")

    @property
    def is_img2img(self) -> bool:
        return self.init_image is not None

    @property
    def kind(self) -> str:
        if self.blend_images:
            return "blend"
        return "txt2img" if self.init_image is None else "inpaint" if self.mask_image is not None else "img2img"

    @property
    def has_references(self) -> bool:
        """It asks for --sref or --oref, which only a model with an IP-Adapter can run (/blend needs none)."""
        return bool(self.style_images or self.style_code is not None or self.object_images)

    @property
    def style_reference(self) -> tuple | None:
        """What the style slot carries, by content: ("images", hashes...) or ("code", n); None when it changes
        nothing (no reference, or a scale of 0)."""
        if not self.style_scale:
            return None
        if self.style_code is not None:
            return ("code", self.style_code)
        return ("images", *map(image_hash, self.style_images))

    @property
    def object_reference(self) -> tuple | None:
        """What the object slot carries, by content (None: nothing, or a scale of 0)."""
        return ("images", *map(image_hash, self.object_images)) if self.object_scale else None

    @functools.cached_property
    def reference_key(self) -> tuple:
        """Everything about its references a pipeline call takes as one value: the pictures by content (their
        hashes, cached per image), the code, the scales. Equal keys, same references; () for none."""
        parts = []
        if self.style_reference is not None:
            parts.append(("style", self.style_reference, self.style_scale))
        if self.object_reference is not None:
            parts.append(("object", self.object_reference, self.object_scale))
        if self.blend_images:
            parts.append(("blend", *map(image_hash, self.blend_images)))
        return tuple(parts)


# id(image) -> its content hash, while the image lives: an image is hashed once however many requests carry
# it (a --repeat's jobs do). PIL images are unhashable (they compare by pixels), hence the ids; a finaliser
# drops an entry when its image goes, before its id can be reused.
_IMAGE_HASHES: dict[int, str] = {}


def image_hash(image: Image.Image) -> str:
    """A short hash of an image's pixels (mode, size and bytes): the same picture, the same hash. Cached per
    image object: images handed to the engine are not changed afterwards."""
    key = id(image)
    cached = _IMAGE_HASHES.get(key)
    if cached is None:
        digest = hashlib.sha256(f"{image.mode} {image.width}x{image.height}:".encode())
        digest.update(image.tobytes())
        cached = _IMAGE_HASHES[key] = digest.hexdigest()[:16]
        weakref.finalize(image, _IMAGE_HASHES.pop, key, None)
    return cached


DTYPES = ("auto", "fp32", "fp16", "bf16")
ATTENTION = ("sdpa", "classic")


@dataclass(frozen=True)
class DeviceOptions:
    """How models are loaded and run on a device (settings TORCH_DTYPE ... CPU_OFFLOAD). The defaults are
    right for a CPU and a sane start on a GPU; see docs/performance.md for what each one does."""

    dtype: str = "auto"  # auto: fp16 on CUDA, fp32 elsewhere (CPUs have no fast half kernels)
    attention: str = "sdpa"  # torch's scaled_dot_product_attention (flash/memory-efficient kernels on GPUs)
    channels_last: bool = False  # UNet weights in NHWC: faster convolutions on recent NVIDIA GPUs
    compile_unet: bool = False  # torch.compile the UNet: slow first job, then faster; needs a C++ toolchain
    vae_tiling: bool = False  # decode large images tile by tile: less memory, faint seams possible
    cpu_offload: bool = False  # keep weights in RAM, move each model to the GPU when used (needs accelerate)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {self.attention!r}")


@dataclass(frozen=True)
class UpscaleRequest:
    """Enlarge one image with the upscaler the model's catalog entry names."""

    model: str
    image: Image.Image
    scale: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.scale, bool) or not isinstance(self.scale, int) or self.scale < 1:
            raise ValueError(f"scale must be a positive int, got {self.scale!r}")


Request = Union[GenerateRequest, UpscaleRequest]


@dataclass(frozen=True)
class Started:
    """A worker took the task off the queue."""

    device: str


@dataclass(frozen=True)
class Progress:
    """Fraction (0..1] of the denoising steps done so far."""

    fraction: float


@dataclass(frozen=True)
class Preview:
    """A cheap picture of the job's images partway through (decoded linearly from the latents): a 2x2
    grid for four images, at half the size of the real grid. At most one per `preview_interval`."""

    image: Image.Image
    fraction: float


Event = Union[Started, Progress, Preview]


@dataclass(frozen=True)
class GenerationResult:
    images: list[Image.Image]
    seeds: tuple[int, ...]  # images[i] came from seeds[i]; empty for an upscale
    width: int
    height: int
    steps: int  # as requested (img2img ran int(steps * strength) of them); 0 for an upscale
    guidance: float
    model: str
    device: str
    seconds: float  # time spent running the pipeline, model loading excluded
    sampler: str = ""  # the scheduler, by the name AUTOMATIC1111 gives it ("Euler a"); empty for an upscale
    nsfw: tuple[bool, ...] = ()  # per image, from the model's safety checker; empty where it has none
    batched: int = 1  # jobs that shared the pipeline call (cross-user batching); `seconds` is the call's
    loras: tuple[tuple[str, float, str], ...] = ()  # (name, weight, hash) of the LoRAs used, the model's too
    blend_method: str = ""  # a blend's: "ip-adapter" or "latent interpolation"; empty for anything else
