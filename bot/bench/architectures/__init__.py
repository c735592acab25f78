"""Architecture-only models: SD-Turbo-, SD 1.5- and SDXL-sized pipelines with random weights.

Each folder beside this file holds the upstream model's own component configs (unet, vae, text
encoder(s), scheduler, model_index.json), so a pipeline built from them has exactly the real layers and
parameter counts. Speed does not depend on weight values, so these measure GPU throughput on a machine
with no network. `tiny` is not an upstream model: a few-MB pipeline of the same shape for tests.

build_random_model() writes such a pipeline as a model folder that from_pretrained loads exactly like a
downloaded one; parameter_counts() builds the components on the meta device (no memory, instant).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ARCHITECTURES_DIR = Path(__file__).resolve().parent

# Components of model_index.json that carry weights we build; the rest (tokenizers, safety checker,
# feature extractor) have no effect on the denoising speed or are written separately.
_MODEL_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
_DTYPE_NAMES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}
# Written last: a folder without it was interrupted (or is not ours) and is rebuilt.
MARKER = "random-weights.json"


@dataclass(frozen=True)
class Arch:
    name: str
    upstream: str  # the hub model whose configs are shipped ("" for tiny)
    pipeline: str  # "stable-diffusion" | "stable-diffusion-xl"
    size: int  # the resolution it was trained for
    steps: int  # the steps it is usually run with
    guidance: float  # 0 for distilled turbo models: no classifier-free guidance (one UNet pass per step)


ARCHS = {
    "sd-turbo": Arch("sd-turbo", "stabilityai/sd-turbo", "stable-diffusion", 512, 1, 0.0),
    "sd15": Arch("sd15", "runwayml/stable-diffusion-v1-5", "stable-diffusion", 512, 50, 7.5),
    "sdxl": Arch("sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "stable-diffusion-xl", 1024, 50, 5.0),
    "tiny": Arch("tiny", "", "stable-diffusion", 64, 4, 5.0),
}


def get_arch(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; shipped: {', '.join(ARCHS)}") from None


def components(arch: str) -> dict[str, str]:
    """Weight-carrying component -> class name, as model_index.json lists them."""
    index = json.loads((ARCHITECTURES_DIR / get_arch(arch).name / "model_index.json").read_text())
    return {name: index[name][1] for name in _MODEL_COMPONENTS if name in index}


def _config(arch: str, component: str) -> dict:
    return json.loads((ARCHITECTURES_DIR / arch / component / "config.json").read_text())


def _build_component(arch: str, component: str, class_name: str):
    """One component with freshly initialised (random) weights, on the current default device."""
    import diffusers
    import transformers

    config = _config(arch, component)
    if hasattr(diffusers, class_name) and class_name.startswith(("UNet", "Autoencoder")):
        return getattr(diffusers, class_name).from_config(config)
    if class_name in ("CLIPTextModel", "CLIPTextModelWithProjection"):
        return getattr(transformers, class_name)(transformers.CLIPTextConfig.from_dict(config))
    raise ValueError(f"architecture {arch!r}: no builder for {component} of class {class_name}")


def parameter_counts(arch: str) -> dict[str, int]:
    """Parameters per component, from the shipped configs; built on the meta device, so it is instant."""
    import torch

    counts = {}
    for component, class_name in components(arch).items():
        with torch.device("meta"):
            model = _build_component(arch, component, class_name)
        counts[component] = sum(parameter.numel() for parameter in model.parameters())
    return counts


def _scheduler(arch: str):
    import diffusers

    config = json.loads((ARCHITECTURES_DIR / arch / "scheduler" / "scheduler_config.json").read_text())
    return getattr(diffusers, config["_class_name"]).from_config(config)


def model_folder(arch: str, out_dir: Path | str, dtype) -> Path:
    return Path(out_dir) / f"{arch}-{_DTYPE_NAMES[str(dtype).removeprefix('torch.')]}"


def build_random_model(arch: str, out_dir: Path | str, dtype=None, seed: int = 0, device: str = "cpu") -> Path:
    """The model folder of `arch` with random weights in `dtype` under `out_dir`; built once, then reused.

    The weights are created on `device` (a GPU initialises an SDXL UNet in seconds, a CPU in minutes) and
    saved as safetensors with save_pretrained, so the engine loads the folder like any downloaded model.
    """
    import torch

    from bot.engine.folders import replaced_on_success
    from bot.engine.tokenizer import build_clip_tokenizer

    spec = get_arch(arch)
    dtype = dtype or torch.float32
    folder = model_folder(arch, out_dir, dtype)
    if (folder / MARKER).is_file():
        return folder
    with replaced_on_success(folder) as staging:
        # The real CLIP BPE vocabulary (the one every SD text encoder uses), built offline. Speed does not
        # depend on the vocabulary: prompts are padded to 77 tokens whatever they say.
        tokenizer = build_clip_tokenizer(staging / "tokenizer")
        # fork_rng: seed the weights without disturbing the caller's global torch RNG.
        with torch.random.fork_rng(devices=[]), torch.device(device):
            torch.manual_seed(seed)
            if device.startswith("cuda"):
                torch.cuda.manual_seed_all(seed)
            parts = {name: _build_component(arch, name, cls) for name, cls in components(arch).items()}
            if dtype != torch.float32:  # built in float32 (as every from_config is), then cast once
                parts = {name: part.to(dtype) for name, part in parts.items()}
        pipeline = _pipeline(spec, parts, tokenizer)
        pipeline.save_pretrained(staging, safe_serialization=True)
        (staging / MARKER).write_text(json.dumps({"arch": arch, "upstream": spec.upstream, "seed": seed,
                                                  "dtype": str(dtype)}, indent=2) + "\n")
        del pipeline, parts
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return folder


def _pipeline(spec: Arch, parts: dict, tokenizer):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    scheduler = _scheduler(spec.name)
    if spec.pipeline == "stable-diffusion-xl":
        return StableDiffusionXLPipeline(tokenizer=tokenizer, tokenizer_2=tokenizer, scheduler=scheduler, **parts)
    # No safety checker: it is not part of the denoising speed, and SD-Turbo ships none either.
    return StableDiffusionPipeline(tokenizer=tokenizer, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False, **parts)
