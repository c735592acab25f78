"""Upscalers: make one image `scale` times larger.

`lanczos` is Pillow's resampling. Any other name is a super-resolution network in `models/upscalers/`
(`<name>.safetensors` or `<name>.pth`, Real-ESRGAN's compact architecture; see realesrgan.py), loaded once per
device on that device's worker thread. A catalog entry's `upscaler` field names one of them.
"""

from __future__ import annotations

from pathlib import Path
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
UPSCALERS_FOLDER = "upscalers"  # under the models dir
UPSCALER_SUFFIXES = (".safetensors", ".pth")


def upscaler_files(models_dir: Path) -> dict[str, Path]:
    """name -> file of every super-resolution network under models/upscalers/."""
    folder = Path(models_dir) / UPSCALERS_FOLDER
    files = sorted(folder.iterdir()) if folder.is_dir() else []
    return {path.stem: path for path in files if path.suffix in UPSCALER_SUFFIXES}


def available_upscalers(models_dir: Path) -> list[str]:
    return [*UPSCALERS, *upscaler_files(models_dir)]


class Upscalers:
    """Every upscaler a worker pool may use; the networks are loaded per device on first use."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)
        self._networks: dict[tuple[str, str], object] = {}  # (device, name) -> SuperResolution

    def upscale(self, image: Image.Image, scale: int, method: str, device: str) -> Image.Image:
        if method in UPSCALERS:
            return upscale(image, scale, method)
        _check(image, scale)
        key = (device, method)
        if key not in self._networks:
            path = upscaler_files(self.models_dir).get(method)
            if path is None:
                raise EngineError(f"unknown upscaler {method!r}; available: "
                                  f"{', '.join(available_upscalers(self.models_dir))}")
            from bot.engine.realesrgan import SuperResolution  # torch: only on the worker threads

            self._networks[key] = SuperResolution(path, device)
        return self._networks[key].upscale(image, scale)


def _check(image: Image.Image, scale: int) -> None:
    if scale < 1:
        raise EngineError(f"upscale factor must be at least 1, got {scale}")
    if max(image.size) * scale > MAX_SIDE:
        raise EngineError(f"upscaling {image.width}x{image.height} by {scale} would exceed {MAX_SIDE} px")


def upscale(image: Image.Image, scale: int, method: str = "lanczos") -> Image.Image:
    _check(image, scale)
    try:
        upscaler = UPSCALERS[method]
    except KeyError:
        raise EngineError(f"unknown upscaler {method!r}; available: {', '.join(UPSCALERS)}") from None
    return upscaler(image, scale)
