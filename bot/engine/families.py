"""Model families: what differs between SD 1.x/2.x, SDXL, ... is said once here, one small adapter each,
instead of `if family ==` through the engine. A catalog entry's `pipeline` names its family.

Live previews need no entry: they follow the VAE's latent space (bot/engine/previews.py), which the VAE's
config names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    pipeline: str  # the catalog's `pipeline` value
    pipeline_classes: tuple[str, ...]  # the diffusers txt2img classes a model folder of this family holds
    size_multiple: int  # both sides of an image a multiple of this (the UNet halves the latents)
    safety_checker: bool  # its pipelines take a `safety_checker` component (loaded separately, see safety.py)


FAMILIES = {
    family.pipeline: family for family in (
        Family("stable-diffusion", ("StableDiffusionPipeline",), 8, True),
        Family("stable-diffusion-xl", ("StableDiffusionXLPipeline",), 8, False),
    )
}


def family_of(pipeline: str) -> Family:
    try:
        return FAMILIES[pipeline]
    except KeyError:
        raise ValueError(f"unknown pipeline {pipeline!r}; one of {', '.join(FAMILIES)}") from None
