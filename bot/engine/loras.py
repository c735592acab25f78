"""LoRAs: AUTOMATIC1111's `<lora:name:weight>` prompt tags, the files under models/loras, and the adapters
loaded into one model's modules.

Files are .safetensors only (a .ckpt/.pt is a pickle, and loading one runs whatever code it holds). Both
layouts people download load: kohya/AUTOMATIC1111 (`lora_unet_*`, `lora_te_*`: `.lora_down`, `.lora_up`,
`.alpha`) and diffusers/PEFT (`unet.*.lora_A` / `.lora_B`, `transformer.*` for FLUX/SD3); diffusers'
load_lora_weights converts the first into the second.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import logging
import math
import re
import sys
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from bot.engine.requests import EngineError

log = logging.getLogger(__name__)

# Several adapters in one model, loaded and unloaded as jobs come, is what LoraSlots is for; PEFT warns
# each time (LoraSlots sets the active adapters itself after every change), and transformers 5 logs a
# "LOAD REPORT" listing every other loaded adapter's weights as missing (they are not: only the new
# adapter's are loaded). LoraSlots.load counts the layers that really got the adapter instead.
warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute in the model")
warnings.filterwarnings("ignore", message="Adapter .* was active which is now deleted")


class _NoAdapterLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()


logging.getLogger("transformers.integrations.peft").addFilter(_NoAdapterLoadReport())

LORAS_DIR = "loras"  # under the models dir
MAX_WEIGHT = 4.0  # A1111 takes any number; past this a LoRA only burns the image
MAX_LORAS = 8  # per prompt
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
FAMILY_LABELS = {
    "stable-diffusion": "Stable Diffusion 1.x/2.x",
    "stable-diffusion-xl": "SDXL",
    "stable-diffusion-3": "Stable Diffusion 3",
    "flux": "FLUX",
    "z-image": "Z-Image",
}

_TAG = re.compile(r"<lora:([^<>]*)>", re.IGNORECASE)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
# Characters no LoRA name needs: path and tag syntax, Windows' reserved ones, control characters.
_BAD_NAME_CHARS = re.compile(r'[\\:<>"|?*\x00-\x1f\x7f]')


class LoraError(EngineError):
    """A LoRA that cannot be used; the message is safe to show to the user (it never holds a local path)."""


@dataclass(frozen=True)
class LoraUse:
    name: str  # relative to models/loras, no extension; "/" for a subfolder
    weight: float = 1.0


@dataclass(frozen=True)
class LoraFile:
    name: str
    path: Path  # relative to the LoRA folder
    family: str | None  # lora_family(); None when the file does not say
    size: int  # bytes


# --- prompts ---------------------------------------------------------------------------------------------


def parse_loras(prompt: str) -> tuple[str, tuple[LoraUse, ...]]:
    """The prompt without its `<lora:name>` / `<lora:name:weight>` tags, and the uses in order.

    Where tags were removed, whitespace and commas are tidied ("a fox, <lora:x>, snow" -> "a fox, snow");
    a prompt without tags comes back as it was. Raises LoraError for a malformed tag or a LoRA named twice.
    """
    uses: list[LoraUse] = []
    seen: set[str] = set()
    for match in _TAG.finditer(prompt):
        use = _parse_tag(match.group(0), match.group(1))
        key = _name_key(use.name)
        if key in seen:
            raise LoraError(f"LoRA {use.name} is in the prompt twice; give it once, with one weight")
        seen.add(key)
        uses.append(use)
    if len(uses) > MAX_LORAS:
        raise LoraError(f"the prompt uses {len(uses)} LoRAs; at most {MAX_LORAS} at once")
    cleaned = _TAG.sub(" ", prompt)
    if "<lora:" in cleaned.lower():
        raise LoraError("a <lora:...> tag is not closed with '>'")
    if not uses:
        return prompt, ()
    cleaned = re.sub(r"\s+", " ", cleaned)
    cleaned = re.sub(r"\s*,(?:\s*,)*", ",", cleaned)  # the commas around a removed tag: one, no space before
    return cleaned.strip(" ,"), tuple(uses)


def _parse_tag(tag: str, body: str) -> LoraUse:
    parts = [part.strip() for part in body.split(":")]
    if len(parts) > 2:
        raise LoraError(f"{tag}: write <lora:name> or <lora:name:weight> (one weight per LoRA)")
    name = check_name(parts[0])
    if len(parts) == 1:
        return LoraUse(name)
    if not _NUMBER.fullmatch(parts[1]):
        raise LoraError(f"{tag}: the weight {parts[1]!r} is not a number (e.g. <lora:{name}:0.8>)")
    return LoraUse(name, check_weight(float(parts[1]), tag))


def check_weight(weight: float, where: str) -> float:
    """`weight`, or LoraError where it is not a finite number in the range a LoRA is used with."""
    if not math.isfinite(weight) or abs(weight) > MAX_WEIGHT:
        raise LoraError(f"{where}: the weight must be between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g}")
    return weight


def check_name(name: str) -> str:
    """`name` stripped, or LoraError: a LoRA name is a path under models/loras that cannot leave it."""
    name = name.strip()
    if not name:
        raise LoraError("a <lora:...> tag needs a LoRA name, e.g. <lora:ghibli:0.8>")
    if (_BAD_NAME_CHARS.search(name) or name.startswith("/") or len(name) > 200
            or any(not part or part.startswith(".") for part in name.split("/"))):
        raise LoraError(f"{name!r} is not a LoRA name: use the file's name in the LoRA folder without its "
                        "extension, with / for a subfolder (e.g. styles/ghibli)")
    return name


def _name_key(name: str) -> str:
    return _strip_suffix(name).casefold()


def _strip_suffix(name: str) -> str:
    return name[:-len(".safetensors")] if name.lower().endswith(".safetensors") else name


# --- files -----------------------------------------------------------------------------------------------


def find_lora(loras_dir: Path, name: str) -> Path:
    """The .safetensors file of LoRA `name` under `loras_dir` (exact name, else a unique case-insensitive
    match). LoraError for a missing one (naming the close ones), a pickle, or a name that leaves the folder."""
    name = check_name(name)
    root = Path(loras_dir)
    if name.lower().endswith(PICKLE_SUFFIXES):
        raise _pickle_error(name)
    stem = _strip_suffix(name)
    path = root / f"{stem}.safetensors"
    if path.is_file():
        return path
    available = {other: root / relative for other, relative in _files(root)}
    same = [other for other in available if other.casefold() == stem.casefold()]
    if len(same) == 1:
        return available[same[0]]
    if any((root / f"{stem}{suffix}").is_file() for suffix in PICKLE_SUFFIXES):
        raise _pickle_error(stem)
    close = difflib.get_close_matches(stem, list(available), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else (
        "" if available else "; no LoRAs are installed")
    raise LoraError(f"no LoRA named {stem}{hint}")


def _pickle_error(name: str) -> LoraError:
    return LoraError(f"LoRA {name} is a pickle file (.ckpt/.pt), which can run code when loaded; only "
                     ".safetensors LoRAs are used (convert it to .safetensors)")


def list_loras(loras_dir: Path) -> list[LoraFile]:
    """Every usable LoRA under `loras_dir`, by name, with its family read from the file's header."""
    root = Path(loras_dir)
    found = []
    for name, relative in _files(root):
        try:
            family = lora_family(root / relative)
        except LoraError:
            continue  # not a readable safetensors file
        found.append(LoraFile(name, relative, family, (root / relative).stat().st_size))
    return found


def _files(root: Path) -> list[tuple[str, Path]]:
    """(name, path relative to `root`) of each .safetensors file a tag can name."""
    if not root.is_dir():
        return []
    files = []
    for path in sorted(root.rglob("*.safetensors")):
        relative = path.relative_to(root)
        name = relative.with_suffix("").as_posix()
        try:
            check_name(name)
        except LoraError:
            continue  # hidden folders, odd characters: not reachable from a tag
        if path.is_file():
            files.append((name, relative))
    return files


def lora_hash(path: Path) -> str:
    """AUTOMATIC1111's short hash of a LoRA (its `Lora hashes` text): the first 12 hex digits of the sha256
    of the file's tensor data, its header left out (kohya's and sd-webui-additional-networks' "addnet hash",
    so editing the metadata keeps the hash). A1111 prefers an `sshs_model_hash` from the metadata; that is
    unchecked text, so it is not used. Cached by (path, mtime, size)."""
    path = Path(path).resolve()
    stat = path.stat()
    return _addnet_hash(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=256)
def _addnet_hash(path: Path, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        header_length = int.from_bytes(file.read(8), "little")
        file.seek(8 + header_length)
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def a1111_lora_hashes(loras: Iterable[tuple[str, Path]]) -> str:
    """The value of A1111's `Lora hashes: "..."` from (name, path) pairs: `name: hash, other: hash`."""
    return ", ".join(f"{name}: {lora_hash(path)}" for name, path in loras)


# --- families --------------------------------------------------------------------------------------------

# The cross-attention input of a UNet LoRA's attn2.to_k (its down/A matrix's second dimension) is the text
# encoder's width: CLIP ViT-L 768 (SD 1.x), OpenCLIP ViT-H 1024 (SD 2.x), both CLIPs concatenated 2048
# (SDXL). A kohya, PEFT, or older diffusers (to_k_lora.down / to_k.lora.down) key.
_UNET_TO_K = re.compile(r"attn2[._](?:processor[._])?to_k(?:_lora)?\.(?:lora_down|lora_A|lora\.down|down)\.weight$")
_UNET_DIMS = {768: "stable-diffusion", 1024: "stable-diffusion", 2048: "stable-diffusion-xl"}
# A diffusers transformer LoRA's attn.to_k input is the model's width: FLUX 3072, SD3/3.5 medium 1536,
# SD3.5 large 2432 (FLUX and SD3 share the `transformer_blocks` naming).
_TRANSFORMER_TO_K = re.compile(r"transformer_blocks\.\d+\.attn\.to_k\.lora_A\.weight$")
_TRANSFORMER_DIMS = {3072: "flux", 1536: "stable-diffusion-3", 2432: "stable-diffusion-3"}
# kohya's `ss_base_model_version` and the modelspec `modelspec.architecture`: only when the keys do not say.
_METADATA_PREFIXES = (
    ("sd_v1", "stable-diffusion"), ("sd_v2", "stable-diffusion"), ("sdxl", "stable-diffusion-xl"),
    ("stable-diffusion-v1", "stable-diffusion"), ("stable-diffusion-v2", "stable-diffusion"),
    ("stable-diffusion-xl", "stable-diffusion-xl"), ("stable-diffusion-3", "stable-diffusion-3"),
    ("sd3", "stable-diffusion-3"), ("flux", "flux"),
)
# One key per LoRA'd layer, in every layout (kohya, PEFT, old diffusers, LoKr).
_LAYER_KEY = re.compile(r"(?:lora_down|lora_A|lora\.down|lora_linear_layer\.down|_lora\.down)\.weight$|\.lokr_w1$")


def lora_family(path: Path) -> str | None:
    """The model family a LoRA file is for, from its safetensors header only (key names and shapes; no
    tensor is read), or None when it does not say. Checked, in order:

    - FLUX: `double_blocks` / `single_blocks` (kohya, original BFL) or `single_transformer_blocks` keys.
    - SD3: `joint_blocks` keys (kohya, original SAI).
    - diffusers `transformer_blocks.N.attn.to_k` LoRAs: FLUX or SD3 by their width (see _TRANSFORMER_DIMS);
      any other `transformer.` LoRA only by its metadata (below).
    - UNet LoRAs: attn2.to_k's input width 768/1024 -> SD 1.x/2.x, 2048 -> SDXL; else a second text
      encoder (`lora_te2_`, `text_encoder_2.`) or SGM block names (`lora_unet_input_blocks`...) -> SDXL; a
      single one (`lora_te_`, diffusers `text_encoder.` next to `unet.`) -> SD 1.x/2.x.
    - the metadata's ss_base_model_version / modelspec.architecture.
    """
    return _family(*_header(path))


def _family(shapes: dict[str, tuple[int, ...]], metadata: dict[str, str]) -> str | None:
    keys = list(shapes)
    if any(part in key for key in keys for part in ("double_blocks", "single_blocks", "single_transformer_blocks")):
        return "flux"
    if any("joint_blocks" in key for key in keys):
        return "stable-diffusion-3"
    for key in keys:
        if _TRANSFORMER_TO_K.search(key) and (family := _TRANSFORMER_DIMS.get(shapes[key][-1])):
            return family
    if any(key.startswith(("transformer.", "lora_transformer_")) for key in keys):
        return _metadata_family(metadata)  # a transformer LoRA (its text encoder keys are not SDXL's)
    if any(key.startswith(("lora_unet_", "unet.")) for key in keys):
        for key in keys:
            if _UNET_TO_K.search(key) and len(shapes[key]) >= 2 and (family := _UNET_DIMS.get(shapes[key][1])):
                return family
    if any(key.startswith(("lora_te2_", "text_encoder_2.", "lora_unet_input_blocks", "lora_unet_output_blocks",
                           "lora_unet_middle_block")) for key in keys):
        return "stable-diffusion-xl"
    if any(key.startswith("lora_te_") for key in keys) or (
            any(key.startswith("unet.") for key in keys) and any(key.startswith("text_encoder.") for key in keys)):
        return "stable-diffusion"
    return _metadata_family(metadata)


def _metadata_family(metadata: dict[str, str]) -> str | None:
    for field in ("ss_base_model_version", "modelspec.architecture"):
        value = str(metadata.get(field, "")).lower()
        for prefix, family in _METADATA_PREFIXES:
            if value.startswith(prefix):
                return family
    return None


def _header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Every tensor's shape, and the metadata, of a safetensors file: the header alone is read, once per
    version of the file (admission, the engine's check and the load all ask for it, for every job)."""
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise LoraError(f"LoRA {Path(path).stem} is not a readable .safetensors file") from exc
    return _read_header(Path(path).resolve(), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=256)
def _read_header(path: Path, mtime_ns: int, size: int) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as file:
            return ({key: tuple(file.get_slice(key).get_shape()) for key in file.keys()},
                    dict(file.metadata() or {}))
    except Exception as exc:  # safetensors raises its own error type for a damaged or foreign file
        raise LoraError(f"LoRA {Path(path).stem} is not a readable .safetensors file") from exc


def model_family(pipe) -> str | None:
    """The family of a loaded diffusers pipeline, from its class (txt2img and img2img classes alike)."""
    name = type(pipe).__name__
    for prefix, family in (("StableDiffusionXL", "stable-diffusion-xl"), ("StableDiffusion3", "stable-diffusion-3"),
                           ("StableDiffusion", "stable-diffusion"), ("Flux", "flux"), ("ZImage", "z-image")):
        if name.startswith(prefix):
            return family
    return None


def _label(pipe) -> str:
    family = model_family(pipe)
    return FAMILY_LABELS[family] if family else type(pipe).__name__


def check_compatible(pipe, path: Path, name: str | None = None) -> None:
    """LoraError when the file is not a LoRA, or its header says it is for another family than `pipe`
    (cheap: no tensor is read). A file whose family cannot be told (a tiny test LoRA, an unusual layout)
    passes; LoraSlots.load then checks that its layers fit the model."""
    _check_header(pipe, *_header(path), name or Path(path).stem)


def _check_header(pipe, shapes: dict[str, tuple[int, ...]], metadata: dict[str, str], name: str) -> int:
    """check_compatible on a read header; returns how many layers the LoRA changes."""
    layers = sum(1 for key in shapes if _LAYER_KEY.search(key))
    if not layers:
        raise LoraError(f"{name} is not a LoRA file (it has no LoRA weights; LyCORIS LoHa and full "
                        "checkpoints are not supported)")
    family, mine = _family(shapes, metadata), model_family(pipe)
    if family and mine and family != mine:
        raise LoraError(f"LoRA {name} is for {FAMILY_LABELS[family]} models; this model is {_label(pipe)}")
    return layers


# --- adapters --------------------------------------------------------------------------------------------


@dataclass
class _Adapter:
    name: str  # the PEFT adapter name
    stamp: tuple[int, int]  # the file's (mtime_ns, size) when it was loaded


class LoraSlots:
    """The LoRAs loaded into one model's modules, kept between jobs and switched on per job.

    One per loaded model, used only from its device's worker thread. Adapters live in the modules
    (unet, text encoders), not in a pipeline object, so txt2img and an img2img made with from_pipe share
    them: `apply` takes whichever pipeline is about to run. Call it before every pipeline call, also with
    no LoRAs, so a plain job runs with every adapter off.
    """

    def __init__(self, loras_dir: Path, max_loaded: int = MAX_LORAS):
        _plain_weights_need_no_expanding()
        if max_loaded < MAX_LORAS:
            raise ValueError(f"max_loaded must be at least {MAX_LORAS} (the LoRAs one prompt may use)")
        self.loras_dir = Path(loras_dir)
        self.max_loaded = max_loaded
        self._adapters: OrderedDict[Path, _Adapter] = OrderedDict()  # least recently used first

    @property
    def loaded(self) -> tuple[Path, ...]:
        return tuple(self._adapters)

    def apply(self, pipe, uses: Sequence[LoraUse]) -> tuple[Path, ...]:
        """Make exactly `uses` active at their weights on `pipe` (loading the new ones); none: all off.

        Returns each use's file, in order (for lora_hash). LoraError for a missing or unfit LoRA, in which
        case no adapter is active."""
        if len(uses) > MAX_LORAS:
            raise LoraError(f"{len(uses)} LoRAs at once; at most {MAX_LORAS}")
        try:
            paths = tuple(find_lora(self.loras_dir, use.name) for use in uses)
            if len(set(paths)) < len(paths):
                raise LoraError("the prompt names the same LoRA twice; give it once, with one weight")
            adapters = [self.load(pipe, path, use.name, keep=paths) for path, use in zip(paths, uses)]
        except Exception:
            self._disable(pipe)  # never a previous job's LoRAs, nor a half-loaded one's
            raise
        # Weight 0 stays off rather than adding zeros: the same pixels as no LoRA, and faster.
        active = [(adapter, use.weight) for adapter, use in zip(adapters, uses) if use.weight != 0]
        if active:
            pipe.enable_lora()
            pipe.set_adapters([adapter for adapter, _ in active], adapter_weights=[weight for _, weight in active])
        else:
            self._disable(pipe)  # a newly loaded adapter's layers start switched on
        return paths

    def load(self, pipe, path: Path, name: str | None = None, keep: Iterable[Path] = ()) -> str:
        """Load the LoRA at `path` into `pipe`'s modules once (again if the file changed) and return its
        adapter name; it is not switched on. LoraError if it is not for this model: another family by its
        header, a layer of the wrong shape, or no layer of the model matched. Past max_loaded, the least
        recently used adapter not in `keep` is unloaded first."""
        path = Path(path)
        name = name or path.stem
        if not hasattr(pipe, "load_lora_weights"):
            raise LoraError(f"this model ({_label(pipe)}) cannot use LoRAs")
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        adapter = self._adapters.get(path)
        if adapter is not None and adapter.stamp == stamp:
            self._adapters.move_to_end(path)
            return adapter.name
        if adapter is not None:  # the file was replaced: drop the old weights
            self._unload(pipe, path)
        expected = _check_header(pipe, *_header(path), name)
        keep = set(keep)
        while len(self._adapters) >= self.max_loaded:
            self._unload(pipe, next(path for path in self._adapters if path not in keep))
        adapter_name = _adapter_name(name)
        try:
            pipe.load_lora_weights(str(path), adapter_name=adapter_name)
        except Exception as exc:  # a size mismatch, keys diffusers cannot convert: the file does not fit
            pipe.delete_adapters(adapter_name)  # whatever parts did load
            if isinstance(exc, torch.OutOfMemoryError):
                raise
            log.info("LoRA %s did not load into %s: %s", name, type(pipe).__name__, exc)
            raise LoraError(f"LoRA {name} does not fit this model ({_label(pipe)}): its layers have other "
                            "shapes or names; is it for another kind of model?") from None
        layers = _loaded_layers(pipe, adapter_name)
        if layers == 0:
            pipe.delete_adapters(adapter_name)
            raise LoraError(f"LoRA {name} matched none of this model's layers ({_label(pipe)}); "
                            "is it for another kind of model?")
        if layers < expected:
            log.warning("LoRA %s: %d of its %d layers matched the model; the rest are ignored", name, layers, expected)
        self._adapters[path] = _Adapter(adapter_name, stamp)
        return adapter_name

    def _unload(self, pipe, path: Path) -> None:
        pipe.delete_adapters(self._adapters.pop(path).name)

    def _disable(self, pipe) -> None:
        if self._adapters:
            pipe.disable_lora()


@lru_cache(maxsize=1)
def _plain_weights_need_no_expanding() -> None:
    """diffusers 0.42's set_adapters expands every UNet LoRA weight into per-block scales, computing
    `layers_per_block + 1`, which fails for a UNet whose layers_per_block is a list per block (the shapes
    model's). Only a dict of per-block weights needs expanding, and LoraSlots passes plain numbers: skip it
    for those (once per process)."""
    from diffusers.loaders import peft as diffusers_peft

    expand = diffusers_peft._SET_ADAPTER_SCALE_FN_MAPPING["UNet2DConditionModel"]
    diffusers_peft._SET_ADAPTER_SCALE_FN_MAPPING["UNet2DConditionModel"] = (
        lambda unet, weights: expand(unet, weights) if any(isinstance(w, dict) for w in weights) else weights)


def _adapter_name(name: str) -> str:
    """A PEFT adapter name (a ModuleDict key: no dots) unique per LoRA name."""
    safe = re.sub(r"\W", "_", name, flags=re.ASCII)[:40]
    return f"lora_{safe}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _loaded_layers(pipe, adapter_name: str) -> int:
    """How many of `pipe`'s layers carry the adapter (diffusers skips, with a warning, keys it finds no
    layer for, so a LoRA for another model can load into nothing)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    count = 0
    for component in getattr(pipe, "_lora_loadable_modules", ()):
        model = getattr(pipe, component, None)
        if isinstance(model, torch.nn.Module):
            count += sum(1 for module in model.modules() if isinstance(module, BaseTunerLayer)
                         and adapter_name in getattr(module, "lora_A", {}))
    return count


# --- tiny test LoRAs -------------------------------------------------------------------------------------

_DENOISER_TARGET = re.compile(r"^(.*\.(?:to_q|to_k|to_v|to_out\.0))\.weight$")
_TEXT_TARGET = re.compile(r"^(.*\.self_attn\.(?:q_proj|k_proj|v_proj|out_proj))\.weight$")
# a UNet model's parts: their kohya prefixes in an SD and in an SDXL LoRA
_KOHYA_PREFIXES = {"unet": ("lora_unet", "lora_unet"), "text_encoder": ("lora_te", "lora_te1"),
                   "text_encoder_2": (None, "lora_te2")}


def create_tiny_lora(pipeline_folder: Path, out_path: Path, *, rank: int = 4, seed: int = 0,
                     style: str = "diffusers", scale: float = 1.0, text_encoder: bool = True) -> Path:
    """Write a random LoRA for the diffusers pipeline at `pipeline_folder`: its denoiser's (UNet's or
    transformer's) to_q/to_k/to_v/to_out.0, with `text_encoder` also the q/k/v/out projections of the text
    encoders its pipeline class loads LoRAs into. For tests and the playground.

    Both factors are random (PEFT's zero-initialised B would make it a no-op): each layer's change has
    about `scale` times the size of a layer initialised like the tiny models, so weight 1 visibly changes
    their images. The layer shapes come from the model's safetensors headers. `style` "diffusers" writes
    unet.* / transformer.* / text_encoder.* lora_A/lora_B; "kohya" (UNet models only) writes lora_unet_* /
    lora_te_* keys (lora_te1_/lora_te2_ for SDXL) with lora_down/lora_up/alpha. For the same seed both
    make the same change.
    """
    import diffusers

    if style not in ("diffusers", "kohya"):
        raise ValueError(f"unknown LoRA style {style!r}; expected diffusers or kohya")
    folder = Path(pipeline_folder)
    try:
        index = json.loads((folder / "model_index.json").read_text())
        parts = getattr(diffusers, index["_class_name"])._lora_loadable_modules
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ValueError(f"{folder} is not a diffusers model folder whose pipeline takes LoRAs") from None
    xl = "text_encoder_2" in parts and "unet" in parts
    generator = torch.Generator("cpu").manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for part in parts:
        denoiser = part in ("unet", "transformer")
        weights = folder / part / ("diffusion_pytorch_model.safetensors" if denoiser else "model.safetensors")
        if not denoiser and not text_encoder:
            continue
        if style == "kohya" and part not in _KOHYA_PREFIXES:
            raise ValueError("kohya-style tiny LoRAs are for UNet models (SD, SDXL); use --style diffusers")
        for key, shape in _header(weights)[0].items():
            if not (match := (_DENOISER_TARGET if denoiser else _TEXT_TARGET).match(key)) or len(shape) != 2:
                continue
            out_features, in_features = shape
            down = torch.randn(rank, in_features, generator=generator) / in_features ** 0.5
            up = torch.randn(out_features, rank, generator=generator) * (scale / rank ** 0.5)
            module = match.group(1)
            if not denoiser and not module.startswith("text_model."):
                # As real LoRAs name CLIP's layers (and transformers < 5 its modules); diffusers drops the
                # prefix for a transformers 5 CLIPTextModel, which has no text_model.
                module = f"text_model.{module}"
            if style == "diffusers":
                tensors[f"{part}.{module}.lora_A.weight"] = down
                tensors[f"{part}.{module}.lora_B.weight"] = up
            else:
                # alpha = rank / 2 scales the update by a half: double `up` to make the same change
                stem = f"{_KOHYA_PREFIXES[part][xl]}_{module.replace('.', '_')}"
                tensors[f"{stem}.lora_down.weight"] = down
                tensors[f"{stem}.lora_up.weight"] = up * 2
                tensors[f"{stem}.alpha"] = torch.tensor(rank / 2)
    if not tensors:
        raise ValueError(f"{folder} has no attention layers to put a LoRA on")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".{out_path.name}.partial")
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(partial))
    partial.replace(out_path)
    return out_path


def cli(argv: list[str] | None = None) -> int:
    """`dreamgrid models create-tiny-lora --model FOLDER --out models/loras/NAME.safetensors [--style kohya]`."""
    parser = argparse.ArgumentParser(
        prog="dreamgrid models create-tiny-lora",
        description="Write a random-weight LoRA for a (tiny) diffusers model folder, to try LoRA tags with.",
    )
    parser.add_argument("--model", type=Path, required=True, help="the diffusers pipeline folder, e.g. models/tiny-sd")
    parser.add_argument("--out", type=Path, required=True, help="the file to write, e.g. models/loras/tiny.safetensors")
    parser.add_argument("--style", choices=("diffusers", "kohya"), default="diffusers",
                        help="key layout (default: %(default)s)")
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default: %(default)s)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="size of the change relative to the layers' own weights (default: %(default)s)")
    parser.add_argument("--unet-only", action="store_true", help="leave the text encoders alone")
    args = parser.parse_args(argv)
    if args.out.suffix != ".safetensors":
        parser.error("--out must end in .safetensors")
    if args.rank < 1:
        parser.error("--rank must be at least 1")
    try:
        create_tiny_lora(args.model, args.out, rank=args.rank, seed=args.seed, style=args.style,
                         scale=args.scale, text_encoder=not args.unet_only)
    except (OSError, ValueError, LoraError) as exc:
        print(f"create-tiny-lora: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: {args.style} LoRA for {args.model} written")
    return 0
