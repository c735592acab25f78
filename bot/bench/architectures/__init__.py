"""Architecture-only models: SD-Turbo-, SD 1.5-, SDXL-, FLUX.1-schnell- and SD 3.5-medium-sized pipelines
with random weights.

Each folder beside this file holds the upstream model's own component configs (denoiser, vae, text
encoder(s), scheduler, model_index.json), so a pipeline built from them has exactly the real layers and
parameter counts. Speed does not depend on weight values, so these measure GPU throughput on a machine
with no network. `tiny` and `tiny-flux` are not upstream models: few-MB pipelines of the SD and FLUX.1
shapes for tests.

build_random_model() writes such a pipeline as a model folder that from_pretrained loads exactly like a
downloaded one; parameter_counts() builds the components on the meta device (no memory, instant).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ARCHITECTURES_DIR = Path(__file__).resolve().parent

# Components of model_index.json that carry weights we build; the rest (tokenizers, scheduler, safety
# checker, feature extractor) hold none or have no effect on the denoising speed.
_MODEL_COMPONENTS = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")
# transformers text encoder -> its config class.
_TEXT_CONFIGS = {"CLIPTextModel": "CLIPTextConfig", "CLIPTextModelWithProjection": "CLIPTextConfig",
                 "T5EncoderModel": "T5Config"}
# What a pipeline class takes besides its components: no safety checker (not part of the denoising speed,
# and SD-Turbo ships none either), no invisible watermark (it runs after the VAE, on the CPU).
_PIPELINE_OPTIONS = {
    "StableDiffusionPipeline": {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False},
    "StableDiffusionXLPipeline": {"add_watermarker": False},
}
_DTYPE_NAMES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}
# Written last: a folder without it was interrupted (or is not ours) and is rebuilt.
MARKER = "random-weights.json"


@dataclass(frozen=True)
class Arch:
    name: str
    upstream: str  # the hub model whose configs are shipped ("" for the tiny ones)
    pipeline: str  # the catalog's `pipeline`, which names the family (bot/engine/families.py)
    size: int  # the resolution it was trained for
    steps: int  # the steps it is usually run with
    guidance: float  # 0 for distilled turbo models: no classifier-free guidance (one denoiser pass per step)
    prompt_tokens: int = 77  # T5's padded prompt length (max_sequence_length) for SD3 and FLUX; CLIP's 77
    configs: str = ""  # the config folder when it is another arch's (same layers, other usual settings)

    @property
    def folder(self) -> Path:
        return ARCHITECTURES_DIR / (self.configs or self.name)


ARCHS = {arch.name: arch for arch in (
    Arch("sd-turbo", "stabilityai/sd-turbo", "stable-diffusion", 512, 1, 0.0),
    Arch("sd15", "runwayml/stable-diffusion-v1-5", "stable-diffusion", 512, 50, 7.5),
    Arch("sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "stable-diffusion-xl", 1024, 50, 5.0),
    # SDXL-Turbo is SDXL base distilled: the same UNet, VAE and text encoders.
    Arch("sdxl-turbo", "stabilityai/sdxl-turbo", "stable-diffusion-xl", 512, 1, 0.0, configs="sdxl"),
    # schnell was trained with 256 T5 tokens (diffusers' default for it).
    Arch("flux-schnell", "black-forest-labs/FLUX.1-schnell", "flux", 1024, 4, 0.0, prompt_tokens=256),
    Arch("sd35-medium", "stabilityai/stable-diffusion-3.5-medium", "stable-diffusion-3", 1024, 40, 4.5,
         prompt_tokens=256),
    Arch("tiny", "", "stable-diffusion", 64, 4, 5.0),
    Arch("tiny-flux", "", "flux", 64, 4, 0.0, prompt_tokens=256),
)}


def get_arch(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; shipped: {', '.join(ARCHS)}") from None


def _index(arch: str) -> dict:
    return json.loads((get_arch(arch).folder / "model_index.json").read_text())


def components(arch: str) -> dict[str, str]:
    """Weight-carrying component -> class name, as model_index.json lists them."""
    index = _index(arch)
    return {name: index[name][1] for name in _MODEL_COMPONENTS if name in index}


def _config(arch: str, component: str) -> dict:
    return json.loads((get_arch(arch).folder / component / "config.json").read_text())


def _build_component(arch: str, component: str, class_name: str):
    """One component with freshly initialised (random) weights, on the current default device."""
    import diffusers
    import transformers

    config = _config(arch, component)
    model_class = getattr(diffusers, class_name, None)
    if isinstance(model_class, type) and issubclass(model_class, diffusers.ModelMixin):
        return model_class.from_config(config)
    if class_name in _TEXT_CONFIGS:
        config_class = getattr(transformers, _TEXT_CONFIGS[class_name])
        return getattr(transformers, class_name)(config_class.from_dict(config))
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

    config = json.loads((get_arch(arch).folder / "scheduler" / "scheduler_config.json").read_text())
    return getattr(diffusers, config["_class_name"]).from_config(config)


def _tokenizers(arch: str, out_dir: Path) -> dict:
    """Every tokenizer model_index.json lists, built offline into `out_dir` (bot/engine/tokenizer.py).

    Speed does not depend on the vocabulary: CLIP pads every prompt to 77 tokens, T5 to prompt_tokens."""
    from bot.engine.tokenizer import build_clip_tokenizer

    index, tokenizers = _index(arch), {}
    for name in [name for name in index if name.startswith("tokenizer")]:
        class_name = index[name][1]
        encoder = _config(arch, name.replace("tokenizer", "text_encoder"))
        if class_name == "CLIPTokenizer":
            tokenizer = build_clip_tokenizer(out_dir / name)
            if encoder["hidden_act"] == "gelu":  # OpenCLIP's encoders (SD 2.x, SDXL's and SD3's second) pad with "!"
                tokenizer.pad_token = "!"
                tokenizer.save_pretrained(out_dir / name)
        elif class_name == "T5TokenizerFast":
            tokenizer = _t5_tokenizer(out_dir / name, encoder["vocab_size"])
        else:
            raise ValueError(f"architecture {arch!r}: no builder for {name} of class {class_name}")
        tokenizers[name] = tokenizer
    return tokenizers


def _t5_tokenizer(out_dir: Path, vocab_size: int):
    """T5's tokenizer as bot/engine/tokenizer.py builds it offline, cut to the encoder's `vocab_size` ids.

    Its pieces (from CLIP's vocabulary) outnumber T5's 32128 embeddings, and an id past them would fail in
    the encoder. They come most common first, so the cut keeps the common words."""
    from transformers import T5TokenizerFast

    from bot.engine.tokenizer import build_t5_tokenizer

    tokenizer = build_t5_tokenizer(out_dir, model_max_length=512)
    if len(tokenizer) <= vocab_size:
        return tokenizer
    path = out_dir / "tokenizer.json"
    backend = json.loads(path.read_text(encoding="utf-8"))
    backend["model"]["vocab"] = backend["model"]["vocab"][:vocab_size]  # [piece, score], in id order
    path.write_text(json.dumps(backend, ensure_ascii=False), encoding="utf-8")
    return T5TokenizerFast.from_pretrained(out_dir)


def _pipeline(arch: str, parts: dict, tokenizers: dict):
    """The pipeline model_index.json names, from its built components."""
    import diffusers

    class_name = _index(arch)["_class_name"]
    return getattr(diffusers, class_name)(scheduler=_scheduler(arch), **tokenizers, **parts,
                                          **_PIPELINE_OPTIONS.get(class_name, {}))


def model_folder(arch: str, out_dir: Path | str, dtype) -> Path:
    """Where build_random_model puts it: archs sharing a config folder (sdxl, sdxl-turbo) share the weights."""
    return Path(out_dir) / f"{get_arch(arch).folder.name}-{_DTYPE_NAMES[str(dtype).removeprefix('torch.')]}"


def build_random_model(arch: str, out_dir: Path | str, dtype=None, seed: int = 0, device: str = "cpu") -> Path:
    """The model folder of `arch` with random weights in `dtype` under `out_dir`; built once, then reused.

    The weights are created on `device` (a GPU initialises an SDXL UNet in seconds, a CPU in minutes) and
    saved as safetensors with save_pretrained, so the engine loads the folder like any downloaded model.
    Each component is cast to `dtype` as soon as it is built, so at most one is ever in float32 (FLUX's
    transformer: 48 GB).
    """
    import torch

    from bot.engine.folders import replaced_on_success

    spec = get_arch(arch)
    dtype = dtype or torch.float32
    folder = model_folder(arch, out_dir, dtype)
    if (folder / MARKER).is_file():
        return folder
    with replaced_on_success(folder) as staging:
        tokenizers = _tokenizers(arch, staging)
        # fork_rng: seed the weights without disturbing the caller's global torch RNG.
        with torch.random.fork_rng(devices=[]), torch.device(device):
            torch.manual_seed(seed)
            if device.startswith("cuda"):
                torch.cuda.manual_seed_all(seed)
            parts = {name: _build_component(arch, name, cls).to(dtype) for name, cls in components(arch).items()}
        pipeline = _pipeline(arch, parts, tokenizers)
        pipeline.save_pretrained(staging, safe_serialization=True)
        (staging / MARKER).write_text(json.dumps({"arch": arch, "configs": spec.folder.name, "upstream": spec.upstream,
                                                  "seed": seed, "dtype": str(dtype)}, indent=2) + "\n")
        del pipeline, parts
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return folder
