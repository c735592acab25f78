"""WorkerPool: one worker thread per device, all pulling from one FairQueue (bot/engine/queue.py):
owners take turns, fast before relax.

The event loop only ever touches queue bookkeeping (submit, position, cancel); the workers load models
and run torch. Workers report back through loop.call_soon_threadsafe, so every Ticket's asyncio objects
are only ever touched on the loop thread.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import gc
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Callable, Iterable, Sequence

from bot.engine.batching import BatchTuner, batch_key
from bot.engine.catalog import Catalog, CatalogError
from bot.engine.queue import LANES, FairQueue
from bot.engine.requests import (
    Cancelled,
    DeviceOptions,
    EngineError,
    Event,
    GenerateRequest,
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



class TicketState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"

_END = object()  # closes a ticket's event stream


@dataclass(frozen=True)
class LoadedState:
    """One model loaded on one device: how much its weights take, and how long the load took."""
    name: str
    device: str
    weight_bytes: int
    seconds: float = 0.0


class Ticket:
    """A submitted request: its place in line, its events, its result, and a way to cancel it.

    Use it from the event loop thread only (the workers talk to it through the loop).
    """

    def __init__(self, pool: WorkerPool, request: Request, loop: asyncio.AbstractEventLoop,
                 owner: object = None, lane: str = "fast"):
        self.request = request
        # Whose turn it is in the fair queue; no owner: a turn of its own.
        self.owner = owner if owner is not None else object()
        self.lane = lane
        self._pool = pool
        self._loop = loop
        # The pool's bookkeeping, written by the pool under its lock.
        self.state = TicketState.QUEUED
        self.batch: list[Ticket] = [self]  # the tickets sharing its pipeline call
        self._cancel_requested = threading.Event()  # read by the worker between denoising steps
        self._events: asyncio.Queue = asyncio.Queue()
        self._result: asyncio.Future = loop.create_future()
        # Nobody may await a cancelled task's result; don't let asyncio log "exception never retrieved".
        self._result.add_done_callback(lambda future: future.cancelled() or future.exception())

    def position(self) -> int | None:
        """1.. = place in line, 0 = running, None = finished (or cancelled)."""
        return self._pool.position_of(self)

    def cancel(self) -> bool:
        """Cancel the task. Queued: removed at once. Running alone: stops after its current denoising step
        (an upscale has no steps and simply completes). Running in a batch with others: finished as
        Cancelled at once; the others go on (the call stops once every ticket in it is cancelled).

        Returns False if it had already finished.
        """
        return self._pool.cancel_ticket(self)

    @property
    def done(self) -> bool:
        return self._result.done()

    async def events(self) -> AsyncIterator[Event]:
        """Started(device), then Progress(fraction)...; ends when the task finishes. One reader per ticket."""
        while True:
            event = await self._events.get()
            if event is _END:
                self._events.put_nowait(_END)  # a second reader (or a second loop) also ends
                return
            yield event

    async def result(self) -> GenerationResult:
        """The result, or raises EngineError (Cancelled if it was cancelled)."""
        # shield: cancelling the awaiting task must not cancel the shared future the worker completes.
        return await asyncio.shield(self._result)

    @property
    def cancel_requested(self) -> bool:
        """Asked to stop (read by the worker between denoising steps)."""
        return self._cancel_requested.is_set()

    def request_cancel(self) -> None:
        self._cancel_requested.set()

    # Called by the pool on the loop thread only.
    def emit(self, event: Event) -> None:
        if not self._result.done():
            self._events.put_nowait(event)

    def finish(self, result: GenerationResult | None = None, error: EngineError | None = None) -> None:
        if self._result.done():
            return
        if error is not None:
            self._result.set_exception(error)
        else:
            self._result.set_result(result)
        self._events.put_nowait(_END)


class WorkerPool:
    def __init__(
        self,
        catalog: Catalog,
        models_dir: Path,
        devices: Sequence[str] = ("cpu",),
        torch_threads: int | None = None,
        max_running_per_owner: int | None = None,
        max_batch_jobs: int = 4,
        adaptive_batching: bool = True,
        preview_interval: float = 0.0,
        device_options: DeviceOptions | None = None,
    ):
        devices = list(devices)
        if not devices:
            raise ValueError("WorkerPool needs at least one device")
        if len(set(devices)) != len(devices):
            # Two workers on one device would load two copies of every model and fight over its memory.
            raise ValueError(f"each device may appear once, got {devices}")
        if max_batch_jobs < 1:
            raise ValueError(f"max_batch_jobs must be at least 1, got {max_batch_jobs}")
        if torch_threads is not None and torch_threads < 1:
            raise ValueError(f"torch_threads must be at least 1, got {torch_threads}")
        self.catalog = catalog
        self.models_dir = Path(models_dir)
        self._upscalers = Upscalers(self.models_dir)  # super-resolution networks, per device
        self.devices = tuple(devices)
        self.torch_threads = torch_threads
        self._queue = FairQueue(max_running_per_owner)
        # Per device: how many jobs of one shape share a pipeline call (measured; 1 = no batching).
        self.max_batch_jobs = max_batch_jobs
        # Seconds between Preview events of a running call (0: none); the first comes after one interval.
        self.preview_interval = preview_interval
        self.device_options = device_options or DeviceOptions()
        # Pipeline seconds of the latest calls, newest last (what `bench overhead` subtracts).
        self.call_seconds: collections.deque = collections.deque(maxlen=256)
        self._tuners = {device: BatchTuner(max_batch_jobs, adaptive=adaptive_batching) for device in devices}
        self._lock = threading.Condition()
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        # (device, model name) -> LoadedModel; each entry is only touched by that device's worker.
        self._models: dict[tuple[str, str], LoadedModel] = {}
        # Read from the loop thread too, so written and read under the lock.
        self._weights: dict[tuple[str, str], int] = {}
        # device -> model loads/unloads for that device's worker, taken before its next job.
        self._chores: dict[str, collections.deque] = {device: collections.deque() for device in self.devices}

    @property
    def queued(self) -> int:
        """Tasks waiting for a worker (running ones not included)."""
        with self._lock:
            return len(self._queue)

    def queued_by_lane(self) -> dict[str, int]:
        """Tasks waiting for a worker in each lane: {"fast": n, "relax": m}."""
        with self._lock:
            return self._queue.waiting()

    async def start(self, preload: Iterable[str] = ()) -> None:
        """Start one worker per device; each loads the `preload` models before taking tasks.

        Raises EngineError (after closing the pool) if a preload fails, so a bad model fails at start-up.
        """
        if self._threads:
            raise RuntimeError("WorkerPool.start() was already called")
        preload = list(preload)
        for name in preload:
            self.catalog.get(name)  # an unknown name is a CatalogError now, not in a thread later
        self._loop = asyncio.get_running_loop()
        ready: list[asyncio.Future] = []
        for device in self.devices:
            future = self._loop.create_future()
            thread = threading.Thread(
                target=self._worker, args=(device, preload, future), name=f"dreamgrid-worker-{device}", daemon=True
            )
            self._threads.append(thread)
            ready.append(future)
            thread.start()
        try:
            await asyncio.gather(*ready)
        except BaseException:
            await self.close()
            raise

    def submit(self, request: Request, *, owner: object = None, lane: str = "fast") -> Ticket:
        """Queue a request and return its Ticket at once. Call from the event loop thread.

        `owner` (a user id) takes turns with the other owners; `lane` is "fast" or "relax" (served only
        while no fast request waits). No owner: first come, first served among the others without one."""
        if not isinstance(request, (GenerateRequest, UpscaleRequest)):
            raise TypeError(f"expected a GenerateRequest or UpscaleRequest, got {type(request).__name__}")
        if lane not in LANES:
            raise ValueError(f"lane must be one of {LANES}, got {lane!r}")
        if self._loop is None:
            raise RuntimeError("call `await pool.start()` before submit()")
        ticket = Ticket(self, request, self._loop, owner, lane)
        with self._lock:
            if self._closing:
                raise EngineError("the image engine is shutting down")
            self._queue.append(ticket)
            self._lock.notify()
        return ticket

    async def load(self, name: str) -> list[LoadedState]:
        """Load a catalog model on every device, in the background: each worker loads it between two jobs,
        so running jobs finish and the loop keeps serving. Raises CatalogError for an unknown name and
        EngineError if a device cannot load it (nothing else changes: the models already loaded stay)."""
        self.catalog.get(name)
        return await self._on_every_device(self._load_on, name)

    async def unload(self, name: str) -> list[str]:
        """Free a model on every device (after each worker's current job); returns the devices it was on.
        A job that still asks for it later loads it again, so no queued job fails."""
        self.catalog.get(name)
        freed = await self._on_every_device(self._unload_on, name)
        return [device for device, was_loaded in zip(self.devices, freed) if was_loaded]

    def loaded(self) -> list[LoadedState]:
        """What is loaded where, right now."""
        with self._lock:
            return [LoadedState(name, device, size) for (device, name), size in self._weights.items()]

    async def close(self) -> None:
        """Cancel waiting tasks, let running ones finish, and join the worker threads."""
        with self._lock:
            self._closing = True
            waiting = list(self._queue)
            self._queue.clear()
            for ticket in waiting:
                ticket.state = TicketState.FINISHED
            chores = [chore for queue in self._chores.values() for chore in queue]
            for queue in self._chores.values():
                queue.clear()
            self._lock.notify_all()
        for ticket in waiting:
            ticket.finish(error=Cancelled("the image engine is shutting down"))
        for _, future in chores:
            _settle(future, error=Cancelled("the image engine is shutting down"))
        # join() blocks; do it off the loop so running tasks can still deliver their results.
        await asyncio.to_thread(self._join)

    def _join(self) -> None:
        for thread in self._threads:
            thread.join()

    async def _on_every_device(self, work: Callable, name: str) -> list:
        """Run work(device, name) on each device's worker; wait for all, then raise the first failure."""
        chores = [self._chore(device, work, device, name) for device in self.devices]
        outcomes = await asyncio.gather(*chores, return_exceptions=True)
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            raise failures[0]
        return outcomes

    def _chore(self, device: str, work: Callable, *args) -> asyncio.Future:
        if self._loop is None:
            raise RuntimeError("call `await pool.start()` first")
        future = self._loop.create_future()
        with self._lock:
            if self._closing:
                raise EngineError("the image engine is shutting down")
            self._chores[device].append((lambda: work(*args), future))
            self._lock.notify_all()  # the one worker of that device must wake, whichever notify reaches
        return future

    # ---- called from Ticket (loop thread) ----

    def position_of(self, ticket: Ticket) -> int | None:
        with self._lock:
            if ticket.state is TicketState.QUEUED:
                return self._queue.index(ticket) + 1
            return 0 if ticket.state is TicketState.RUNNING else None

    def cancel_ticket(self, ticket: Ticket) -> bool:
        at_once = False
        with self._lock:
            state = ticket.state
            if state is TicketState.QUEUED:
                self._queue.remove(ticket)
                ticket.state = TicketState.FINISHED
            elif state is TicketState.RUNNING:
                ticket.request_cancel()
                # In a batch others still need the call: this one ends now, the call goes on for them.
                at_once = any(not other.cancel_requested for other in ticket.batch)
                if at_once:
                    ticket.state = TicketState.FINISHED
        if state is TicketState.QUEUED or at_once:
            ticket.finish(error=Cancelled("cancelled"))
        return state is not TicketState.FINISHED

    def batching(self) -> dict:
        """What each device's tuner measured: {device: {shape: {jobs per call: images/s}}}."""
        with self._lock:
            return {device: {shape: tuner.images_per_second(shape) for shape in tuner._seconds}
                    for device, tuner in self._tuners.items()}

    # ---- worker threads ----

    def _worker(self, device: str, preload: list[str], ready: asyncio.Future) -> None:
        if self.torch_threads is not None:
            import torch

            torch.set_num_threads(self.torch_threads)
        try:
            for name in preload:
                self._model_for(device, name)
        except Exception as exc:
            log.exception("preloading models on %s failed", device)
            self._call_soon(ready.set_exception, EngineError(f"could not load a model on {device}: {_short(exc)}"))
            return
        self._call_soon(ready.set_result, None)

        chores = self._chores[device]
        while True:
            with self._lock:
                while not self._queue and not chores and not self._closing:
                    self._lock.wait()
                chore = chores.popleft() if chores else None
                if chore is None:
                    if not self._queue:  # closing, and nothing left
                        return
                    tuner = self._tuners[device]
                    batch = self._queue.popbatch(lambda t: batch_key(t.request, self._family(t.request)),
                                                 lambda key: tuner.jobs_for(key.shape))
                    for ticket in batch:
                        ticket.state = TicketState.RUNNING
                        ticket.batch = batch
            if chore is not None:
                self._do_chore(*chore)
                continue
            outcomes: list = []
            try:
                outcomes = self._run(batch, device)
            finally:
                with self._lock:
                    for ticket in batch:
                        ticket.state = TicketState.FINISHED
                        self._queue.done(ticket)
                    self._lock.notify_all()  # their owners may be under the running limit again
            for ticket, outcome in zip(batch, outcomes):
                if isinstance(outcome, EngineError):
                    self._call_soon(ticket.finish, None, outcome)
                else:
                    self._call_soon(ticket.finish, outcome)

    def _run(self, batch: list[Ticket], device: str) -> list[GenerationResult | EngineError]:
        """Run a batch (one ticket, or several with the same batch key); one outcome per ticket."""
        for ticket in batch:
            self._call_soon(ticket.emit, Started(device))
        request = batch[0].request
        if isinstance(request, UpscaleRequest):
            return [self._guarded(lambda: self._upscale(request, device), request, device)]
        try:
            model = self._model_for(device, request.model)
        except EngineError as exc:
            return [exc] * len(batch)
        except Exception as exc:
            log.exception("loading model %s on %s failed", request.model, device)
            return [EngineError(f"generation failed: {_short(exc)}")] * len(batch)
        # A request this model refuses (a prompt too long...) fails alone; the others run.
        outcomes: list = [self._guarded(lambda t=ticket: model.check(t.request), ticket.request, device)
                          for ticket in batch]
        runnable = [ticket for ticket, outcome in zip(batch, outcomes) if outcome is None]
        if not runnable:
            return outcomes

        def on_step(done: int, total: int) -> None:
            live = [ticket for ticket in runnable if not ticket.cancel_requested]
            if not live:
                # Raised inside the pipeline's step callback: the denoising loop stops right here.
                raise Cancelled("cancelled")
            for ticket in live:
                self._call_soon(ticket.emit, Progress(done / total))

        results = self._guarded(
            lambda: model.run_batch([t.request for t in runnable], on_step, self._previewer(model, runnable)),
            request, device)
        if isinstance(results, EngineError):
            results = [results] * len(runnable)
        elif not any(ticket.cancel_requested for ticket in runnable):
            images = sum(len(result.images) for result in results)
            with self._lock:
                self.call_seconds.append(results[0].seconds)
                self._tuners[device].record(batch_key(request).shape, len(runnable), images,
                                            results[0].seconds)
        delivered = iter(results)
        return [next(delivered) if outcome is None else outcome for outcome in outcomes]

    def _previewer(self, model: LoadedModel, batch: list[Ticket]) -> Callable | None:
        """A latents callback that sends each ticket a preview of its own images, every preview_interval."""
        if not self.preview_interval:
            return None
        from bot.engine.previews import latents_to_images, preview_grid, projection_for

        projection = projection_for(model.txt2img.vae)
        if projection is None:
            return None
        scale = max(1, model.txt2img.vae_scale_factor // 2)  # half the size of the real images
        last = [time.monotonic()]

        def on_latents(done: int, total: int, latents) -> None:
            now = time.monotonic()
            if done >= total or now - last[0] < self.preview_interval:
                return  # the last step is followed by the real images
            images = latents_to_images(latents, projection, scale)
            at = 0
            for ticket in batch:
                count = len(ticket.request.seeds)
                if not ticket.cancel_requested:
                    self._call_soon(ticket.emit, Preview(preview_grid(images[at:at + count]), done / total))
                at += count
            last[0] = time.monotonic()  # the interval counts from the end of this preview's work

        return on_latents

    def _family(self, request: Request):
        """The family of the request's model, for its batch key (None for an upscale or an unknown model,
        which then fails on its own)."""
        try:
            return self.catalog.get(request.model).family
        except CatalogError:
            return None

    def _guarded(self, work: Callable, request: Request, device: str):
        """work(), with any failure turned into an EngineError whose message is safe to show."""
        try:
            return work()
        except EngineError as exc:  # Cancelled included; messages are already user-safe
            return exc
        except Exception as exc:
            log.exception("task for model %s on %s failed", request.model, device)
            return EngineError(f"generation failed: {_short(exc)}")

    def _do_chore(self, work: Callable, future: asyncio.Future) -> None:
        try:
            outcome = work()
        except Exception as exc:
            log.exception("a model load/unload failed")
            error = exc if isinstance(exc, EngineError) else EngineError(_short(exc))
            self._call_soon(_settle, future, None, error)
        else:
            self._call_soon(_settle, future, outcome)

    def _load_on(self, device: str, name: str) -> LoadedState:
        started = time.perf_counter()
        self._model_for(device, name)
        with self._lock:
            size = self._weights[(device, name)]
        return LoadedState(name, device, size, time.perf_counter() - started)

    def _unload_on(self, device: str, name: str) -> bool:
        model = self._models.pop((device, name), None)
        with self._lock:
            self._weights.pop((device, name), None)
        if model is None:
            return False
        del model
        gc.collect()  # the pipelines hold reference cycles; free the weights now, not at some later GC
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        return True

    def _model_for(self, device: str, name: str) -> LoadedModel:
        key = (device, name)
        model = self._models.get(key)
        if model is None:
            # Imported here so that importing bot.engine does not load torch and diffusers.
            from bot.engine.pipelines import LoadedModel

            try:
                spec = self.catalog.get(name)
            except CatalogError as exc:
                raise EngineError(str(exc)) from None
            model = self._models[key] = LoadedModel(spec, self.models_dir, device, self.device_options)
            with self._lock:
                self._weights[key] = _weight_bytes(model)
        return model

    def _upscale(self, request: UpscaleRequest, device: str) -> GenerationResult:
        try:
            spec = self.catalog.get(request.model)
        except CatalogError as exc:
            raise EngineError(str(exc)) from None
        started = time.perf_counter()
        image = self._upscalers.upscale(request.image, request.scale, spec.upscaler, device)
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

    def _call_soon(self, callback, *args) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            # The loop is closed: nobody is left to tell.
            log.debug("event loop closed; dropped %s", getattr(callback, "__name__", callback))


def _settle(future: asyncio.Future, result=None, error: BaseException | None = None) -> None:
    """Complete a chore's future on the loop thread, unless whoever waited for it gave up."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _weight_bytes(model: LoadedModel) -> int:
    """Bytes of the weights (parameters and buffers) of a loaded model's modules."""
    import torch

    total = 0
    safety = getattr(model, "safety", None)
    for module in (*model.txt2img.components.values(), safety.model if safety else None):
        if isinstance(module, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
    return total


def _short(exc: BaseException, limit: int = 200) -> str:
    """First line of an exception, trimmed, the server's file paths hidden: enough for a user (it reaches a
    job's public message); the traceback goes to the log."""
    text = str(exc).strip()
    return shorten(_hide_paths(text.splitlines()[0]) if text else type(exc).__name__, limit)


_ABSOLUTE = r"(?:/|[A-Za-z]:[\\/]|\\\\)"  # POSIX /…, a Windows drive C:\… or C:/…, a UNC share \\…
_URL_OR_PATH = re.compile(
    r"(?P<url>\b(?!file:)[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*)"  # a web address (not file://): kept
    rf"|(?P<q>['\"])(?P<quoted>{_ABSOLUTE}[^'\"\n]*?)(?P=q)"  # a quoted path, which may hold spaces
    rf"|(?<![\w.~\-/\\])(?P<bare>{_ABSOLUTE}[^\s'\"<>|]*)")  # a bare one ends at a space or a quote
_TRAILING = ".,;:!?)]}"  # after a bare path: the sentence's, not the path's


def _hide_paths(text: str) -> str:
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
