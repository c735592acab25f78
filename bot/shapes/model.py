"""The architecture of the `shapes` model: a standard diffusers StableDiffusionPipeline, very small.

- VAE: an AutoencoderKL whose weights are set by hand, not trained ("pixel" VAE): the encoder is a 2x2
  box filter (64x64 RGB -> 32x32x3 latents, the picture itself at half size), the decoder a nearest
  2x up-sampling. Its GroupNorms are made linear by two huge constant channels (+K, -K) that pin each
  group's mean at 0 and its variance at a constant, and a bias keeps each SiLU in its linear range; so
  the round trip is exact to ~1e-3 with no training and img2img/inpainting see the real picture.
  (A learned 8x VAE, `vae_kind="learned"`, is kept as an option: it trained far too slowly on 2 CPUs.)
- UNet: UNet2DConditionModel at 32x32, v-prediction. The 32x32 level is narrow (16 channels, three
  ResNets) and has no attention: it turns pixels into features and back and draws the edges, at half
  the cost of a wide one. The 16x16 and 8x8 levels have self- and cross-attention, where the prompt
  places and colours the shape. Training starts with one ResNet per level and grows the 32x32 level to
  three (`grow_unet`, bot/shapes/train.py) for the last 3,000 steps: the one-ResNet model drew squares
  with bumpy sides (it drew the asked shape for 93.8% of `bench shapes` prompts, the grown one 96.5%).
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
    vae_kind: str = "pixel"  # "pixel" (hand-set, exact, 2x) or "learned" (trained, 2**(len(vae_channels)-1) x)
    vae_channels: tuple[int, ...] = (8, 8)
    latent_channels: int = 4  # the pixel VAE: RGB + a channel that is always 0 (inpainting wants 4)
    # Few, wide GroupNorm groups: a flat-colour picture normalised per channel loses its colour.
    vae_groups: int = 1
    unet_groups: int = 4
    unet_channels: tuple[int, ...] = (16, 64, 128)
    unet_attention: tuple[bool, ...] = (False, True, True)  # per level: a transformer block or plain ResNets
    unet_only_cross_attention: tuple[bool, ...] = (False, False, False)
    unet_layers_per_block: int | tuple[int, ...] = (3, 1, 1)  # ResNets per level (int: the same everywhere)
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
        d["unet_attention"] = list(self.unet_attention)
        d["unet_only_cross_attention"] = list(self.unet_only_cross_attention)
        if isinstance(self.unet_layers_per_block, tuple):
            d["unet_layers_per_block"] = list(self.unet_layers_per_block)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ShapesConfig":
        d = dict(d)
        d["vae_channels"] = tuple(d["vae_channels"])
        d["unet_channels"] = tuple(d["unet_channels"])
        d["unet_only_cross_attention"] = tuple(d["unet_only_cross_attention"])
        d["unet_attention"] = tuple(d.get("unet_attention", (True,) * len(d["unet_channels"])))
        if isinstance(d.get("unet_layers_per_block"), list):
            d["unet_layers_per_block"] = tuple(d["unet_layers_per_block"])
        return cls(**d)

    @property
    def layers(self) -> tuple[int, ...]:
        """ResNets per UNet level, as a tuple."""
        n = self.unet_layers_per_block
        return tuple(n) if isinstance(n, tuple) else (n,) * len(self.unet_channels)


TINY_CONFIG = ShapesConfig(
    resolution=32,
    unet_groups=8,
    unet_channels=(32, 32),
    unet_attention=(True, True),
    unet_only_cross_attention=(True, False),
    unet_layers_per_block=1,
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
    if config.vae_kind == "pixel":
        return build_pixel_vae(config.resolution)
    n = len(config.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(config.vae_channels),
        layers_per_block=1,
        latent_channels=config.latent_channels,
        norm_num_groups=config.vae_groups,
        sample_size=config.resolution,
        mid_block_add_attention=False,
        scaling_factor=1.0,  # set from the data after the VAE is trained
    )


PIXEL_VAE_BIG = 1000.0  # the constant channels that make GroupNorm linear
PIXEL_VAE_BETA = 10.0  # keeps SiLU(x + beta) = x + beta to ~1e-4
PIXEL_VAE_LOGVAR = -30.0  # the posterior is a point: sample() == mean


def build_pixel_vae(resolution: int = 64, channels: int = 8) -> AutoencoderKL:
    """An exact 2x AutoencoderKL with hand-set weights: encode = 2x2 box filter, decode = nearest 2x.

    Latents have 4 channels (RGB and a constant 0), as StableDiffusionInpaintPipeline requires.

    Channel layout inside encoder and decoder: [x(3), -x(3), +K, -K]. Every ResNet block is the identity
    (its last conv is zero) and the single-group GroupNorms see mean 0 and a variance dominated by K^2,
    so they only rescale; the GroupNorm's affine undoes the scale and adds beta, the SiLU is linear there
    and conv_out removes beta.
    """
    c = channels
    big, beta = PIXEL_VAE_BIG, PIXEL_VAE_BETA
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(c, c),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=1,
        sample_size=resolution,
        mid_block_add_attention=False,
        scaling_factor=1.0,
    )
    with torch.no_grad():
        for p in vae.parameters():
            p.zero_()
        for m in vae.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.fill_(1.0)

        def split(conv):  # 3 channels -> [x, -x, K, -K, 0...]
            for i in range(3):
                conv.weight[i, i, 1, 1] = 1.0
                conv.weight[3 + i, i, 1, 1] = -1.0
            conv.bias[6], conv.bias[7] = big, -big

        def linear_out(norm, conv):
            norm.weight.fill_((2 * big * big / c) ** 0.5)  # the group's std: undo the normalisation
            norm.bias[:3] = beta
            for i in range(3):
                conv.weight[i, i, 1, 1] = 1.0
                conv.bias[i] = -beta

        enc, dec = vae.encoder, vae.decoder
        split(enc.conv_in)
        down = enc.down_blocks[0].downsamplers[0].conv  # 3x3 stride 2 on rows/cols [2i, 2i+2]: use the 2x2 box
        for i in range(6):
            down.weight[i, i, :2, :2] = 0.25
        down.bias[6], down.bias[7] = big, -big
        linear_out(enc.conv_norm_out, enc.conv_out)
        enc.conv_out.bias[4:8] = PIXEL_VAE_LOGVAR  # latent channel 3 is 0, with the same tiny variance
        for i in range(8):
            vae.quant_conv.weight[i, i, 0, 0] = 1.0
        for i in range(4):
            vae.post_quant_conv.weight[i, i, 0, 0] = 1.0
        split(dec.conv_in)
        up = dec.up_blocks[0].upsamplers[0].conv  # after nearest 2x interpolation: keep it
        for i in range(6):
            up.weight[i, i, 1, 1] = 1.0
        up.bias[6], up.bias[7] = big, -big
        linear_out(dec.conv_norm_out, dec.conv_out)
    # Its latents are the picture at half size: live previews project them with the identity.
    vae.register_to_config(_dreamgrid_latent_rgb=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    return vae.requires_grad_(False)


def build_unet(config: ShapesConfig) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=config.latent_size,
        in_channels=config.latent_channels,
        out_channels=config.latent_channels,
        block_out_channels=tuple(config.unet_channels),
        layers_per_block=config.unet_layers_per_block,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in config.unet_attention),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.unet_attention)),
        # diffusers' historical naming: this is the number of heads per block.
        attention_head_dim=tuple(max(1, c // config.head_dim) for c in config.unet_channels),
        cross_attention_dim=config.text_width,
        norm_num_groups=config.unet_groups,
        only_cross_attention=tuple(config.unet_only_cross_attention),
    )


@torch.no_grad()
def grow_unet(seed: UNet2DConditionModel, config: ShapesConfig) -> UNet2DConditionModel:
    """`config`'s UNet, computing exactly what `seed` (one ResNet per level, maybe less attention) computes.

    Every new part starts as an identity, so a grown model loses nothing it has learned and training then
    gives the new parts their work:
    - a new ResNet's last conv is zero; in the up path, where it also takes a skip connection, its 1x1
      shortcut passes the main input through and drops the skip. Down level i: [old, new...]; up level i:
      [old first (it takes the level below), new..., old last];
    - a new transformer block's output projection is zero (it adds nothing to its residual).
    """
    layers = seed.config.layers_per_block
    if any(n != 1 for n in (layers if isinstance(layers, (list, tuple)) else [layers])):
        raise ValueError("grow_unet starts from a UNet with one ResNet per level")
    levels = len(config.unet_channels)
    seed_attention = [t.startswith("CrossAttn") for t in seed.config.down_block_types]
    for level, (n, attention) in enumerate(zip(config.layers, config.unet_attention)):
        if n > 1 and seed_attention[level]:
            raise ValueError(f"UNet level {level} has attention: only levels of plain ResNets can grow deeper")
        if seed_attention[level] and not attention:
            raise ValueError(f"UNet level {level} would lose its attention: growing only adds")
    grown = build_unet(config)
    old = seed.state_dict()
    new = grown.state_dict()
    for key in new:
        parts = key.split(".")
        old_key = key
        if parts[0] == "up_blocks" and parts[2] == "resnets":
            n = config.layers[levels - 1 - int(parts[1])]
            index = int(parts[3])
            old_key = ".".join(parts[:3] + [str(0 if index == 0 else 1)] + parts[4:]) if index in (0, n) else None
        elif parts[0] == "down_blocks" and parts[2] == "resnets" and parts[3] != "0":
            old_key = None
        if old_key in old:
            new[key] = old[old_key]
    grown.load_state_dict(new)
    for level, n in enumerate(config.layers):
        down, up = grown.down_blocks[level], grown.up_blocks[levels - 1 - level]
        for resnet in [*down.resnets[1:], *up.resnets[1:n]]:
            resnet.conv2.weight.zero_()
            resnet.conv2.bias.zero_()
        for resnet in up.resnets[1:n]:
            shortcut = resnet.conv_shortcut.weight  # (out, main + skip, 1, 1)
            shortcut.zero_()
            shortcut[:, : shortcut.shape[0], 0, 0] = torch.eye(shortcut.shape[0])
            resnet.conv_shortcut.bias.zero_()
        if not seed_attention[level] and config.unet_attention[level]:
            for block in [*down.attentions, *up.attentions]:
                block.proj_out.weight.zero_()
                block.proj_out.bias.zero_()
    return grown


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
