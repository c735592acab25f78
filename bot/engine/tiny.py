"""The tiny random-weight models for tests and the playground (`dreamgrid models create-tiny`), one per family.

"sd" is a genuine StableDiffusionPipeline folder (UNet, VAE, CLIP text encoder, real CLIP tokenizer,
scheduler); "sdxl" a StableDiffusionXLPipeline (a text_time UNet, two CLIP text encoders, the second with a
projection); "flux" a FluxPipeline (FLUX.1-dev's layout: a packed-latent transformer with guidance
embedding, CLIP and T5, a 16-channel VAE); "sd3" a StableDiffusion3Pipeline (an MMDiT, two CLIPs with
projections and T5); "zimage" a ZImagePipeline (Z-Image Turbo: a single-stream transformer, a Qwen3 text
encoder); "sd-inpaint" a StableDiffusionInpaintPipeline (the sd parts with a 9-channel UNet, as a
catalog entry's `inpaint_source`). T5's and Qwen's tokenizers are built offline too (bot/engine/tokenizer.py). All are saved with
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
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    Qwen3Config,
    Qwen3Model,
    T5Config,
    T5EncoderModel,
)

from bot.engine.folders import replaced_on_success
from bot.engine.tokenizer import build_clip_tokenizer, build_qwen_tokenizer, build_t5_tokenizer

FAMILIES = ("sd", "sdxl", "flux", "sd3", "zimage", "sd-inpaint")
DEFAULT_PATHS = {family: Path("models") / f"tiny-{family}" for family in FAMILIES}
DEFAULT_PATH = DEFAULT_PATHS["sd"]
PIPELINE_CLASSES = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline",
                    "flux": "FluxPipeline", "sd3": "StableDiffusion3Pipeline", "zimage": "ZImagePipeline",
                    "sd-inpaint": "StableDiffusionInpaintPipeline"}

# Each family's components: (folder, kind). Everything from_pretrained needs; a folder missing any file
# of these was interrupted while being written.
_COMPONENTS = {
    "sd": (("unet", "diffusers"), ("vae", "diffusers"), ("text_encoder", "transformers"),
           ("tokenizer", "clip")),
    "sdxl": (("unet", "diffusers"), ("vae", "diffusers"), ("text_encoder", "transformers"),
             ("text_encoder_2", "transformers"), ("tokenizer", "clip"), ("tokenizer_2", "clip")),
    "flux": (("transformer", "diffusers"), ("vae", "diffusers"), ("text_encoder", "transformers"),
             ("text_encoder_2", "transformers"), ("tokenizer", "clip"), ("tokenizer_2", "t5")),
    "sd3": (("transformer", "diffusers"), ("vae", "diffusers"), ("text_encoder", "transformers"),
            ("text_encoder_2", "transformers"), ("text_encoder_3", "transformers"), ("tokenizer", "clip"),
            ("tokenizer_2", "clip"), ("tokenizer_3", "t5")),
    "zimage": (("transformer", "diffusers"), ("vae", "diffusers"), ("text_encoder", "transformers"),
               ("tokenizer", "qwen")),
}
_COMPONENTS["sd-inpaint"] = _COMPONENTS["sd"]
_FILES = {
    "diffusers": ("config.json", "diffusion_pytorch_model.safetensors"),
    "transformers": ("config.json", "model.safetensors"),
    "clip": ("tokenizer_config.json", "vocab.json", "merges.txt"),
    "t5": ("tokenizer_config.json", "tokenizer.json"),
    "qwen": ("tokenizer_config.json", "tokenizer.json", "chat_template.jinja"),
}
REQUIRED = {
    family: ("model_index.json", "scheduler/scheduler_config.json") + tuple(
        f"{folder}/{name}" for folder, kind in components for name in _FILES[kind])
    for family, components in _COMPONENTS.items()
}


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

    `path` defaults to models/tiny-<family>. A complete tiny model of the other family
    (or an outdated one) at `path` is replaced; a folder with something else in it needs force=True.
    """
    _check_family(family)
    path = Path(path) if path is not None else DEFAULT_PATHS[family]
    if is_current(path, family) and not force:
        return path
    if path.exists() and not force and any(path.iterdir()) and not is_complete(path):
        raise FileExistsError(f"{path} exists but is not a complete tiny model; pass force=True to replace it")

    build = _BUILDERS[family]
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


def _build_flux_pipeline(work_dir: Path, seed: int) -> FluxPipeline:
    """FLUX.1 (dev: it embeds the distilled guidance): a rectified-flow transformer on the VAE's 16
    channels packed 2x2 into tokens, CLIP's pooled embedding and T5's sequence as the text."""
    tokenizer = build_clip_tokenizer(work_dir / "tokenizer")
    tokenizer_2 = build_t5_tokenizer(work_dir / "tokenizer_2", model_max_length=512)
    hidden = 32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=16 * 4,  # 2x2 patches of 16 latent channels
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=hidden,  # T5's width
            pooled_projection_dim=hidden,  # CLIP's pooled width
            guidance_embeds=True,
            axes_dims_rope=(4, 4, 8),  # sums to attention_head_dim
        )
        vae = _vae(scaling_factor=0.3611, shift_factor=0.1159, latent_channels=16)  # FLUX's latent space
        text_encoder = CLIPTextModel(_text_config(tokenizer, hidden))
        text_encoder_2 = T5EncoderModel(_t5_config(tokenizer_2, hidden))
    return FluxPipeline(
        scheduler=_flow_scheduler(use_dynamic_shifting=True, base_image_seq_len=16, max_image_seq_len=4096,
                                  base_shift=0.5, max_shift=1.15),
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2, transformer=transformer,
    )


def _build_sd3_pipeline(work_dir: Path, seed: int) -> StableDiffusion3Pipeline:
    """SD 3.5: an MMDiT on 16 latent channels in 2x2 patches; two CLIP encoders (pooled and per token)
    and T5, whose width the CLIP embeddings are padded to."""
    tokenizer = build_clip_tokenizer(work_dir / "tokenizer")
    tokenizer_2 = build_clip_tokenizer(work_dir / "tokenizer_2")
    tokenizer_3 = build_t5_tokenizer(work_dir / "tokenizer_3", model_max_length=256)
    clip_hidden, t5_hidden = 32, 64  # T5 at least as wide as both CLIPs' hidden states side by side
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = SD3Transformer2DModel(
            sample_size=64 // 8,
            patch_size=2,
            in_channels=16,
            out_channels=16,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=4,
            joint_attention_dim=t5_hidden,
            caption_projection_dim=32,
            pooled_projection_dim=2 * clip_hidden,  # both CLIPs' pooled projections, concatenated
            pos_embed_max_size=96,  # as SD 3.5: up to 96x96 patches (1536 px), cropped to the image
        )
        vae = _vae(scaling_factor=1.5305, shift_factor=0.0609, latent_channels=16)  # SD3's latent space
        text_encoder = CLIPTextModelWithProjection(_text_config(tokenizer, clip_hidden, clip_hidden))
        text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer_2, clip_hidden, clip_hidden, "gelu"))
        text_encoder_3 = T5EncoderModel(_t5_config(tokenizer_3, t5_hidden))
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=_flow_scheduler(shift=3.0), vae=vae,
        text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3, tokenizer_3=tokenizer_3,
    )


def _build_zimage_pipeline(work_dir: Path, seed: int) -> ZImagePipeline:
    """Z-Image Turbo: a single-stream transformer on FLUX's 16-channel latent space in 2x2 patches, with a
    Qwen3 language model (its second-to-last hidden states) as the text encoder."""
    tokenizer = build_qwen_tokenizer(work_dir / "tokenizer")
    hidden = 32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = ZImageTransformer2DModel(
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=16,
            dim=32,
            n_layers=1,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            cap_feat_dim=hidden,  # the text encoder's width
            axes_dims=(8, 4, 4),  # sums to dim / n_heads
            axes_lens=(1024, 96, 96),  # up to 1024 text tokens, 96x96 patches
        )
        vae = _vae(scaling_factor=0.3611, shift_factor=0.1159, latent_channels=16)  # FLUX.1's VAE
        text_encoder = Qwen3Model(Qwen3Config(
            vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=1024,
            pad_token_id=tokenizer.pad_token_id))
    return ZImagePipeline(scheduler=_flow_scheduler(shift=3.0), vae=vae, text_encoder=text_encoder,
                          tokenizer=tokenizer, transformer=transformer)


def _build_inpaint_pipeline(work_dir: Path, seed: int) -> StableDiffusionInpaintPipeline:
    """A dedicated SD inpainting model (a catalog entry's `inpaint_source`): the sd family's parts, with a
    UNet that also reads the mask and the masked image's latents (4 + 1 + 4 input channels)."""
    sd = _build_pipeline(work_dir, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        unet = _unet(in_channels=9, cross_attention_dim=32, attention_head_dim=4)
    return StableDiffusionInpaintPipeline(**{**sd.components, "unet": unet}, requires_safety_checker=False)


_BUILDERS = {"sd": _build_pipeline, "sdxl": _build_xl_pipeline, "flux": _build_flux_pipeline,
             "sd3": _build_sd3_pipeline, "zimage": _build_zimage_pipeline, "sd-inpaint": _build_inpaint_pipeline}


def cli(argv: list[str] | None = None) -> int:
    """`dreamgrid models create-tiny [--family sd|sdxl|...|ip-adapter-sd|ip-adapter-sdxl] [--path PATH | PATH]
    [--base PATH] [--seed 0] [--force]`."""
    from bot.engine.ip_adapter import ADAPTER_FAMILIES

    parser = argparse.ArgumentParser(
        prog="dreamgrid models create-tiny",
        description="Build a tiny random-weight test model (its images are noise).",
    )
    parser.add_argument("target", nargs="?", type=Path, default=None, metavar="path",
                        help="target folder (default: models/tiny-<family>)")
    parser.add_argument("--path", type=Path, default=None, help="target folder (the same as the positional path)")
    parser.add_argument("--family", choices=FAMILIES + tuple(ADAPTER_FAMILIES), default="sd",
                        help="sd: SD 1.x; sdxl: SDXL; flux: FLUX.1-dev; sd3: SD 3.5; zimage: Z-Image Turbo; "
                             "sd-inpaint: an SD inpainting model; ip-adapter-sd, ip-adapter-sdxl: an IP-Adapter "
                             "and image encoder for the tiny sd (sdxl) model's UNet (default: %(default)s)")
    parser.add_argument("--base", type=Path, default=None,
                        help="ip-adapter-*: the tiny model whose UNet it is for (default: models/tiny-sd or "
                             "models/tiny-sdxl)")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete model is there")
    args = parser.parse_args(argv)
    if args.target is not None and args.path is not None and args.target != args.path:
        parser.error("give the target folder once: as a positional path or with --path")
    if args.family in ADAPTER_FAMILIES:
        return _adapter_cli(args)
    if args.base is not None:
        parser.error("--base is for the ip-adapter-* families")
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


def _adapter_cli(args: argparse.Namespace) -> int:
    from bot.engine.ip_adapter import (create_tiny_ip_adapter, default_adapter_path, default_base_path,
                                       is_current_adapter)

    path = args.path or args.target or default_adapter_path(args.family)
    base = args.base or default_base_path(args.family)
    if is_current_adapter(path, base) and not args.force:
        print(f"{path}: already complete (use --force to rebuild)")
        return 0
    started = time.perf_counter()
    try:
        create_tiny_ip_adapter(path, base, seed=args.seed, family=args.family, force=args.force)
    except (OSError, ValueError) as exc:
        print(f"create-tiny: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: tiny {args.family} written in {time.perf_counter() - started:.1f} s (for {base})")
    return 0


def _vae(scaling_factor: float, shift_factor: float | None = None, latent_channels: int = 4) -> AutoencoderKL:
    """The 8x-downsampling VAE every family shares (4 blocks, as in every SD model); the family sets its
    latent space: 4 channels (SD, SDXL) or 16 (SD3, FLUX), and their scale and shift."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=VAE_BLOCKS,
        down_block_types=("DownEncoderBlock2D",) * len(VAE_BLOCKS),
        up_block_types=("UpDecoderBlock2D",) * len(VAE_BLOCKS),
        latent_channels=latent_channels,
        sample_size=64,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        # SD3/FLUX's VAEs decode without the quantisation convolutions SD's VAE has
        use_quant_conv=latent_channels == 4,
        use_post_quant_conv=latent_channels == 4,
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


def _t5_config(tokenizer, hidden: int) -> T5Config:
    return T5Config(
        vocab_size=len(tokenizer),
        d_model=hidden,
        d_kv=8,
        d_ff=2 * hidden,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",  # T5 v1.1, the variant FLUX and SD3 use
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )


def _flow_scheduler(**settings: object) -> FlowMatchEulerDiscreteScheduler:
    """The rectified-flow Euler sampler SD3 and FLUX ship with."""
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, **settings)


def _scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,  # the value diffusers expects for SD schedulers (it rewrites and warns otherwise)
        timestep_spacing="trailing",  # sensible for the few steps these models are run with
    )


def _unet(in_channels: int = 4, **family: object) -> UNet2DConditionModel:
    """The two-level UNet both families share (64 px images, 8x8 latents), with the family's own settings."""
    return UNet2DConditionModel(
        sample_size=64 // 8,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **family,
    )
