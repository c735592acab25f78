"""Upscalers: make one image `scale` times larger.

Only Lanczos resampling exists today. A learned super-resolution model (Real-ESRGAN) plugs in by adding
an entry to UPSCALERS under the name a catalog entry's `upscaler` field uses. Such a model holds weights
on a device, so it would be loaded once per device on the worker thread, like pipelines.LoadedModel,
and the pool would call it instead of `upscale` for that method.
"""

from __future__ import annotations

from typing import Callable

from PIL import Image

from bot.engine.requests import EngineError

Upscaler = Callable[[Image.Image, int], Image.Image]

# The largest side we will produce: beyond this an upscale is almost certainly a mistake and PNG
# encoding alone would take seconds and tens of megabytes.
MAX_SIDE = 8192


def lanczos(image: Image.Image, scale: int) -> Image.Image:
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.LANCZOS)


UPSCALERS: dict[str, Upscaler] = {"lanczos": lanczos}


def upscale(image: Image.Image, scale: int, method: str = "lanczos") -> Image.Image:
    if scale < 1:
        raise EngineError(f"upscale factor must be at least 1, got {scale}")
    if max(image.size) * scale > MAX_SIDE:
        raise EngineError(f"upscaling {image.width}x{image.height} by {scale} would exceed {MAX_SIDE} px")
    try:
        upscaler = UPSCALERS[method]
    except KeyError:
        raise EngineError(f"unknown upscaler {method!r}; available: {', '.join(UPSCALERS)}") from None
    return upscaler(image, scale)
