"""models/catalog.toml -> Catalog of ModelSpec.

The catalog is configuration a person writes by hand, so every mistake is reported with the file, the
entry and the field at start-up, instead of surfacing later as a confusing diffusers error.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from bot.engine.families import FAMILIES, Family, family_of
from bot.engine.upscale import available_upscalers

SUPPORTED_PIPELINES = tuple(FAMILIES)
# A source with one of these suffixes is a single-file checkpoint (bot/engine/checkpoints.py)
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")

# Model names appear in slash-command choices and in button custom_ids: keep them short and plain.
_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")


class CatalogError(Exception):
    """The catalog file is unusable, or a model name is not in it."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    # a hub id ("stabilityai/sd-turbo"), a folder relative to the models dir ("tiny-sd"), or a single-file
    # checkpoint there ("checkpoints/dreamshaper_8.safetensors")
    source: str
    pipeline: str
    width: int
    height: int
    steps: int
    guidance: float
    max_prompt_tokens: int = 77
    upscaler: str = "lanczos"
    description: str = ""
    config: str = ""  # a single-file checkpoint's config folder under the models dir ("" = the shipped one)
    loras: tuple[tuple[str, float], ...] = ()  # LoRAs every job of this model uses (name, weight)
    inpaint_source: str = ""  # a dedicated inpainting model of the same family, for the canvas tools
    # An IP-Adapter (--sref, --oref, /blend): its weights file under the models dir or on the hub
    # ("h94/IP-Adapter/models/ip-adapter_sd15.safetensors"), and the CLIP image encoder it was trained with
    # (a folder there, or a hub id and subfolder: "h94/IP-Adapter/models/image_encoder"). Both or neither.
    ip_adapter: str = ""
    image_encoder: str = ""
    describer: str = ""  # /describe's captioning model: a folder under the models dir ("" = none)

    @property
    def takes_references(self) -> bool:
        """Its entry names an IP-Adapter, so it can run --sref and --oref (and /blend through it; a blend works
        on every model, without one by averaging latents)."""
        return bool(self.ip_adapter)

    @property
    def single_file(self) -> bool:
        return PurePosixPath(self.source).suffix.lower() in CHECKPOINT_SUFFIXES

    @property
    def family(self) -> Family:
        """What its pipeline accepts and needs (bot/engine/families.py)."""
        return family_of(self.pipeline)

    def resolve(self, models_dir: Path | str, source: str | None = None) -> str:
        """The local folder for `source` (default: the entry's; its `inpaint_source`) if it exists under
        `models_dir`, else `source` as a hub id.

        A source that climbs out of `models_dir` ("../", an absolute path) is refused: the catalog must not
        become a way to read arbitrary folders.
        """
        source = self.source if source is None else source
        problem = _source_problem(source)
        if problem:
            raise CatalogError(f"model {self.name!r}: source {source!r} {problem}")
        local = Path(models_dir) / source
        if source == self.source and self.single_file:
            if not local.is_file():
                raise CatalogError(f"model {self.name!r}: there is no checkpoint {self.source} in the models "
                                   "folder; put the .safetensors file there")
            return str(local.resolve())
        if local.is_dir():
            return str(local.resolve())
        if not _looks_like_hub_id(source):
            raise CatalogError(
                f"model {self.name!r}: there is no folder {local} and {source!r} is not a hub id "
                "('owner/name'); for the tiny test model run `dreamgrid models create-tiny`"
            )
        return source

    def resolve_ip_adapter(self, models_dir: Path | str) -> tuple[str, str, str, bool]:
        """Where the IP-Adapter's weights are: (a folder under `models_dir` or a hub repo id, the subfolder, the
        file name, local). A file under the models dir wins over the hub, as for sources."""
        return self._locate("ip_adapter", self.ip_adapter, models_dir, file=True)

    def resolve_image_encoder(self, models_dir: Path | str) -> tuple[str, str, bool]:
        """Where the IP-Adapter's image encoder is: (a folder under `models_dir` or a hub repo id, the
        subfolder, local)."""
        folder, subfolder, _, local = self._locate("image_encoder", self.image_encoder, models_dir, file=False)
        return folder, subfolder, local

    def _locate(self, key: str, value: str, models_dir: Path | str, *, file: bool) -> tuple[str, str, str, bool]:
        if not value:
            raise CatalogError(f"model {self.name!r} has no `{key}` in its catalog entry")
        problem = _source_problem(value)
        if problem:
            raise CatalogError(f"model {self.name!r}: {key} {value!r} {problem}")
        local = Path(models_dir) / value
        if local.is_file() if file else local.is_dir():
            local = local.resolve()
            return (str(local.parent), "", local.name, True) if file else (str(local), "", "", True)
        parts = PurePosixPath(value).parts
        if len(parts) < (3 if file else 2) or not _looks_like_hub_id("/".join(parts[:2])):
            what, shape = ("file", "owner/name/subfolder/file") if file else ("folder", "owner/name/subfolder")
            raise CatalogError(f"model {self.name!r}: there is no {what} {value} in the models folder, and "
                               f"{value!r} is not a hub path ('{shape}')")
        repo = "/".join(parts[:2])
        if file:
            return repo, "/".join(parts[2:-1]), parts[-1], False
        return repo, "/".join(parts[2:]), "", False


@dataclass(frozen=True)
class Catalog:
    default: str
    models: dict[str, ModelSpec]
    disabled: frozenset[str] = field(default_factory=frozenset)  # entries with `enabled = false`

    def get(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "(none)"
            if name in self.disabled:
                raise CatalogError(f"model {name!r} is disabled in the catalog; available: {known}") from None
            raise CatalogError(f"unknown model {name!r}; available: {known}") from None

    @property
    def names(self) -> list[str]:
        return list(self.models)


def load_catalog(path: Path | str) -> Catalog:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: not valid TOML: {exc}") from None

    unknown_top = set(data) - {"default", "models"}
    if unknown_top:
        raise CatalogError(f"{path}: unknown top-level key(s): {', '.join(sorted(unknown_top))}")
    default = data.get("default")
    if not isinstance(default, str):
        raise CatalogError(f"{path}: `default` must be the name of a model, e.g. default = \"tiny\"")
    entries = data.get("models")
    if not isinstance(entries, dict) or not entries:
        raise CatalogError(f"{path}: no [models.<name>] entries")

    models: dict[str, ModelSpec] = {}
    disabled: set[str] = set()
    for name, entry in entries.items():
        where = f"{path}: [models.{name}]"
        if not _NAME_PATTERN.match(name):
            raise CatalogError(f"{where}: the name must be 1-32 of a-z 0-9 . _ - (starting with a letter or digit)")
        if not isinstance(entry, dict):
            raise CatalogError(f"{where}: must be a table")
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            raise CatalogError(f"{where}: field `enabled` must be true or false")
        if not enabled:
            disabled.add(name)
            continue
        models[name] = _parse_entry(name, entry, where, Path(path).parent)  # the catalog sits in the models dir

    if default not in models:
        state = "disabled" if default in disabled else "not defined"
        raise CatalogError(f"{path}: default model {default!r} is {state}; enabled: {', '.join(models) or '(none)'}")
    return Catalog(default=default, models=models, disabled=frozenset(disabled))


# field -> (accepted types, required)
_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "enabled": ((bool,), False),
    "source": ((str,), True),
    "pipeline": ((str,), False),
    "width": ((int,), True),
    "height": ((int,), True),
    "steps": ((int,), True),
    "guidance": ((float, int), True),
    "max_prompt_tokens": ((int,), False),
    "upscaler": ((str,), False),
    "description": ((str,), False),
    "config": ((str,), False),
    "loras": ((dict,), False),
    "inpaint_source": ((str,), False),
    "ip_adapter": ((str,), False),
    "image_encoder": ((str,), False),
    "describer": ((str,), False),
}


def _parse_entry(name: str, entry: dict, where: str, models_dir: Path) -> ModelSpec:
    for key in entry:
        if key not in _FIELDS:
            raise CatalogError(f"{where}: unknown field `{key}`; known fields: {', '.join(_FIELDS)}")
    for key, (types, required) in _FIELDS.items():
        if key not in entry:
            if required:
                raise CatalogError(f"{where}: missing field `{key}`")
            continue
        value = entry[key]
        # bool is an int in Python; `width = true` is still a mistake.
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            wanted = " or ".join(t.__name__ for t in types)
            raise CatalogError(f"{where}: field `{key}` must be {wanted}, got {value!r}")

    pipeline = entry.get("pipeline") or _checkpoint_family(entry["source"], where, models_dir)
    if pipeline not in SUPPORTED_PIPELINES:
        raise CatalogError(f"{where}: field `pipeline` must be one of {', '.join(SUPPORTED_PIPELINES)}")
    family = family_of(pipeline)
    spec = ModelSpec(
        name=name,
        source=entry["source"],
        pipeline=pipeline,
        width=entry["width"],
        height=entry["height"],
        steps=entry["steps"],
        guidance=float(entry["guidance"]),
        max_prompt_tokens=entry.get("max_prompt_tokens", family.max_prompt_tokens),
        upscaler=entry.get("upscaler", "lanczos"),
        description=entry.get("description", ""),
        config=entry.get("config", ""),
        loras=_default_loras(entry.get("loras", {}), pipeline, where, models_dir),
        inpaint_source=entry.get("inpaint_source", ""),
        ip_adapter=entry.get("ip_adapter", ""),
        image_encoder=entry.get("image_encoder", ""),
        describer=entry.get("describer", ""),
    )

    for key in ("source", "config", "inpaint_source", "ip_adapter", "image_encoder", "describer"):
        if key != "source" and not getattr(spec, key):
            continue
        problem = _source_problem(getattr(spec, key))
        if problem:
            raise CatalogError(f"{where}: field `{key}` {getattr(spec, key)!r} {problem}")
    if spec.single_file and PurePosixPath(spec.source).suffix.lower() != ".safetensors":
        from bot.engine.checkpoints import pickle_problem

        raise CatalogError(f"{where}: field `source`: {pickle_problem(spec.source)}")
    if spec.config and not spec.single_file:
        raise CatalogError(f"{where}: field `config` is for single-file checkpoints; a model folder has its own")
    _check_ip_adapter(spec, family, where)
    multiple = family.size_multiple
    for key in ("width", "height"):
        value = getattr(spec, key)
        # The VAE (and a transformer's patches) divide the size; diffusers rejects sizes that do not divide.
        if value <= 0 or value % multiple:
            raise CatalogError(f"{where}: field `{key}` must be a positive multiple of {multiple}, got {value}")
    if spec.steps < 1:
        raise CatalogError(f"{where}: field `steps` must be at least 1, got {spec.steps}")
    if spec.guidance < 0:
        raise CatalogError(f"{where}: field `guidance` must be 0 or more, got {spec.guidance}")
    if not 1 <= spec.max_prompt_tokens <= family.max_prompt_tokens:
        # Beyond its text encoder's length the pipeline would cut prompts silently.
        raise CatalogError(f"{where}: field `max_prompt_tokens` must be 1 to {family.max_prompt_tokens} for "
                           f"pipeline \"{pipeline}\", got {spec.max_prompt_tokens}")
    upscalers = available_upscalers(models_dir)
    if spec.upscaler not in upscalers:
        raise CatalogError(f"{where}: field `upscaler` must be one of {', '.join(upscalers)} (files in "
                           f"{Path(models_dir) / 'upscalers'}), got {spec.upscaler!r}")
    return spec


def _check_ip_adapter(spec: ModelSpec, family: Family, where: str) -> None:
    """`ip_adapter` and `image_encoder` come together, on a family that takes an IP-Adapter, as safetensors."""
    if bool(spec.ip_adapter) != bool(spec.image_encoder):
        have, missing = ("ip_adapter", "image_encoder") if spec.ip_adapter else ("image_encoder", "ip_adapter")
        raise CatalogError(f"{where}: field `{have}` needs `{missing}` too (an IP-Adapter's weights and the CLIP "
                           "image encoder it was trained with go together)")
    if not spec.ip_adapter:
        return
    if not family.ip_adapter:
        takers = ", ".join(name for name, other in FAMILIES.items() if other.ip_adapter)
        raise CatalogError(f"{where}: field `ip_adapter`: pipeline \"{family.pipeline}\" ({family.label}) takes no "
                           f"IP-Adapter; only {takers} do. Remove `ip_adapter` and `image_encoder`")
    if PurePosixPath(spec.ip_adapter).suffix.lower() != ".safetensors":
        raise CatalogError(f"{where}: field `ip_adapter` must name a .safetensors file (other formats are pickles, "
                           f"which can run code when loaded), got {spec.ip_adapter!r}")


def _checkpoint_family(source: str, where: str, models_dir: Path) -> str:
    """A single-file checkpoint's family, read from its header, where the entry does not say it."""
    if not isinstance(source, str) or PurePosixPath(source).suffix.lower() != ".safetensors":
        return "stable-diffusion"
    from bot.engine.checkpoints import CheckpointError, detect_family

    path = Path(models_dir) / source
    if _source_problem(source) or not path.is_file():
        return "stable-diffusion"  # the source's own check says what is wrong
    try:
        return detect_family(path, models_dir)
    except CheckpointError as exc:
        raise CatalogError(f"{where}: field `source`: {exc}") from None


def _default_loras(table: dict, pipeline: str, where: str, models_dir: Path) -> tuple[tuple[str, float], ...]:
    """`loras = { name = weight, ... }`: each file there, for this family, with a sane weight."""
    from bot.engine.loras import LoraError, check_weight, find_lora, lora_family

    loras = []
    for name, weight in table.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise CatalogError(f"{where}: field `loras`: the weight of {name!r} must be a number, got {weight!r}")
        try:
            weight = check_weight(float(weight), name)
            path = find_lora(Path(models_dir) / "loras", name)
        except LoraError as exc:
            raise CatalogError(f"{where}: field `loras`: {exc}") from None
        family = lora_family(path)
        if family not in (None, pipeline):
            raise CatalogError(f"{where}: field `loras`: LoRA {name} is for {family}, not {pipeline}")
        loras.append((name, weight))
    return tuple(loras)


def _source_problem(source: str) -> str | None:
    """Why `source` may not be used as a path under the models dir, or None if it is fine."""
    if not source.strip():
        return "is empty"
    if PurePosixPath(source).is_absolute() or PureWindowsPath(source).is_absolute() or "\\" in source:
        return "must be a relative folder under the models dir or a hub id, not an absolute path"
    if ".." in PurePosixPath(source).parts:
        return "escapes the models dir ('..' is not allowed)"
    return None


def _looks_like_hub_id(source: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", source) is not None
