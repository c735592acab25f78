"""Live previews: a cheap picture of the images being generated, straight from the latents.

No VAE decode: each latent pixel (4 channels) is projected linearly to RGB with coefficients fitted for
the model family's latent space (the same ones ComfyUI and AUTOMATIC1111 use for their "approx" previews).
A preview costs a 4x3 matrix product and a resize, a fraction of a millisecond at 64x64 latents. Latent
spaces without known coefficients get no preview.

Runs on the worker thread (it needs the latents); the picture goes to the event loop as an event.
"""

from __future__ import annotations

from typing import Sequence

from PIL import Image

# (factors 4x3, bias 3): RGB = latent @ factors + bias, in [-1, 1].
_SD = (((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721),
        (-0.2120, -0.2616, -0.7177)), (0.0, 0.0, 0.0))
_SDXL = (((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362),
          (-0.3165, -0.2492, -0.2188)), (0.1084, -0.0175, -0.0011))

# A VAE's scaling factor names its latent space: SD 1.x/2.x (and the tiny test model), SDXL.
_BY_SCALING = {0.18215: _SD, 0.13025: _SDXL}
# A VAE may state its own factors in its config.json (the shapes model's latents are RGB: the identity).
DECLARED = "_dreamgrid_latent_rgb"


def projection_for(vae) -> tuple | None:
    """The latent-to-RGB projection for a pipeline's VAE, or None where none is known."""
    config = vae.config
    if getattr(config, "latent_channels", None) != 4:
        return None
    declared = getattr(config, DECLARED, None)
    if declared is not None:  # stated for the VAE's own latents; the sampler's are times scaling_factor
        scale = float(getattr(config, "scaling_factor", 1.0) or 1.0)
        return tuple(tuple(value / scale for value in row) for row in declared), (0.0, 0.0, 0.0)
    return _BY_SCALING.get(round(float(getattr(config, "scaling_factor", 0.0)), 5))


def latents_to_images(latents, projection: tuple, scale: int = 4) -> list[Image.Image]:
    """One small RGB image per latent in the batch, latent size x `scale` (the real image is x the VAE's
    scale factor, 8 for SD)."""
    import torch

    factors, bias = (torch.tensor(part, dtype=torch.float32) for part in projection)
    with torch.no_grad():
        rgb = torch.einsum("bchw,cr->bhwr", latents.detach().to("cpu", torch.float32), factors) + bias
        rgb = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    images = []
    for array in rgb:
        image = Image.fromarray(array, "RGB")
        images.append(image.resize((image.width * scale, image.height * scale), Image.Resampling.BILINEAR))
    return images


def preview_grid(images: Sequence[Image.Image]) -> Image.Image:
    """Four images as the 2x2 grid the job will show; any other count side by side."""
    width, height = images[0].size
    columns = 2 if len(images) == 4 else len(images)
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (columns * width, rows * height))
    for index, image in enumerate(images):
        row, col = divmod(index, columns)
        grid.paste(image, (col * width, row * height))
    return grid
