"""The tiny random-weight Stable Diffusion model for tests and the playground (`dreamgrid models create-tiny`).

It is a genuine StableDiffusionPipeline folder (UNet, VAE, CLIP text encoder, real CLIP tokenizer,
scheduler) saved with save_pretrained, so the engine loads it exactly like a downloaded model. Its
weights are random, so its images are coloured noise; it exists to exercise the whole path in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from bot.engine.folders import replaced_on_success
from bot.engine.tokenizer import build_clip_tokenizer

DEFAULT_PATH = Path("models") / "tiny-sd"

# Everything from_pretrained needs; a folder missing any of these was interrupted while being written.
REQUIRED_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
)


# The VAE's blocks: four, an 8x down-sampling as in every SD model (so a 64 px picture is 8x8 latents and the
# tiny model's speed behaves like a real model's at 8x the size). Earlier versions had a 2x VAE.
VAE_BLOCKS = (32, 64, 64, 64)


def is_complete(path: Path) -> bool:
    return all((Path(path) / name).is_file() for name in REQUIRED_FILES)


def is_current(path: Path) -> bool:
    """Complete and built by this version (an older 2x-VAE tiny model is rebuilt, not reused)."""
    if not is_complete(path):
        return False
    config = json.loads((Path(path) / "vae" / "config.json").read_text())
    return tuple(config.get("block_out_channels", ())) == VAE_BLOCKS


def create_tiny_model(path: Path = DEFAULT_PATH, seed: int = 0, force: bool = False) -> Path:
    """Build the tiny model into `path` (deterministic from `seed`) unless a current one is already there."""
    path = Path(path)
    if is_current(path) and not force:
        return path
    if path.exists() and not force and any(path.iterdir()) and not is_complete(path):
        raise FileExistsError(f"{path} exists but is not a complete tiny model; pass force=True to replace it")

    with replaced_on_success(path) as staging:
        _build_pipeline(staging, seed).save_pretrained(staging, safe_serialization=True)
    return path


def _build_pipeline(work_dir: Path, seed: int) -> StableDiffusionPipeline:
    tokenizer = build_clip_tokenizer(work_dir / "tokenizer")
    # fork_rng: seed the weights without disturbing the caller's global torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=64 // 8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=4,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=VAE_BLOCKS,
            down_block_types=("DownEncoderBlock2D",) * len(VAE_BLOCKS),
            up_block_types=("UpDecoderBlock2D",) * len(VAE_BLOCKS),
            latent_channels=4,
            sample_size=64,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=77,
                projection_dim=32,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,  # the value diffusers expects for SD schedulers (it rewrites and warns otherwise)
        timestep_spacing="trailing",  # sensible for the few steps this model is run with
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def cli(argv: list[str] | None = None) -> int:
    """`dreamgrid models create-tiny [--path models/tiny-sd] [--seed 0] [--force]`."""
    parser = argparse.ArgumentParser(
        prog="dreamgrid models create-tiny",
        description="Build the tiny random-weight test model (its images are noise).",
    )
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help="target folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete model is there")
    args = parser.parse_args(argv)

    if is_current(args.path) and not args.force:
        print(f"{args.path}: already complete (use --force to rebuild)")
        return 0
    started = time.perf_counter()
    try:
        create_tiny_model(args.path, seed=args.seed, force=args.force)
    except (OSError, ValueError) as exc:
        print(f"create-tiny: {exc}", file=sys.stderr)
        return 1
    print(f"{args.path}: tiny model written in {time.perf_counter() - started:.1f} s")
    return 0
