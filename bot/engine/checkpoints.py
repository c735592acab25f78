"""Single-file checkpoints: the one-.safetensors models of AUTOMATIC1111 and ComfyUI (models/checkpoints/).

Such a file holds every weight of a model in the original (CompVis/SGM/BFL) key layout, but none of its
configs or tokenizers; diffusers' from_single_file converts the weights and takes the rest from a local
diffusers-style config folder. Everything here works offline: the family is read from the file's header
(no weights loaded), and default config folders are assembled from the configs shipped in
bot/bench/architectures plus CLIP tokenizers built from models/clip-bpe.

Pickle checkpoints (.ckpt, .pt, .pth, .bin) are refused, never opened: unpickling runs whatever code the file
holds. export_single_file writes a diffusers SD/SDXL folder as such a file (the inverse of diffusers'
conversion), which is how the tests get single-file checkpoints without downloading one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError, safe_open

from bot.bench.architectures import ARCHITECTURES_DIR
from bot.engine.families import family_of
from bot.engine.folders import replaced_on_success
from bot.engine.requests import EngineError
from bot.engine.tokenizer import build_clip_tokenizer

CHECKPOINTS_DIR = "checkpoints"  # under the models dir
CONFIG_CACHE_DIR = ".single-file-configs"  # a suggested cache for default_config, under the models dir
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

SD, SDXL, SD3, FLUX = "stable-diffusion", "stable-diffusion-xl", "stable-diffusion-3", "flux"
A_FAMILY = {SD: "an SD 1.x/2.x", SDXL: "an SDXL", SD3: "an SD3", FLUX: "a FLUX.1"}  # for messages



@dataclass(frozen=True)
class _DefaultConfig:
    name: str  # its folder under default_config's cache dir
    arch: str  # the folder of bot/bench/architectures whose configs describe it
    overrides: dict  # config file -> the values that differ from the architecture's


# (family, variant) -> its default config. SD 2.x base and SD-Turbo share one architecture (SD 2.1 base,
# which predicts the noise, as "v2" does); the 768 px SD 2.x models predict v instead, which nothing in their
# weights says: detect never answers "v2-v", a catalog entry asks for it.
DEFAULT_CONFIGS = {
    (SD, "v1"): _DefaultConfig("sd15", "sd15", {}),
    (SD, "v2"): _DefaultConfig("sd2", "sd-turbo", {}),
    (SD, "v2-v"): _DefaultConfig("sd2-768-v", "sd-turbo", {
        "scheduler/scheduler_config.json": {"prediction_type": "v_prediction"},
        "unet/config.json": {"sample_size": 96, "upcast_attention": True}}),
    (SDXL, "xl_base"): _DefaultConfig("sdxl", "sdxl", {}),
}
# Bumped when default_config builds its folders differently, so that older cached ones are rebuilt.
CONFIG_VERSION = 1
CONFIG_MARKER = "dreamgrid-single-file-config.json"

UNET, VAE = "model.diffusion_model.", "first_stage_model."
CLIP_SD1, OPEN_CLIP_SD2 = "cond_stage_model.transformer.", "cond_stage_model.model."
CLIP_XL, OPEN_CLIP_XL = "conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."
OPEN_CLIP_XL_REFINER = "conditioner.embedders.0.model."
SD3_BLOCK = "joint_blocks.0.context_block.adaLN_modulation.1.bias"
FLUX_BLOCK = "double_blocks.0.img_attn.norm.key_norm.scale"


class CheckpointError(EngineError):
    """A checkpoint that cannot be used, said so a user can act on it: never a local absolute path, only the
    file's name relative to the models dir."""


@dataclass(frozen=True)
class Checkpoint:
    path: str  # relative to the models dir, with "/": "checkpoints/dreamshaper_8.safetensors"
    size: int  # bytes
    family: str | None  # the catalog pipeline name, or None where there is a problem
    problem: str | None  # why it cannot be used (CheckpointError's message), or None
    variant: str | None = None  # diffusers' model type ("v1", "v2", "xl_base", "flux-dev", ...), with family


@dataclass(frozen=True)
class Detected:
    family: str  # the catalog pipeline name
    variant: str  # diffusers' model type: "v1", "v2", "xl_base", "sd3", "sd35_large", "flux-dev", ...
    text_encoders: bool  # the file holds its text encoders (SD3 and FLUX files often hold only the transformer)


class _Tensor(NamedTuple):
    """What infer_diffusers_model_type reads of a tensor: its shape (from the header, no weights loaded)."""
    shape: torch.Size


def display_name(path: Path | str, models_dir: Path | str | None = None) -> str:
    """`path` as users may see it: relative to `models_dir` when inside it, else only the file's name."""
    path = Path(path)
    if models_dir is not None:
        try:
            return Path(os.path.abspath(path)).relative_to(os.path.abspath(models_dir)).as_posix()
        except ValueError:
            pass
    return path.name


def detect_family(path: Path | str, models_dir: Path | str | None = None) -> str:
    """The catalog pipeline name of the checkpoint at `path` (see detect)."""
    return detect(path, models_dir).family


def detect(path: Path | str, models_dir: Path | str | None = None) -> Detected:
    """What the checkpoint at `path` is, from its header only; CheckpointError for anything we cannot run.

    diffusers' infer_diffusers_model_type looks for keys deep in full-size models (the 12th UNet output
    block, the 10th OpenCLIP layer) and calls anything it does not know "v1", so the SD and SDXL layouts
    are told apart here by their component prefixes, which holds at any size; diffusers names the rest.
    """
    name = display_name(path, models_dir)
    return _detect(name, _read_header(Path(path), name))


def _detect(name: str, shapes: dict[str, tuple[int, ...]]) -> Detected:
    tensors = {key: _Tensor(torch.Size(shape)) for key, shape in shapes.items()}
    if any(key in shapes for key in (SD3_BLOCK, UNET + SD3_BLOCK)):
        variant = _diffusers_type(tensors)
        variant = variant if variant in ("sd3", "sd35_medium", "sd35_large") else "sd3"
        return Detected(SD3, variant, _has(shapes, "text_encoders.clip_l.") and _has(shapes, "text_encoders.clip_g."))
    if any(key in shapes for key in (FLUX_BLOCK, UNET + FLUX_BLOCK)):
        variant = _diffusers_type(tensors) or "flux-dev"
        if variant not in ("flux-dev", "flux-schnell"):
            raise CheckpointError(f"{name} is a {variant} model, not a FLUX.1 text-to-image one; "
                                  "Dreamgrid cannot run it")
        return Detected(FLUX, variant, _has(shapes, "text_encoders."))
    conv_in = shapes.get(UNET + "input_blocks.0.0.weight")
    if conv_in is not None:
        return _detect_unet(name, shapes, conv_in)
    raise CheckpointError(f"{name} {_describe_unknown(tensors)}")


def _has(shapes: dict, prefix: str) -> bool:
    return any(key.startswith(prefix) for key in shapes)


def _detect_unet(name: str, shapes: dict, conv_in: tuple) -> Detected:
    """An SD 1.x/2.x or SDXL checkpoint (a UNet under model.diffusion_model.), by its text encoders' layout."""
    if len(conv_in) == 4 and conv_in[1] != 4:
        kind = {9: "an inpainting", 8: "an InstructPix2Pix"}.get(conv_in[1], f"a {conv_in[1]}-channel")
        raise CheckpointError(f"{name} is {kind} checkpoint; only text-to-image checkpoints (4 latent "
                              "channels in) are supported")
    if _has(shapes, OPEN_CLIP_XL_REFINER) and not _has(shapes, OPEN_CLIP_XL):
        raise CheckpointError(f"{name} is an SDXL refiner: it only refines SDXL images and cannot make its own; "
                              "use an SDXL base checkpoint")
    if _has(shapes, OPEN_CLIP_XL):
        return Detected(SDXL, "xl_base", True)
    if _has(shapes, CLIP_SD1):
        return Detected(SD, "v1", True)
    if _has(shapes, OPEN_CLIP_SD2):
        return Detected(SD, "v2", True)
    # A UNet alone (the config folder must then hold the text encoders): SDXL's has its size/crop embedding.
    if UNET + "label_emb.0.0.weight" in shapes:
        return Detected(SDXL, "xl_base", False)
    context = next((shape[-1] for key, shape in shapes.items() if key.endswith("attn2.to_k.weight")), None)
    return Detected(SD, "v2" if context == 1024 else "v1", False)


def _diffusers_type(tensors: dict) -> str | None:
    """diffusers' model type for a header, or None where its guess fails: it indexes tensors it expects in
    full-size models and treats them as real ones, which header shapes are not."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    try:
        return infer_diffusers_model_type(tensors)
    except Exception:
        return None


def _read_header(path: Path, name: str) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, from the safetensors header alone (a pickle is refused unopened)."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(pickle_problem(name))
    if not path.is_file():
        raise CheckpointError(f"{name} was not found")
    try:
        with safe_open(str(path), framework="pt") as file:
            return {key: tuple(file.get_slice(key).get_shape()) for key in file.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        reason = str(exc).replace(str(path), name).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{name} is not a valid .safetensors file ({reason}); "
                              "it may be cut short or damaged: download it again") from None


def pickle_problem(name: str) -> str:
    return (f"{name} is a pickle file: loading one runs whatever code it holds, so Dreamgrid never opens them. "
            "Use the .safetensors version of the model, or convert this file to .safetensors on a machine "
            "where you trust it (torch.load(..., weights_only=True), then safetensors.torch.save_file)")


def _describe_unknown(tensors: dict) -> str:
    """What a file that is no checkpoint we run holds, and where it belongs if we can tell."""
    keys = list(tensors)
    if not keys:
        return "holds no tensors"
    found = f"holds {len(keys)} tensors but none of the keys of an SD, SDXL, SD3 or FLUX checkpoint"
    if any(re.search(r"lora|lokr|hada_|\.alpha$", key) for key in keys):
        return f"{found}; it looks like a LoRA (put those in models/loras/)"
    variant = _diffusers_type(tensors)  # checked after the LoRA test: a LoRA's keys can look like a model's
    if variant not in (None, "v1"):  # "v1" is diffusers' answer for anything it does not know
        return f"is a {variant} model; Dreamgrid runs SD, SDXL, SD3 and FLUX.1 checkpoints"
    if all(key.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")) for key in keys):
        return f"{found}; it looks like a VAE on its own"
    if any(key.startswith(("control_model.", "controlnet_")) for key in keys):
        return f"{found}; it looks like a ControlNet"
    if len(keys) <= 4 and set(keys) & {"emb_params", "clip_l", "clip_g"}:
        return f"{found}; it looks like a textual-inversion embedding"
    if any(key.startswith(("down_blocks.", "transformer_blocks.", "text_model.", "encoder.layers.")) for key in keys):
        return (f"{found}; it looks like one component of a diffusers model (those are folders: put the whole "
                "folder in models/)")
    return f"{found}; it may be a LoRA (put those in models/loras/) or a VAE"


def list_checkpoints(models_dir: Path | str) -> list[Checkpoint]:
    """Every .safetensors (and pickle, with its problem) file under models_dir/checkpoints/, sorted by path."""
    models_dir = Path(models_dir)
    root = models_dir / CHECKPOINTS_DIR
    found = []
    for path in sorted(root.rglob("*")) if root.is_dir() else ():
        relative = path.relative_to(models_dir)
        hidden = any(part.startswith(".") for part in relative.parts)  # e.g. an export being written
        suffix = path.suffix.lower()
        if hidden or not path.is_file() or suffix not in (".safetensors", *PICKLE_SUFFIXES):
            continue
        try:
            detected = detect(path, models_dir)
        except CheckpointError as exc:
            found.append(Checkpoint(relative.as_posix(), path.stat().st_size, None, str(exc)))
        else:
            found.append(Checkpoint(relative.as_posix(), path.stat().st_size, detected.family, None,
                                    detected.variant))
    return found


def default_config(family: str, variant: str, cache_dir: Path | str) -> Path:
    """A complete offline config folder for a `family`/`variant` checkpoint, built once under `cache_dir`.

    The shipped upstream component configs (no weights) plus CLIP tokenizers built from models/clip-bpe:
    everything from_single_file reads besides the weights. No safety checker or feature extractor: the
    engine loads its safety checker on its own.
    """
    try:
        default = DEFAULT_CONFIGS[family, variant]
    except KeyError:
        needs = {SD3: "an SD3 diffusers folder", FLUX: "a FLUX.1 diffusers folder with its text encoders and VAE"}
        raise CheckpointError(f"Dreamgrid ships no config for {A_FAMILY.get(family, family)} "
                              f"({variant}) checkpoint; its catalog entry must name a config folder"
                              + (f" ({needs[family]})" if family in needs else "")) from None
    folder = Path(cache_dir) / default.name
    marker = folder / CONFIG_MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("version") == CONFIG_VERSION:
        return folder
    shipped = ARCHITECTURES_DIR / default.arch
    with replaced_on_success(folder) as staging:
        for config in shipped.glob("*/*.json"):
            relative = config.relative_to(shipped).as_posix()
            values = {**json.loads(config.read_text()), **default.overrides.get(relative, {})}
            (staging / relative).parent.mkdir(exist_ok=True)
            (staging / relative).write_text(json.dumps(values, indent=2) + "\n")
        index = json.loads((shipped / "model_index.json").read_text())
        if family == SD:
            index.update(safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False)
        (staging / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        # OpenAI's CLIP tokenizer pads with <|endoftext|>; OpenCLIP's (SD 2.x's, SDXL's second) with "!".
        open_clip = {"tokenizer_2"} | ({"tokenizer"} if variant.startswith("v2") else set())
        for name in ("tokenizer", "tokenizer_2"):
            if name in index:
                tokenizer = build_clip_tokenizer(staging / name)
                if name in open_clip:
                    tokenizer.pad_token = "!"
                    tokenizer.save_pretrained(staging / name)
        (staging / CONFIG_MARKER).write_text(json.dumps({"version": CONFIG_VERSION, "family": family,
                                                         "variant": variant}) + "\n")
    return folder


def config_folder(path: Path | str, config: str, models_dir: Path | str) -> Path:
    """The config folder the checkpoint at `path` loads with: `config` (a folder under the models dir, as
    the catalog entry names it), else the shipped default for the family and variant the file holds."""
    if config:
        folder = Path(models_dir) / config
        if not (folder / "model_index.json").is_file():
            raise CheckpointError(f"config {config} is not a diffusers model folder in the models folder")
        return folder
    detected = detect(path, models_dir)
    return default_config(detected.family, detected.variant, Path(models_dir) / CONFIG_CACHE_DIR)


def load_single_file(path: Path | str, family: str, config: Path | str, dtype: torch.dtype | None = None,
                     models_dir: Path | str | None = None):
    """The diffusers txt2img pipeline of the checkpoint at `path`, with `config` (a local diffusers-style
    folder) for everything the file does not hold; offline. CheckpointError (user-safe) when it cannot."""
    path, config = Path(path), Path(config)
    name, config_name = display_name(path, models_dir), display_name(config, models_dir)
    shapes = _read_header(path, name)
    detected = _detect(name, shapes)
    if detected.family != family:
        raise CheckpointError(f"{name} is {A_FAMILY[detected.family]} checkpoint, but its catalog entry "
                              f"says pipeline = \"{family}\"; fix the entry's `pipeline`")
    _check_config(config, family, config_name)
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    try:
        return _load(path, shapes, detected, config, dtype, name, config_name)
    except (SingleFileComponentError, OSError, ValueError, KeyError, RuntimeError) as exc:
        reason = str(exc)
        for local, shown in ((config, config_name), (path, name)):
            for form in (str(local.resolve()), os.path.abspath(local), str(local)):
                reason = reason.replace(form, shown)
        # diffusers' first sentence says what went wrong; the rest is advice for its API's callers
        reason = re.split(r"\.\s+(?=[A-Z])", reason.strip())[0] if reason.strip() else type(exc).__name__
        raise CheckpointError(f"{name} could not be loaded as {A_FAMILY[family]} checkpoint with the "
                              f"config {config_name}: {reason}") from exc


def _pipeline_class(family: str) -> str:
    return family_of(family).pipeline_classes[0]


def _check_config(config: Path, family: str, config_name: str) -> None:
    try:
        index = json.loads((config / "model_index.json").read_text())
    except (OSError, ValueError):
        raise CheckpointError(f"config {config_name} is not a diffusers model folder (no readable "
                              "model_index.json)") from None
    expected = _pipeline_class(family)
    if index.get("_class_name") != expected:
        raise CheckpointError(f"config {config_name} is a {index.get('_class_name')} folder; "
                              f"{A_FAMILY[family]} checkpoint needs a {expected} one")


# The SD pipelines' safety checker is the engine's business (bot/engine/safety.py), never the pipeline's.
_NO_SAFETY_CHECKER = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _load(path: Path, shapes: dict, detected: Detected, config: Path, dtype, name: str, config_name: str):
    import diffusers

    family = detected.family
    pipeline_class = getattr(diffusers, _pipeline_class(family))
    if family == FLUX or not detected.text_encoders:
        return _denoiser_only(pipeline_class, path, family, config, dtype, name, config_name)
    extra = {}
    if family in (SD, SDXL) and not _has(shapes, VAE):
        extra["vae"] = _config_vae(config, dtype, name, config_name)
    if family == SD:
        extra.update(_NO_SAFETY_CHECKER)
    elif family == SDXL and _encoders_as_wide(shapes):
        extra["text_encoder_2"] = _sdxl_open_clip(path, config, dtype)
    elif family == SD3 and not (_has_weights(config / "text_encoder_3")
                                or _has(shapes, "text_encoders.t5xxl.")):
        extra.update(text_encoder_3=None, tokenizer_3=None)  # SD3 runs without T5 (a zero T5 embedding)
    return pipeline_class.from_single_file(str(path), config=str(config), local_files_only=True,
                                           torch_dtype=dtype, **extra)


def _denoiser_only(pipeline_class, path: Path, family: str, config: Path, dtype, name: str, config_name: str):
    """A file that holds only the denoiser (a UNet or a transformer; any VAE or text encoder in it is left
    unused): the rest of the model, weights and all, comes from the config folder."""
    import diffusers

    denoiser = "unet" if family in (SD, SDXL) else "transformer"
    missing = [part for part in ("vae", "text_encoder") if not _has_weights(config / part)]
    if missing:
        raise CheckpointError(f"{name} holds only the {denoiser}; its config {config_name} must then be a full "
                              f"diffusers model, but it has no weights for {' or '.join(missing)}")
    index = json.loads((config / "model_index.json").read_text())
    model = getattr(diffusers, index[denoiser][1]).from_single_file(
        str(path), config=str(config), subfolder=denoiser, local_files_only=True, torch_dtype=dtype)
    extra = _NO_SAFETY_CHECKER if family == SD else {}
    return pipeline_class.from_pretrained(str(config), **{denoiser: model}, local_files_only=True,
                                          torch_dtype=dtype, **extra)


def _has_weights(folder: Path) -> bool:
    return folder.is_dir() and (any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json")))


def _config_vae(config: Path, dtype, name: str, config_name: str):
    """The VAE of a checkpoint saved without one ("no VAE" releases): the config folder's."""
    from diffusers import AutoencoderKL

    if not _has_weights(config / "vae"):
        raise CheckpointError(f"{name} holds no VAE; its config {config_name} must then have VAE weights "
                              "(vae/diffusion_pytorch_model.safetensors), but it has none")
    return AutoencoderKL.from_pretrained(str(config), subfolder="vae", local_files_only=True, torch_dtype=dtype)


def _encoders_as_wide(shapes: dict) -> bool:
    """SDXL's two text encoders have position embeddings of the same width (only in test-sized models).

    diffusers picks the checkpoint's encoder for a text model by that width, trying the first (CLIP ViT-L)
    one first, so it would then load the first encoder's weights into the second."""
    first = shapes.get(CLIP_XL + "text_model.embeddings.position_embedding.weight")
    second = shapes.get(OPEN_CLIP_XL + "positional_embedding")
    return first is not None and second is not None and first[-1] == second[-1]


def _sdxl_open_clip(path: Path, config: Path, dtype):
    """SDXL's second text encoder, converted from its own keys only (see _encoders_as_wide)."""
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    from transformers import CLIPTextModelWithProjection

    with safe_open(str(path), framework="pt") as file:
        weights = {key: file.get_tensor(key) for key in file.keys() if key.startswith(OPEN_CLIP_XL)}
    return create_diffusers_clip_model_from_ldm(CLIPTextModelWithProjection, weights, subfolder="text_encoder_2",
                                                config=str(config), torch_dtype=dtype, local_files_only=True)


# --- export: a diffusers SD/SDXL folder -> one file in the original layout ----------------------------------

_UNET_TOP = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
             "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2.",
             "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2."}
_UNET_RESNET = {"norm1.": "in_layers.0.", "conv1.": "in_layers.2.", "norm2.": "out_layers.0.",
                "conv2.": "out_layers.3.", "time_emb_proj.": "emb_layers.1.", "conv_shortcut.": "skip_connection."}
_VAE_TOP = {"encoder.conv_norm_out.": "encoder.norm_out.", "decoder.conv_norm_out.": "decoder.norm_out.",
            "encoder.conv_in.": "encoder.conv_in.", "encoder.conv_out.": "encoder.conv_out.",
            "decoder.conv_in.": "decoder.conv_in.", "decoder.conv_out.": "decoder.conv_out.",
            "quant_conv.": "quant_conv.", "post_quant_conv.": "post_quant_conv."}
_VAE_ATTENTION = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out."}
_OPEN_CLIP_LAYER = {"layer_norm1.": "ln_1.", "layer_norm2.": "ln_2.", "mlp.fc1.": "mlp.c_fc.",
                    "mlp.fc2.": "mlp.c_proj.", "self_attn.out_proj.": "attn.out_proj."}


def _renamed(rest: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if rest.startswith(old):
            return new + rest[len(old):]
    return rest


def _unet_to_original(state: dict, layers_per_block: int) -> dict:
    """diffusers UNet2DConditionModel keys -> the LDM UNet's (the inverse of convert_ldm_unet_checkpoint).

    The LDM UNet numbers its blocks in one sequence: input_blocks.0 is conv_in, then each level's resnets
    (each with its attention at index 1) and its downsampler; output_blocks likewise with one more layer a
    level, the upsampler after the attention where there is one.
    """
    per_level = layers_per_block + 1
    has_attention = {int(match[1]) for key in state if (match := re.match(r"up_blocks\.(\d+)\.attentions\.", key))}
    out = {}
    for key, value in state.items():
        if match := re.match(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            side, level, part, layer, rest = match.groups()
            index = int(level) * per_level + int(layer) + (1 if side == "down" else 0)
            blocks = "input_blocks" if side == "down" else "output_blocks"
            rest = _renamed(rest, _UNET_RESNET) if part == "resnets" else rest
            new = f"{blocks}.{index}.{0 if part == 'resnets' else 1}.{rest}"
        elif match := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"input_blocks.{int(match[1]) * per_level + per_level}.0.op.{match[2]}"
        elif match := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            level = int(match[1])
            new = f"output_blocks.{level * per_level + layers_per_block}.{2 if level in has_attention else 1}" \
                  f".conv.{match[2]}"
        elif match := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key):
            part, layer, rest = match.groups()
            index = 2 * int(layer) if part == "resnets" else 2 * int(layer) + 1
            new = f"middle_block.{index}.{_renamed(rest, _UNET_RESNET) if part == 'resnets' else rest}"
        elif (new := _renamed(key, _UNET_TOP)) == key:
            raise ValueError(f"the UNet has a weight with no place in the original layout: {key}")
        out[UNET + new] = value
    return out


def _vae_resnet(rest: str) -> str:
    return _renamed(rest, {"conv_shortcut.": "nin_shortcut."})


def _vae_to_original(state: dict, up_blocks: int) -> dict:
    """diffusers AutoencoderKL keys -> the LDM autoencoder's (the inverse of convert_ldm_vae_checkpoint).

    The LDM decoder numbers its up blocks from the lowest resolution up, diffusers from the top down; its
    attention projections are 1x1 convolutions where diffusers has linear layers.
    """
    out = {}
    for key, value in state.items():
        if match := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"encoder.down.{match[1]}.block.{match[2]}.{_vae_resnet(match[3])}"
        elif match := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.*)", key):
            new = f"encoder.down.{match[1]}.downsample.{match[2]}"
        elif match := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"decoder.up.{up_blocks - 1 - int(match[1])}.block.{match[2]}.{_vae_resnet(match[3])}"
        elif match := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)", key):
            new = f"decoder.up.{up_blocks - 1 - int(match[1])}.upsample.{match[2]}"
        elif match := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
            new = f"{match[1]}.mid.block_{int(match[2]) + 1}.{_vae_resnet(match[3])}"
        elif match := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", key):
            new = f"{match[1]}.mid.attn_1.{_renamed(match[2], _VAE_ATTENTION)}"
            if value.ndim == 2:
                value = value[:, :, None, None]
        elif key.startswith(tuple(_VAE_TOP)):
            new = _renamed(key, _VAE_TOP)
        else:
            raise ValueError(f"the VAE has a weight with no place in the original layout: {key}")
        out[VAE + new] = value
    return out


def _clip_to_original(state: dict, prefix: str) -> dict:
    """A transformers CLIP text model as the original checkpoints wrap it (HF keys under `prefix`)."""
    return {f"{prefix}text_model.{key.removeprefix('text_model.')}": value for key, value in state.items()}


def _open_clip_to_original(state: dict, prefix: str) -> dict:
    """A transformers CLIP text model in OpenCLIP's layout (the inverse of convert_open_clip_checkpoint):
    one fused q/k/v projection per layer and the text projection as a matrix multiplied from the right."""
    state = {key.removeprefix("text_model."): value for key, value in state.items()}
    top = {"embeddings.token_embedding.weight": "token_embedding.weight",
           "embeddings.position_embedding.weight": "positional_embedding",
           "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}
    out = {}
    for key, value in state.items():
        if key == "embeddings.position_ids":  # a buffer (0..76) older transformers save; OpenCLIP has none
            continue
        if key in top:
            out[prefix + top[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T
        elif match := re.match(r"encoder\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)", key):
            layer, kind = match.groups()
            fused = [state[f"encoder.layers.{layer}.self_attn.{qkv}_proj.{kind}"] for qkv in "qkv"]
            out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat(fused)
        elif re.match(r"encoder\.layers\.\d+\.self_attn\.[kv]_proj\.", key):
            continue  # fused with q_proj's
        elif match := re.match(r"encoder\.layers\.(\d+)\.(.*)", key):
            if (rest := _renamed(match[2], _OPEN_CLIP_LAYER)) == match[2]:
                raise ValueError(f"the text encoder has a weight with no place in OpenCLIP's layout: {key}")
            out[f"{prefix}transformer.resblocks.{match[1]}.{rest}"] = value
        else:
            raise ValueError(f"the text encoder has a weight with no place in OpenCLIP's layout: {key}")
    return out


def original_layout(unet, vae, text_encoder, text_encoder_2=None) -> dict[str, torch.Tensor]:
    """The weights of an SD 1.x/2.x (no `text_encoder_2`) or SDXL model's diffusers modules, keyed as in the
    original single-file checkpoints."""
    if not isinstance(unet.config.layers_per_block, int):
        raise ValueError("the UNet has a different number of layers per level, which the original layout "
                         "(and diffusers' conversion of it) cannot hold")
    tensors = {**_unet_to_original(unet.state_dict(), unet.config.layers_per_block),
               **_vae_to_original(vae.state_dict(), len(vae.config.up_block_types))}
    text = text_encoder.state_dict()
    if text_encoder_2 is not None:  # SDXL: OpenAI's CLIP ViT-L, then OpenCLIP's bigG
        tensors.update(_clip_to_original(text, CLIP_XL))
        tensors.update(_open_clip_to_original(text_encoder_2.state_dict(), OPEN_CLIP_XL))
    elif text_encoder.config.hidden_act == "gelu":  # SD 2.x: OpenCLIP ViT-H (OpenAI's CLIP uses quick_gelu)
        tensors.update(_open_clip_to_original(text, OPEN_CLIP_SD2))
    else:
        tensors.update(_clip_to_original(text, CLIP_SD1))
    return tensors


def _stored_dtype(folder: Path) -> torch.dtype | None:
    """The dtype a component's weights are stored in, so that export neither widens nor narrows them."""
    dtypes = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}
    for weights in sorted(folder.glob("*.safetensors")):
        with safe_open(str(weights), framework="pt") as file:
            for key in file.keys():
                if (dtype := file.get_slice(key).get_dtype()) in dtypes:
                    return dtypes[dtype]
    return None


def export_single_file(pipeline_folder: Path | str, out_path: Path | str) -> Path:
    """Write the diffusers SD 1.x/2.x or SDXL folder `pipeline_folder` (as save_pretrained wrote it) as one
    .safetensors file in the original single-file layout, which AUTOMATIC1111, ComfyUI and from_single_file
    read. The file appears only once complete. Weights keep the dtype they are stored in."""
    import diffusers
    import transformers

    folder, out_path = Path(pipeline_folder), Path(out_path)
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        raise CheckpointError(f"{folder.name} is not a diffusers model folder (no readable model_index.json)") \
            from None
    if index.get("_class_name") not in (_pipeline_class(SD), _pipeline_class(SDXL)):
        raise CheckpointError(f"{folder.name} is a {index.get('_class_name')} folder; only SD 1.x/2.x and SDXL "
                              "folders can be exported")

    def component(name: str):
        library, class_name = index[name]
        cls = getattr(diffusers if library == "diffusers" else transformers, class_name)
        return cls.from_pretrained(folder / name, local_files_only=True, torch_dtype=_stored_dtype(folder / name))

    tensors = original_layout(component("unet"), component("vae"), component("text_encoder"),
                              component("text_encoder_2") if "text_encoder_2" in index else None)

    from safetensors.torch import save_file

    partial = out_path.with_name(f".{out_path.name}.partial-{os.getpid()}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_file({key: value.contiguous() for key, value in tensors.items()}, str(partial),
                  metadata={"format": "pt"})
        partial.replace(out_path)
    finally:
        partial.unlink(missing_ok=True)
    return out_path


def export_cli(argv: list[str] | None = None) -> int:
    """`dreamgrid models export-checkpoint FOLDER OUT.safetensors [--force]`."""
    parser = argparse.ArgumentParser(
        prog="dreamgrid models export-checkpoint",
        description="Write a diffusers SD 1.x/2.x or SDXL model folder as one .safetensors checkpoint in the "
                    "original (AUTOMATIC1111/ComfyUI) layout.")
    parser.add_argument("folder", type=Path, help="the diffusers model folder (with model_index.json)")
    parser.add_argument("out", type=Path, help="the checkpoint to write (.safetensors)")
    parser.add_argument("--force", action="store_true", help="replace the checkpoint if it exists")
    args = parser.parse_args(argv)
    if args.out.suffix.lower() != ".safetensors":
        parser.error("the checkpoint's name must end in .safetensors")
    if args.out.exists() and not args.force:
        print(f"export-checkpoint: {args.out} exists (use --force to replace it)", file=sys.stderr)
        return 1
    started = time.perf_counter()
    try:
        export_single_file(args.folder, args.out)
    except (CheckpointError, OSError, ValueError) as exc:
        print(f"export-checkpoint: {exc}", file=sys.stderr)
        return 1
    size = args.out.stat().st_size / 2**20
    print(f"{args.out}: {size:.1f} MiB written in {time.perf_counter() - started:.1f} s")
    return 0
