"""The shapes model's hand-set "pixel" VAE: an exact round trip, and latents a live preview can show as they are."""

import numpy as np
import torch

from bot.engine.previews import latents_to_images, projection_for
from bot.shapes.analyser import analyse
from bot.shapes.model import build_pixel_vae
from bot.shapes.world import make_example


def _tensor(image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]


def test_the_round_trip_is_exact_for_pictures_of_2x2_blocks():
    vae = build_pixel_vae(64)
    image, _ = make_example(5)
    blocky = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(_tensor(image), 2), scale_factor=2)
    with torch.no_grad():
        latents = vae.encode(blocky).latent_dist.sample()
        back = vae.decode(latents).sample
    assert latents.shape == (1, 4, 32, 32)
    assert (back - blocky).abs().max() < 2e-3


def test_a_live_preview_of_its_latents_shows_the_picture():
    """Previews project latents to RGB without the VAE; this VAE says its projection is the identity, so a
    preview is the picture at half size and the analyser reads it like the picture itself."""
    vae = build_pixel_vae(64)
    vae.register_to_config(scaling_factor=1.6)  # as the export sets it, from the training data
    projection = projection_for(vae)
    assert projection is not None
    for seed in range(8):
        image, scene = make_example(100 + seed)
        with torch.no_grad():
            latents = vae.encode(_tensor(image)).latent_dist.sample() * vae.config.scaling_factor
        (preview,) = latents_to_images(latents, projection, scale=2)
        assert preview.size == (64, 64)
        assert np.abs(np.asarray(preview, dtype=np.float32) - np.asarray(image, dtype=np.float32)).mean() < 8
        assert analyse(preview).attributes() == scene.attributes()
