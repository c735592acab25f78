"""Model administration from Discord: list, use, load, unload, info, and /stats. Loads run on the worker
threads between jobs, so the bot keeps serving; a model that cannot load never becomes the default."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from bot.engine import Catalog, CatalogError, EngineError, LoadedState, ModelSpec, EnginePool
from bot.engine.checkpoints import list_checkpoints
from bot.engine.families import family_of
from bot.engine.loras import LORAS_DIR, LoraFile, list_loras
from bot.engine.tokens import prompt_tokens
from bot.recipe import JobStatus
from bot.service.policy import Policy
from bot.service.users import Requester, UserError, guild_key
from bot.store import Store, utcnow
from bot.store.admin import AdminStore
from bot.text import shorten



class LoadFailed(UserError):
    """A model could not be loaded (missing files, bad weights, out of memory); nothing changed."""


@dataclass(frozen=True)
class FoundModel:
    """Something under models/ that looks like weights: a diffusers folder or a single-file checkpoint."""
    path: str  # relative to the models dir
    kind: str  # "diffusers folder" | "checkpoint"
    in_catalog: str | None  # the catalog entry that uses it, if any
    note: str = ""  # a checkpoint's family, or why it cannot be used


@dataclass(frozen=True)
class ModelRow:
    spec: ModelSpec
    loaded: list[LoadedState]
    is_default: bool


@dataclass(frozen=True)
class ModelStats:
    model: str
    jobs: int
    images: int
    mean_seconds: float | None


@dataclass(frozen=True)
class Stats:
    queued: int
    running: int
    per_model: list[ModelStats]
    memory: dict[str, int]  # device -> bytes of loaded weights (a Ray replica's device is `<replica>/<device>`)
    models: dict[str, list[str]] = field(default_factory=dict)  # device -> the models loaded there

    @property
    def jobs(self) -> int:
        return sum(m.jobs for m in self.per_model)

    @property
    def images(self) -> int:
        return sum(m.images for m in self.per_model)


@dataclass(frozen=True)
class DeviceStatus:
    device: str
    models: list[LoadedState]
    weight_bytes: int  # the loaded models' weights, as the pool counted them
    allocated_bytes: int | None  # what torch holds on a CUDA/MPS device now; None on the CPU


@dataclass(frozen=True)
class OperatorsStatus:
    """The operators' status page (bot/web/status.py): queue, devices, the last day's jobs, failures."""
    waiting: dict[str, int]  # lane -> jobs waiting for a worker (the pool's line)
    lanes: dict[str, dict[str, int]]  # lane -> {"queued": n, "running": m} (the store's accepted jobs)
    users: list[dict]  # {"name", "queued", "running"} per member with active jobs
    devices: list[DeviceStatus]
    process_rss: int | None  # the bot's resident memory, bytes
    hours: list[dict]  # {"hour": "2026-01-02T13", "done": n, "failed": m}, oldest first, 24 of them
    failures: list[dict]  # {"id", "kind", "model", "error", "finished_at"}, newest first


class ModelAdmin:
    def __init__(self, store: Store, pool: EnginePool, catalog: Catalog, models_dir: Path, policy: Policy) -> None:
        self.store = store
        self.records = AdminStore(store)
        self.pool = pool
        self.catalog = catalog
        self.models_dir = Path(models_dir)
        self.policy = policy

    def source_kind(self, spec: ModelSpec) -> str:
        """What a model's source is, in words."""
        if spec.single_file:
            return "a checkpoint under models/" + (f", configs from `{spec.config}`" if spec.config else "")
        return "a folder under models/" if (self.models_dir / spec.source).is_dir() else "a hub id"

    def loras_for(self, spec: ModelSpec) -> list[LoraFile]:
        """The LoRAs under models/loras a prompt for this model may name: its family's, and those whose
        files do not say (they are checked when they load)."""
        return [lora for lora in list_loras(self.models_dir / LORAS_DIR) if lora.family in (None, spec.pipeline)]

    def disabled(self) -> list[str]:
        """Catalog entries switched off (`enabled = false`)."""
        return sorted(self.catalog.disabled)

    def has_safety_checker(self, spec: ModelSpec) -> bool:
        return (self.models_dir / spec.source / "safety_checker").is_dir()

    def model(self, name: str) -> ModelSpec:
        """The catalog entry called `name`; anything else (a path, a typo) is refused with the names."""
        try:
            return self.catalog.get(name.strip())
        except CatalogError:
            known = ", ".join(f"`{n}`" for n in sorted(self.catalog.models))
            raise UserError(f"There is no model called `{_plain(name)}`. Models you can pick: {known} "
                            "(see /model list).") from None

    def model_names(self, typed: str = "") -> list[str]:
        typed = typed.strip().lower()
        return [name for name in sorted(self.catalog.models) if typed in name][:25]

    async def models(self, guild_id: int | None) -> list[ModelRow]:
        default = await self.policy.model_for(guild_id)
        loaded = self.pool.loaded()
        return [ModelRow(spec, [s for s in loaded if s.name == spec.name], spec.name == default)
                for spec in self.catalog.models.values()]

    def found_models(self) -> list[FoundModel]:
        """Diffusers folders (one or two levels deep, for owner/name) and single-file checkpoints under models/."""
        by_source = {spec.source: spec.name for spec in self.catalog.models.values()}
        found: list[FoundModel] = []
        if not self.models_dir.is_dir():
            return found
        candidates = [p for p in self.models_dir.iterdir() if not p.name.startswith(".")]
        candidates += [q for p in candidates if p.is_dir() and not (p / "model_index.json").is_file()
                       for q in p.iterdir() if not q.name.startswith(".")]
        for path in sorted(candidates):
            relative = path.relative_to(self.models_dir).as_posix()
            if path.is_dir() and (path / "model_index.json").is_file():
                found.append(FoundModel(relative, "diffusers folder", by_source.get(relative)))
        for checkpoint in list_checkpoints(self.models_dir):  # models/checkpoints/, as A1111 and ComfyUI have it
            note = family_of(checkpoint.family).label if checkpoint.family else f"cannot be used: {checkpoint.problem}"
            found.append(FoundModel(checkpoint.path, "checkpoint", by_source.get(checkpoint.path), note))
        return found

    async def use(self, who: Requester, name: str) -> tuple[str, list[LoadedState]]:
        """Make `name` the server's default. It is loaded first, so a model that cannot load never becomes
        the default: the previous one keeps serving. Returns the previous default and where it loaded."""
        spec = self.model(name)
        previous = await self.policy.model_for(who.guild_id)
        states = await self._load(spec, previous)
        guild = guild_key(who.guild_id)
        await self.records.set_guild_setting(guild, "default_model", spec.name)
        self.policy.forget(guild)
        return previous, states

    async def load(self, who: Requester, name: str) -> list[LoadedState]:
        spec = self.model(name)
        return await self._load(spec, await self.policy.model_for(who.guild_id))

    async def unload(self, who: Requester, name: str) -> list[str]:
        spec = self.model(name)
        if spec.name == await self.policy.model_for(who.guild_id):
            raise UserError(f"`{spec.name}` is this server's default model, so it stays loaded. "
                            "Pick another default with /model use first.")
        devices = await self.pool.unload(spec.name)
        if not devices:
            raise UserError(f"`{spec.name}` is not loaded, so there was nothing to free.")
        return devices

    async def _load(self, spec: ModelSpec, serving: str) -> list[LoadedState]:
        try:
            states = await self.pool.load(spec.name)
        except (EngineError, CatalogError) as error:
            raise LoadFailed(f"Model `{spec.name}` could not be loaded: {error}. Nothing changed: "
                            f"`{serving}` is still the default. Check the model's files and its catalog "
                            "entry, then try again.") from None
        # Its tokenizer too (~2 s once), so the first /imagine on it does not wait for it.
        await asyncio.to_thread(prompt_tokens, spec, self.models_dir, "")
        return states

    async def stats(self, hours: int = 1) -> Stats:
        since = (utcnow() - timedelta(hours=hours)).isoformat()
        rows = await self.records.job_stats(since)
        active = await self.store.active_jobs()
        memory: dict[str, int] = {device: 0 for device in self.pool.devices}
        models: dict[str, list[str]] = {device: [] for device in self.pool.devices}
        for state in self.pool.loaded():
            memory[state.device] = memory.get(state.device, 0) + state.weight_bytes
            models.setdefault(state.device, []).append(state.name)
        return Stats(
            queued=sum(job.status is JobStatus.QUEUED for job in active),
            running=sum(job.status is JobStatus.RUNNING for job in active),
            per_model=[ModelStats(r["model"], r["jobs"], r["images"], r["mean_seconds"]) for r in rows],
            memory=memory,
            models=models,
        )

    async def status(self, hours: int = 24, failures: int = 10) -> OperatorsStatus:
        """Read only: what the status page shows. The failures' text is the one members were told (paths
        already shortened by the runner)."""
        now = utcnow().replace(minute=0, second=0, microsecond=0)
        first = now - timedelta(hours=hours - 1)
        per_hour = {(first + timedelta(hours=h)).isoformat()[:13]: {"done": 0, "failed": 0} for h in range(hours)}
        for row in await self.records.jobs_per_hour(first.isoformat()):
            if row["hour"] in per_hour:
                per_hour[row["hour"]][row["status"]] = row["jobs"]
        lanes = {lane: {"queued": 0, "running": 0} for lane in ("fast", "relax")}
        users: dict[str, dict] = {}
        for row in await self.records.active_by_user():
            lanes.setdefault(row["lane"], {"queued": 0, "running": 0})[row["status"]] += row["jobs"]
            member = users.setdefault(row["name"], {"name": row["name"], "queued": 0, "running": 0})
            member[row["status"]] += row["jobs"]
        loaded = self.pool.loaded()
        devices = [DeviceStatus(device, [s for s in loaded if s.device == device],
                                sum(s.weight_bytes for s in loaded if s.device == device), _allocated(device))
                   for device in self.pool.devices]
        return OperatorsStatus(
            waiting=self.pool.queued_by_lane(), lanes=lanes, users=list(users.values()), devices=devices,
            process_rss=_rss(), hours=[{"hour": hour, **counts} for hour, counts in per_hour.items()],
            failures=await self.records.recent_failures(failures))


def _allocated(device: str) -> int | None:
    """Bytes torch has allocated on an accelerator, where it can say so cheaply; None on the CPU."""
    torch = sys.modules.get("torch")  # the pool imported it if any model loaded; never imported here
    try:
        if torch is not None and device.startswith("cuda") and torch.cuda.is_available():
            return int(torch.cuda.memory_allocated(device))
        if torch is not None and device.startswith("mps") and torch.backends.mps.is_available():
            return int(torch.mps.current_allocated_memory())
    except Exception:  # a device torch no longer sees: the page shows no number rather than an error
        return None
    return None


def _rss() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss



def _plain(text: str, limit: int = 60) -> str:
    """User text shown inside `code`: no backticks to break out of it, and short."""
    return shorten(text.replace("`", "'").strip(), limit)
