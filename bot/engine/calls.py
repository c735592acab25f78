"""One pipeline call: a batch of jobs (one, or several with the same batch key) on one device, with a step
callback that reports progress and stops the call once every job in it asked to stop, live previews, and
every failure turned into a user-safe EngineError.

The in-process pool's worker threads (bot/engine/pool.py) and the Ray Serve replicas (bot/serve/app.py) both
run calls through `run_call`, so a job runs the same way on either backend.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from bot.engine.catalog import Catalog, CatalogError
from bot.engine.requests import (
    Cancelled,
    EngineError,
    Event,
    GenerationResult,
    Preview,
    Progress,
    Request,
    Started,
    UpscaleRequest,
)
from bot.engine.upscale import Upscalers
from bot.text import shorten

if TYPE_CHECKING:
    from bot.engine.pipelines import LoadedModel

log = logging.getLogger(__name__)

Outcome = GenerationResult | EngineError


class Job(Protocol):
    """What a call needs of each job: its request, and whether it asked to stop."""
    request: Request

    @property
    def cancel_requested(self) -> bool: ...


def run_call(batch: Sequence[Job], device: str, *, model_for: Callable[[str], LoadedModel], catalog: Catalog,
             upscalers: Upscalers, emit: Callable[[Job, Event], None],
             preview_interval: float = 0.0) -> list[Outcome]:
    """Run a batch on `device` (a thread of its own, never the event loop); one outcome per job, in order.

    `model_for(name)` gives the loaded model (it may load it); `emit(job, event)` must be thread-safe."""
    for job in batch:
        emit(job, Started(device))
    request = batch[0].request
    if isinstance(request, UpscaleRequest):
        return [guarded(lambda: _upscale(catalog, upscalers, request, device), request, device)]
    model = guarded(lambda: model_for(request.model), request, device)
    if isinstance(model, EngineError):
        return [model] * len(batch)
    # A request this model refuses (a prompt too long...) fails alone; the others run.
    outcomes: list = [guarded(lambda j=job: model.check(j.request), job.request, device) for job in batch]
    runnable = [job for job, outcome in zip(batch, outcomes) if outcome is None]
    if not runnable:
        return outcomes

    def on_step(done: int, total: int) -> None:
        live = [job for job in runnable if not job.cancel_requested]
        if not live:
            # Raised inside the pipeline's step callback: the denoising loop stops right here.
            raise Cancelled("cancelled")
        for job in live:
            emit(job, Progress(done / total))

    previews = _previewer(model, runnable, emit, preview_interval)
    results = guarded(lambda: model.run_batch([j.request for j in runnable], on_step, previews), request, device)
    if isinstance(results, EngineError):
        results = [results] * len(runnable)
    delivered = iter(results)
    return [next(delivered) if outcome is None else outcome for outcome in outcomes]


def _previewer(model: LoadedModel, batch: Sequence[Job], emit: Callable, interval: float) -> Callable | None:
    """A latents callback that sends each job a preview of its own images, every `interval` seconds."""
    if not interval:
        return None
    from bot.engine.previews import latents_to_images, preview_grid, projection_for

    projection = projection_for(model.txt2img.vae)
    if projection is None:
        return None
    scale = max(1, model.txt2img.vae_scale_factor // 2)  # half the size of the real images
    last = [time.monotonic()]

    def on_latents(done: int, total: int, latents) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] < interval:
            return  # the last step is followed by the real images
        images = latents_to_images(latents, projection, scale)
        at = 0
        for job in batch:
            count = len(job.request.seeds)
            if not job.cancel_requested:
                emit(job, Preview(preview_grid(images[at:at + count]), done / total))
            at += count
        last[0] = time.monotonic()  # the interval counts from the end of this preview's work

    return on_latents


def guarded(work: Callable, request: Request, device: str):
    """work(), with any failure turned into an EngineError whose message is safe to show."""
    try:
        return work()
    except EngineError as exc:  # Cancelled included; messages are already user-safe
        return exc
    except Exception as exc:
        log.exception("task for model %s on %s failed", request.model, device)
        return EngineError(f"generation failed: {short(exc)}")


def _upscale(catalog: Catalog, upscalers: Upscalers, request: UpscaleRequest, device: str) -> GenerationResult:
    try:
        spec = catalog.get(request.model)
    except CatalogError as exc:
        raise EngineError(str(exc)) from None
    started = time.perf_counter()
    image = upscalers.upscale(request.image, request.scale, spec.upscaler, device)
    return GenerationResult(
        images=[image],
        seeds=(),
        width=image.width,
        height=image.height,
        steps=0,
        guidance=0.0,
        model=spec.name,
        device=device,
        seconds=time.perf_counter() - started,
    )


def weight_bytes(model: LoadedModel) -> int:
    """Bytes of the weights (parameters and buffers) of a loaded model's modules."""
    import torch

    total = 0
    safety = getattr(model, "safety", None)
    for module in (*model.txt2img.components.values(), safety.model if safety else None):
        if isinstance(module, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
    return total


def short(exc: BaseException, limit: int = 200) -> str:
    """First line of an exception, trimmed, the server's file paths hidden: enough for a user (it reaches a
    job's public message); the traceback goes to the log."""
    text = str(exc).strip()
    return shorten(hide_paths(text.splitlines()[0]) if text else type(exc).__name__, limit)


_ABSOLUTE = r"(?:/|[A-Za-z]:[\\/]|\\\\)"  # POSIX /…, a Windows drive C:\… or C:/…, a UNC share \\…
_URL_OR_PATH = re.compile(
    r"(?P<url>\b(?!file:)[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*)"  # a web address (not file://): kept
    rf"|(?P<q>['\"])(?P<quoted>{_ABSOLUTE}[^'\"\n]*?)(?P=q)"  # a quoted path, which may hold spaces
    rf"|(?<![\w.~\-/\\])(?P<bare>{_ABSOLUTE}[^\s'\"<>|]*)")  # a bare one ends at a space or a quote
_TRAILING = ".,;:!?)]}"  # after a bare path: the sentence's, not the path's


def hide_paths(text: str) -> str:
    """Every absolute file path in `text` cut to its last component ("…/model.safetensors"): users need not
    see where the server keeps its files. A path needs two parts ("/a/b", "C:\\a"), so "/imagine" stays."""
    def last_component(path: str) -> str:
        parts = [part for part in re.split(r"[\\/]+", path) if part]
        if len(parts) < 2:
            return path
        return "…" + ("\\" if "\\" in path and not path.startswith("/") else "/") + parts[-1]

    def replace(match: re.Match[str]) -> str:
        if match["url"]:
            return match["url"]
        if match["quoted"]:
            return match["q"] + last_component(match["quoted"]) + match["q"]
        path = match["bare"]
        kept = path.rstrip(_TRAILING)
        return last_component(kept) + path[len(kept):]

    return _URL_OR_PATH.sub(replace, text)
