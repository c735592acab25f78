"""Live previews: a cheap picture of the images being generated, straight from the latents.

No VAE decode: each latent pixel (4 or 16 channels) is projected linearly to RGB with coefficients fitted for
the model family's latent space (the same ones ComfyUI and AUTOMATIC1111 use for their "approx" previews).
A preview costs a Cx3 matrix product and a resize, a fraction of a millisecond at 64x64 latents. Latent
spaces without known coefficients get no preview.

Runs on the worker thread (it needs the latents); the picture goes to the event loop as an event.
"""

from __future__ import annotations

from typing import Sequence

from PIL import Image

# (factors Cx3, bias 3): RGB = latent @ factors + bias, in [-1, 1], for latents as the sampler holds them.
_SD = (((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721),
        (-0.2120, -0.2616, -0.7177)), (0.0, 0.0, 0.0))
_SDXL = (((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362),
          (-0.3165, -0.2492, -0.2188)), (0.1084, -0.0175, -0.0011))
_SD3 = ((
    (-0.0922, -0.0175, 0.0749), (0.0311, 0.0633, 0.0954), (0.1994, 0.0927, 0.0458), (0.0856, 0.0339, 0.0902),
    (0.0587, 0.0272, -0.0496), (-0.0006, 0.1104, 0.0309), (0.0978, 0.0306, 0.0427), (-0.0042, 0.1038, 0.1358),
    (-0.0194, 0.0020, 0.0669), (-0.0488, 0.0130, -0.0268), (0.0922, 0.0988, 0.0951), (-0.0278, 0.0524, -0.0542),
    (0.0332, 0.0456, 0.0895), (-0.0069, -0.0030, -0.0810), (-0.0596, -0.0465, -0.0293), (-0.1448, -0.1463, -0.1189),
), (0.2394, 0.2135, 0.1925))
_FLUX = ((
    (-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433), (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115), (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180), (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499), (-0.1262, -0.0982, -0.0778),
), (-0.0329, -0.0718, -0.0851))

# A VAE's channels and scaling factor name its latent space: SD 1.x/2.x (and the tiny test model), SDXL,
# SD3, FLUX.1. (FLUX packs its latents into 2x2 patches; the engine unpacks them before previewing.)
_BY_SPACE = {(4, 0.18215): _SD, (4, 0.13025): _SDXL, (16, 1.5305): _SD3, (16, 0.3611): _FLUX}
# A VAE may state its own factors in its config.json (the shapes model's latents are RGB: the identity).
DECLARED = "_dreamgrid_latent_rgb"


def projection_for(vae) -> tuple | None:
    """The latent-to-RGB projection for a pipeline's VAE, or None where none is known."""
    config = vae.config
    channels = getattr(config, "latent_channels", None)
    declared = getattr(config, DECLARED, None)
    if declared is not None and channels == len(declared):
        # stated for the VAE's own latents; the sampler's are times scaling_factor
        scale = float(getattr(config, "scaling_factor", 1.0) or 1.0)
        return tuple(tuple(value / scale for value in row) for row in declared), (0.0, 0.0, 0.0)
    return _BY_SPACE.get((channels, round(float(getattr(config, "scaling_factor", 0.0) or 0.0), 5)))


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
