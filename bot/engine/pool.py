"""WorkerPool: one worker thread per device, all pulling from one FairQueue (bot/engine/queue.py):
owners take turns, fast before relax.

The event loop only ever touches queue bookkeeping (submit, position, cancel: bot/engine/tickets.py); the
workers load models and run torch (one call at a time: bot/engine/calls.py). Workers report back through
loop.call_soon_threadsafe, so every Ticket's asyncio objects are only ever touched on the loop thread.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from bot.engine.batching import BatchTuner
from bot.engine.calls import run_call, short, weight_bytes
from bot.engine.catalog import Catalog, CatalogError
from bot.engine.describers import Describers
from bot.engine.requests import Cancelled, DeviceOptions, EngineError, GenerationResult
from bot.engine.tickets import LoadedState, Ticket, TicketLine, TicketState, measures, record_call, shutting_down
from bot.engine.upscale import Upscalers

if TYPE_CHECKING:
    from PIL import Image

    from bot.engine.pipelines import LoadedModel

log = logging.getLogger(__name__)

__all__ = ["LoadedState", "Ticket", "TicketState", "WorkerPool"]


class WorkerPool(TicketLine):
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
        if torch_threads is not None and torch_threads < 1:
            raise ValueError(f"torch_threads must be at least 1, got {torch_threads}")
        super().__init__(catalog, max_running_per_owner, max_batch_jobs)
        self.models_dir = Path(models_dir)
        self._upscalers = Upscalers(self.models_dir)  # super-resolution networks, per device
        self._describers = Describers(self.models_dir, devices[0])  # /describe's captioners, on the first device
        self.devices = tuple(devices)
        self.torch_threads = torch_threads
        # Seconds between Preview events of a running call (0: none); the first comes after one interval.
        self.preview_interval = preview_interval
        self.device_options = device_options or DeviceOptions()
        # Pipeline seconds of the latest calls, newest last (what `bench overhead` subtracts).
        self.call_seconds: collections.deque = collections.deque(maxlen=256)
        self._tuners = {device: BatchTuner(max_batch_jobs, adaptive=adaptive_batching) for device in devices}
        self._threads: list[threading.Thread] = []
        # (device, model name) -> LoadedModel; each entry is only touched by that device's worker.
        self._models: dict[tuple[str, str], LoadedModel] = {}
        # Read from the loop thread too, so written and read under the lock.
        self._weights: dict[tuple[str, str], int] = {}
        # device -> model loads/unloads for that device's worker, taken before its next job.
        self._chores: dict[str, collections.deque] = {device: collections.deque() for device in self.devices}

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

    async def describe(self, describer: str, image: Image.Image) -> list[str]:
        """Four prompts for `image` by the describer folder `describer`, in a thread beside the workers (it
        makes no pictures, so it takes no place in the line); DescriberError if there is none there."""
        return await asyncio.to_thread(self._describers.describe, describer, image)

    def loaded(self) -> list[LoadedState]:
        """What is loaded where, right now."""
        with self._lock:
            return [LoadedState(name, device, size) for (device, name), size in self._weights.items()]

    async def close(self) -> None:
        """Cancel waiting tasks, let running ones finish, and join the worker threads."""
        waiting = self._drop_waiting()
        with self._lock:
            chores = [chore for queue in self._chores.values() for chore in queue]
            for queue in self._chores.values():
                queue.clear()
        shutting_down(waiting)
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
            self._call_soon(ready.set_exception, EngineError(f"could not load a model on {device}: {short(exc)}"))
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
                    batch = self._take_batch(self._tuners[device])
            if chore is not None:
                self._do_chore(*chore)
                continue
            outcomes: list = []
            try:
                outcomes = self._run(batch, device)
            finally:
                self._call_ended(batch)
            for ticket, outcome in zip(batch, outcomes):
                if isinstance(outcome, EngineError):
                    self._call_soon(ticket.finish, None, outcome)
                else:
                    self._call_soon(ticket.finish, outcome)

    def _run(self, batch: list[Ticket], device: str) -> list[GenerationResult | EngineError]:
        """Run a batch (one ticket, or several with the same batch key); one outcome per ticket."""
        outcomes = run_call(batch, device, model_for=lambda name: self._model_for(device, name),
                            catalog=self.catalog, upscalers=self._upscalers,
                            emit=lambda ticket, event: self._call_soon(ticket.emit, event),
                            preview_interval=self.preview_interval)
        results = [outcome for outcome in outcomes if isinstance(outcome, GenerationResult)]
        if measures(batch, results):
            with self._lock:
                self.call_seconds.append(results[0].seconds)
                record_call(self._tuners[device], batch[0].request, results)
        return outcomes

    def _do_chore(self, work: Callable, future: asyncio.Future) -> None:
        try:
            outcome = work()
        except Exception as exc:
            log.exception("a model load/unload failed")
            error = exc if isinstance(exc, EngineError) else EngineError(short(exc))
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
        free_memory(device)
        return True

    def _model_for(self, device: str, name: str) -> LoadedModel:
        key = (device, name)
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = load_model(self.catalog, name, self.models_dir, device, self.device_options)
            with self._lock:
                self._weights[key] = weight_bytes(model)
        return model

    def _call_soon(self, callback, *args) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            # The loop is closed: nobody is left to tell.
            log.debug("event loop closed; dropped %s", getattr(callback, "__name__", callback))


def load_model(catalog: Catalog, name: str, models_dir: Path, device: str,
               options: DeviceOptions | None = None) -> LoadedModel:
    """A catalog model loaded on a device (blocking: a worker thread's work); EngineError for an unknown name."""
    # Imported here so that importing bot.engine does not load torch and diffusers.
    from bot.engine.pipelines import LoadedModel

    try:
        spec = catalog.get(name)
    except CatalogError as exc:
        raise EngineError(str(exc)) from None
    return LoadedModel(spec, models_dir, device, options or DeviceOptions())


def free_memory(device: str) -> None:
    """After dropping a model: the pipelines hold reference cycles; free the weights now, not at some later GC."""
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def _settle(future: asyncio.Future, result=None, error: BaseException | None = None) -> None:
    """Complete a chore's future on the loop thread, unless whoever waited for it gave up."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
