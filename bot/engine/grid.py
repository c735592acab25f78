"""Four images -> one 2x2 grid, and PNG encoding with text metadata."""

from __future__ import annotations

import io
from typing import Sequence

from PIL import Image
from PIL.PngImagePlugin import PngInfo


def make_grid(images: Sequence[Image.Image]) -> Image.Image:
    """Place four equal-size images as  1 2 / 3 4  (the order of the U1-U4 buttons)."""
    if len(images) != 4:
        raise ValueError(f"a grid needs exactly 4 images, got {len(images)}")
    sizes = {image.size for image in images}
    if len(sizes) != 1:
        raise ValueError(f"grid images must all have the same size, got {sorted(sizes)}")
    width, height = images[0].size
    grid = Image.new("RGB", (2 * width, 2 * height))
    for index, image in enumerate(images):
        row, col = divmod(index, 2)
        grid.paste(image.convert("RGB"), (col * width, row * height))
    return grid


def png_bytes(image: Image.Image, metadata: dict[str, str] | None = None) -> bytes:
    """PNG-encode `image`; `metadata` becomes tEXt chunks (prompt, seed, model...)."""
    info = None
    if metadata:
        info = PngInfo()
        for key, value in metadata.items():
            info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()
