"""The architecture of the `shapes` model: a standard diffusers StableDiffusionPipeline, very small.

- VAE: AutoencoderKL, 8x down-sampling (64x64 pixels <-> 8x8x8 latents), no attention, ~1M parameters.
- UNet: UNet2DConditionModel at 8x8 with cross-attention at every resolution (8x8, 4x4, 2x2),
  v-prediction.
- Text encoder: CLIPTextModel, 3 layers of width 128, over the real CLIP BPE vocabulary truncated to
  its first 10,000 merges (prompts padded to 32 tokens).
- Scheduler: zero-terminal-SNR ("trailing") schedule, v-prediction; DDIM by default.

Everything here is configuration: the weights come from bot/shapes/train.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BPE_PATH = REPO_ROOT / "models" / "clip-bpe" / "bpe_simple_vocab_16e6.txt.gz"

# What every scheduler of this model shares: SD's betas rescaled to zero terminal SNR (Lin et al. 2023),
# so the last training step is pure noise and sampling starts from it ("trailing" spacing).
SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="v_prediction",
    rescale_betas_zero_snr=True,
    timestep_spacing="trailing",
)

DEFAULT_STEPS = 12
DEFAULT_GUIDANCE = 5.0
DEFAULT_SIZE = 64


@dataclass
class ShapesConfig:
    resolution: int = 64
    vae_channels: tuple[int, ...] = (16, 32, 64, 64)
    latent_channels: int = 8
    unet_channels: tuple[int, ...] = (64, 128, 192)
    unet_layers_per_block: int = 1
    head_dim: int = 32
    text_width: int = 128
    text_layers: int = 3
    text_heads: int = 4
    max_merges: int = 10000
    max_length: int = 32
    extra: dict = field(default_factory=dict)

    @property
    def latent_size(self) -> int:
        return self.resolution // 2 ** (len(self.vae_channels) - 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vae_channels"] = list(self.vae_channels)
        d["unet_channels"] = list(self.unet_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ShapesConfig":
        d = dict(d)
        d["vae_channels"] = tuple(d["vae_channels"])
        d["unet_channels"] = tuple(d["unet_channels"])
        return cls(**d)


TINY_CONFIG = ShapesConfig(
    resolution=32,
    vae_channels=(8, 16),
    latent_channels=4,
    unet_channels=(32, 32),
    head_dim=16,
    text_width=32,
    text_layers=1,
    text_heads=2,
    max_merges=1000,
    max_length=16,
)


def build_tokenizer(out_dir: Path, config: ShapesConfig, bpe_path: Path = DEFAULT_BPE_PATH) -> CLIPTokenizer:
    """The real CLIP tokenizer (merges truncated), written to `out_dir` and loaded from there."""
    from bot.engine.tokenizer import build_clip_tokenizer

    return build_clip_tokenizer(
        Path(out_dir), bpe_path=Path(bpe_path), max_merges=config.max_merges, model_max_length=config.max_length
    )


def build_vae(config: ShapesConfig) -> AutoencoderKL:
    n = len(config.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(config.vae_channels),
        layers_per_block=1,
        latent_channels=config.latent_channels,
        norm_num_groups=min(16, min(config.vae_channels)),
        sample_size=config.resolution,
        mid_block_add_attention=False,
        scaling_factor=1.0,  # set from the data after the VAE is trained
    )


def build_unet(config: ShapesConfig) -> UNet2DConditionModel:
    n = len(config.unet_channels)
    return UNet2DConditionModel(
        sample_size=config.latent_size,
        in_channels=config.latent_channels,
        out_channels=config.latent_channels,
        block_out_channels=tuple(config.unet_channels),
        layers_per_block=config.unet_layers_per_block,
        down_block_types=("CrossAttnDownBlock2D",) * n,
        up_block_types=("CrossAttnUpBlock2D",) * n,
        # diffusers' historical naming: this is the number of heads per block.
        attention_head_dim=tuple(max(1, c // config.head_dim) for c in config.unet_channels),
        cross_attention_dim=config.text_width,
        norm_num_groups=min(32, min(config.unet_channels)),
    )


def build_text_encoder(config: ShapesConfig, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.text_width,
        intermediate_size=config.text_width * 4,
        num_hidden_layers=config.text_layers,
        num_attention_heads=config.text_heads,
        max_position_embeddings=77,
        projection_dim=config.text_width,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(text_config)


def training_scheduler() -> DDPMScheduler:
    return DDPMScheduler(clip_sample=False, **SCHEDULE)


SAMPLERS = ("ddim", "euler", "dpm")


def inference_scheduler(name: str = "ddim"):
    if name == "ddim":
        return DDIMScheduler(clip_sample=False, set_alpha_to_one=False, steps_offset=1, **SCHEDULE)
    if name == "euler":
        return EulerDiscreteScheduler(**SCHEDULE)
    if name == "dpm":
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", final_sigmas_type="zero", **SCHEDULE)
    raise ValueError(f"unknown sampler {name!r}; one of {SAMPLERS}")


def assemble_pipeline(vae, text_encoder, tokenizer, unet, sampler: str = "ddim") -> StableDiffusionPipeline:
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=inference_scheduler(sampler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def set_num_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
