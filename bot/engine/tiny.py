"""The tiny random-weight Stable Diffusion models for tests and the playground (`dreamgrid models create-tiny`).

Two families. "sd" is a genuine StableDiffusionPipeline folder (UNet, VAE, CLIP text encoder, real CLIP
tokenizer, scheduler); "sdxl" is a genuine StableDiffusionXLPipeline folder (a text_time UNet, the same
VAE, two CLIP text encoders, the second with a projection, two tokenizers). Both are saved with
save_pretrained, so the engine loads them exactly like a downloaded model. Their weights are random, so
their images are coloured noise; they exist to exercise the whole path in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from bot.engine.folders import replaced_on_success
from bot.engine.tokenizer import build_clip_tokenizer

FAMILIES = ("sd", "sdxl")
DEFAULT_PATHS = {"sd": Path("models") / "tiny-sd", "sdxl": Path("models") / "tiny-sdxl"}
DEFAULT_PATH = DEFAULT_PATHS["sd"]
PIPELINE_CLASSES = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}

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
REQUIRED_FILES_XL = REQUIRED_FILES + (
    "text_encoder_2/config.json",
    "text_encoder_2/model.safetensors",
    "tokenizer_2/tokenizer_config.json",
    "tokenizer_2/vocab.json",
    "tokenizer_2/merges.txt",
)
REQUIRED = {"sd": REQUIRED_FILES, "sdxl": REQUIRED_FILES_XL}


# The VAE's blocks: four, an 8x down-sampling as in every SD model (so a 64 px picture is 8x8 latents and the
# tiny model's speed behaves like a real model's at 8x the size). Earlier versions had a 2x VAE.
VAE_BLOCKS = (32, 64, 64, 64)


def _check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny model family {family!r}; expected one of {', '.join(FAMILIES)}")
    return family


def family_of(path: Path) -> str | None:
    """The family of the pipeline folder at `path` from its model_index.json, or None (none there / unknown)."""
    try:
        index = json.loads((Path(path) / "model_index.json").read_text())
    except (OSError, ValueError):
        return None
    name = index.get("_class_name") if isinstance(index, dict) else None
    return next((family for family, cls in PIPELINE_CLASSES.items() if cls == name), None)


def is_complete(path: Path, family: str | None = None) -> bool:
    """Every file from_pretrained needs is there. With no `family`, the folder's own (from model_index.json)."""
    if family is None:
        family = family_of(path) or "sd"
    elif family_of(path) not in (None, _check_family(family)):
        return False
    return all((Path(path) / name).is_file() for name in REQUIRED[family])


def is_current(path: Path, family: str | None = None) -> bool:
    """Complete and built by this version (an older 2x-VAE tiny model is rebuilt, not reused).

    With `family`, also of that family; without, of whichever family the folder is.
    """
    if not is_complete(path, family):
        return False
    config = json.loads((Path(path) / "vae" / "config.json").read_text())
    return tuple(config.get("block_out_channels", ())) == VAE_BLOCKS


def create_tiny_model(path: Path | None = None, seed: int = 0, force: bool = False, family: str = "sd") -> Path:
    """Build the tiny `family` model into `path` (deterministic from `seed`) unless a current one is there.

    `path` defaults to models/tiny-sd or models/tiny-sdxl. A complete tiny model of the other family
    (or an outdated one) at `path` is replaced; a folder with something else in it needs force=True.
    """
    _check_family(family)
    path = Path(path) if path is not None else DEFAULT_PATHS[family]
    if is_current(path, family) and not force:
        return path
    if path.exists() and not force and any(path.iterdir()) and not is_complete(path):
        raise FileExistsError(f"{path} exists but is not a complete tiny model; pass force=True to replace it")

    build = _build_pipeline if family == "sd" else _build_xl_pipeline
    with replaced_on_success(path) as staging:
        build(staging, seed).save_pretrained(staging, safe_serialization=True)
    return path


def _build_pipeline(work_dir: Path, seed: int) -> StableDiffusionPipeline:
    tokenizer = build_clip_tokenizer(work_dir / "tokenizer")
    # fork_rng: seed the weights without disturbing the caller's global torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _unet(
            cross_attention_dim=32,
            attention_head_dim=4,
        )
        vae = _vae(scaling_factor=0.18215)  # SD 1.x/2.x latent scale
        text_encoder = CLIPTextModel(_text_config(tokenizer))
    scheduler = _scheduler()
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


def _build_xl_pipeline(work_dir: Path, seed: int) -> StableDiffusionXLPipeline:
    """The SDXL family: the shapes of diffusers' own tiny SDXL test pipeline, with the sd family's 8x VAE."""
    tokenizer = build_clip_tokenizer(work_dir / "tokenizer")
    tokenizer_2 = build_clip_tokenizer(work_dir / "tokenizer_2")
    # SDXL's second tokenizer (OpenCLIP bigG's) pads with "!" (id 0), not <|endoftext|>; save_pretrained
    # rewrites the folder build_clip_tokenizer wrote with that pad token.
    tokenizer_2.pad_token = "!"
    tokenizer_2.save_pretrained(work_dir / "tokenizer_2")
    hidden, projection, time_embed = 32, 32, 8
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _unet(
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=time_embed,
            transformer_layers_per_block=(1, 2),
            # six micro-conditioning numbers (original size, crop corner, target size), each embedded in
            # `time_embed`, next to text_encoder_2's pooled projection
            projection_class_embeddings_input_dim=6 * time_embed + projection,
            cross_attention_dim=hidden + hidden,  # both encoders' hidden states, concatenated
        )
        vae = _vae(scaling_factor=0.13025)  # SDXL's latent scale
        # as in SDXL: CLIP ViT-L's quick_gelu for the first encoder, OpenCLIP bigG's gelu for the second
        text_encoder = CLIPTextModel(_text_config(tokenizer, hidden, projection, "quick_gelu"))
        text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer_2, hidden, projection, "gelu"))
    scheduler = _scheduler()
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


def cli(argv: list[str] | None = None) -> int:
    """`dreamgrid models create-tiny [--family sd|sdxl] [--path PATH | PATH] [--seed 0] [--force]`."""
    parser = argparse.ArgumentParser(
        prog="dreamgrid models create-tiny",
        description="Build a tiny random-weight test model (its images are noise).",
    )
    parser.add_argument("target", nargs="?", type=Path, default=None, metavar="path",
                        help="target folder (default: models/tiny-sd, or models/tiny-sdxl for --family sdxl)")
    parser.add_argument("--path", type=Path, default=None, help="target folder (the same as the positional path)")
    parser.add_argument("--family", choices=FAMILIES, default="sd",
                        help="sd: a StableDiffusionPipeline; sdxl: a StableDiffusionXLPipeline (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete model is there")
    args = parser.parse_args(argv)
    if args.target is not None and args.path is not None and args.target != args.path:
        parser.error("give the target folder once: as a positional path or with --path")
    path = args.path or args.target or DEFAULT_PATHS[args.family]

    if is_current(path, args.family) and not args.force:
        print(f"{path}: already complete (use --force to rebuild)")
        return 0
    started = time.perf_counter()
    try:
        create_tiny_model(path, seed=args.seed, force=args.force, family=args.family)
    except (OSError, ValueError) as exc:
        print(f"create-tiny: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: tiny {args.family} model written in {time.perf_counter() - started:.1f} s")
    return 0


def _vae(scaling_factor: float) -> AutoencoderKL:
    """The 8x-downsampling VAE both families share (4 blocks, as in every SD model)."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=VAE_BLOCKS,
        down_block_types=("DownEncoderBlock2D",) * len(VAE_BLOCKS),
        up_block_types=("UpDecoderBlock2D",) * len(VAE_BLOCKS),
        latent_channels=4,
        sample_size=64,
        scaling_factor=scaling_factor,
    )


def _text_config(tokenizer, hidden: int = 32, projection: int = 32, activation: str = "quick_gelu") -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=projection,
        hidden_act=activation,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,  # the value diffusers expects for SD schedulers (it rewrites and warns otherwise)
        timestep_spacing="trailing",  # sensible for the few steps these models are run with
    )


def _unet(**family: object) -> UNet2DConditionModel:
    """The two-level UNet both families share (64 px images, 8x8 latents), with the family's own settings."""
    return UNet2DConditionModel(
        sample_size=64 // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **family,
    )
