"""Model families: what differs between SD 1.x/2.x, SDXL, SD 3.5, FLUX... is said once here, one small
adapter each, instead of `if family ==` through the engine. A catalog entry's `pipeline` names its family.

An adapter says what the family accepts (a negative prompt? --tile?), its size rule, which text encoder
reads the whole prompt and how long a prompt may be, and its latent layout for live previews (the
projection itself follows the VAE's latent space, bot/engine/previews.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class NegativePrompt(enum.Enum):
    CFG = "cfg"  # classifier-free guidance against the negative prompt, the usual way
    # Guidance-distilled models (FLUX.1-dev) have no negative branch; the pipeline can run one anyway
    # ("true CFG": a second pass per step), so --no works at twice the cost.
    TRUE_CFG = "true-cfg"
    NONE = "none"  # no way to use one: --no is refused


# The true-CFG scale for a --no on a guidance-distilled model: the value FLUX's own docs use.
TRUE_CFG_SCALE = 4.0


@dataclass(frozen=True)
class Family:
    pipeline: str  # the catalog's `pipeline` value
    label: str  # its name in messages to users
    pipeline_classes: tuple[str, ...]  # the diffusers txt2img classes a model folder of this family holds
    size_multiple: int  # both sides of an image a multiple of this (latent downscale x patch size)
    denoiser: str  # the component that runs every step: "unet" or "transformer"
    prompt_tokenizer: str  # the tokenizer of the text encoder that reads the whole prompt
    max_prompt_tokens: int  # that encoder's limit; the pipeline cuts longer prompts, so we refuse them
    negative_prompt: NegativePrompt = NegativePrompt.CFG
    safety_checker: bool = False  # its pipelines take a `safety_checker` component (safety.py loads it)
    takes_sequence_length: bool = False  # the pipeline takes max_sequence_length (T5's padded length)
    img2img_needs_size: bool = False  # its img2img pipeline defaults to its training size, not the image's
    packed_latents: bool = False  # latents travel as 2x2 patches flattened into tokens (unpacked for previews)
    bfloat16: bool = False  # half precision on a GPU means bfloat16 (T5 overflows in float16)
    chat_prompt: bool = False  # the text encoder is a chat LLM: the pipeline wraps the prompt in its template
    # its pipelines load IP-Adapters of the classic (h94) format: image references and /blend through one
    # (diffusers' IPAdapterMixin on a UNet; bot/engine/ip_adapter.py)
    ip_adapter: bool = False

    @property
    def tiles(self) -> bool:
        """--tile wraps the image around by padding every convolution circularly: a UNet is convolutions
        all through, a transformer has none between its patches."""
        return self.denoiser == "unet"

    def refusal(self, model: str, *, negative_prompt: str, tile: bool, guidance: float) -> str | None:
        """Why `model` (of this family) cannot run a request with these options, or None."""
        if tile and not self.tiles:
            return (f"model `{model}` ({self.label}) cannot tile: --tile wraps a UNet's convolutions, and "
                    f"{self.label}'s transformer has none. Remove --tile or pick a Stable Diffusion model.")
        if negative_prompt and self.negative_prompt is NegativePrompt.NONE:
            return (f"model `{model}` ({self.label}) has no negative prompt. Remove --no (or the negative "
                    "prompt), or pick another model.")
        if negative_prompt and self.negative_prompt is NegativePrompt.CFG and guidance <= 1:
            # Without guidance the negative branch never runs: --no would be ignored without a word.
            return (f"model `{model}` runs without guidance (a few-step turbo model), so it cannot use a "
                    "negative prompt. Remove --no, or pick a model that uses guidance.")
        return None

    def true_cfg(self, negative_prompt: str) -> bool:
        """The call needs true CFG's second pass (so jobs with and without one never share a batch)."""
        return bool(negative_prompt) and self.negative_prompt is NegativePrompt.TRUE_CFG


FAMILIES = {
    family.pipeline: family for family in (
        Family("stable-diffusion", "Stable Diffusion", ("StableDiffusionPipeline",), 8, "unet", "tokenizer", 77,
               safety_checker=True, ip_adapter=True),
        Family("stable-diffusion-xl", "SDXL", ("StableDiffusionXLPipeline",), 8, "unet", "tokenizer", 77,
               ip_adapter=True),
        # The CLIP encoders see the first 77 tokens, as in the reference pipelines; T5 reads all of it.
        Family("stable-diffusion-3", "SD 3.5", ("StableDiffusion3Pipeline",), 16, "transformer", "tokenizer_3",
               256, takes_sequence_length=True, img2img_needs_size=True, bfloat16=True),
        Family("flux", "FLUX", ("FluxPipeline",), 16, "transformer", "tokenizer_2", 512,
               negative_prompt=NegativePrompt.TRUE_CFG, takes_sequence_length=True, img2img_needs_size=True,
               packed_latents=True, bfloat16=True),
        Family("z-image", "Z-Image", ("ZImagePipeline",), 16, "transformer", "tokenizer", 512,
               takes_sequence_length=True, img2img_needs_size=True, bfloat16=True, chat_prompt=True),
    )
}


def family_of(pipeline: str) -> Family:
    try:
        return FAMILIES[pipeline]
    except KeyError:
        raise ValueError(f"unknown pipeline {pipeline!r}; one of {', '.join(FAMILIES)}") from None
