"""What callers ask the engine for, what it reports while working, and what it hands back.

Plain data only (no torch), so the service layer can build requests without loading the ML stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from PIL import Image

# What torch.Generator.manual_seed accepts (kept non-negative so seeds print nicely). Users pick seeds from
# a smaller range (bot/recipe.py); this bound only guards the engine.
GENERATOR_MAX_SEED = 2**63 - 1


class EngineError(Exception):
    """A failure whose message is safe to show to the user who asked."""


class Cancelled(EngineError):
    """The task was cancelled before it finished (by its owner, or because the pool closed)."""


@dataclass(frozen=True)
class GenerateRequest:
    """txt2img; img2img when `init_image` is set; inpainting when `mask_image` is set too (white: repaint,
    black: keep). One image per seed either way.

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

    @property
    def is_img2img(self) -> bool:
        return self.init_image is not None

    @property
    def kind(self) -> str:
        return "txt2img" if self.init_image is None else "inpaint" if self.mask_image is not None else "img2img"


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
