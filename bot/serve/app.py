"""The Ray Serve application: the same engine code as the in-process pool, one replica per GPU.

    proxy -> Ingress (HTTP: /call, /describe, /control/status|load|unload; no GPU)
               -> Engine replicas (one per GPU, `@serve.multiplexed` models, one pipeline call at a time)
    Registry (a small actor): what each replica holds, reported every HEARTBEAT seconds, and the enabled
    ("multiplexed") model set that admins change with /model load|unload|use

The bot owns the fair queue and the batching decision (bot/engine/remote.py): each /call is one pipeline call
of one to MAX_BATCH_JOBS jobs with the same batch key, formed by the bot's FairQueue.popbatch and BatchTuner
exactly as in the in-process pool, and run here by bot/engine/calls.py's `run_call`. Replicas are stateless:
models are a cache (the enabled set is loaded on every replica, other models on the first job that needs
them, `max_models` at most, least recently used first out), the Registry only mirrors what they report.
The protocol is bot/engine/wire.py.

Run it with `dreamgrid serve` (a local or existing cluster) or `serve run deploy/serve.yaml`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from bot.engine.calls import run_call, short, weight_bytes
from bot.engine.catalog import load_catalog
from bot.engine.describers import DescriberError, Describers
from bot.engine.pool import free_memory, load_model
from bot.engine.requests import DeviceOptions, EngineError, GenerateRequest, Started
from bot.engine.upscale import Upscalers
from bot.engine.wire import MODEL_HEADER, decode_request, encode_event, event_line, image_from_text, outcome_event

log = logging.getLogger("dreamgrid.serve")

APP_NAME = "dreamgrid"
ROUTE_PREFIX = "/dreamgrid"
REGISTRY = "dreamgrid-registry"
NAMESPACE = "dreamgrid"
HEARTBEAT = 0.5  # seconds between a replica's reports
FRESH = 3.0  # a replica that has not reported for this long is gone (killed, node lost)
LOAD_TIMEOUT = 900.0  # seconds /control/load waits for every replica (a large model on a cold disk)


@ray.remote(num_cpus=0)
class Registry:
    """What each replica holds (its own reports, so it is never more than HEARTBEAT old) and the enabled
    model set. Soft state: lost with the head node, it is rebuilt from the next reports and the bot's
    next /model load (the bot enables its default model when it starts)."""

    def __init__(self) -> None:
        self._replicas: dict[str, tuple[float, dict]] = {}
        self._enabled: list[str] | None = None  # None: nobody said yet (replicas keep what they have)

    def sync(self, replica: str, state: dict) -> list[str] | None:
        self._replicas[replica] = (time.monotonic(), state)
        return self._enabled

    def gone(self, replica: str) -> None:
        self._replicas.pop(replica, None)

    def replicas(self) -> list[dict]:
        now = time.monotonic()
        for replica, (seen, _) in list(self._replicas.items()):
            if now - seen > 10 * FRESH:
                del self._replicas[replica]
        return [state for seen, state in self._replicas.values() if now - seen <= FRESH]

    def enabled(self) -> list[str]:
        return list(self._enabled or ())

    def enable(self, name: str) -> list[str]:
        self._enabled = [*(n for n in self._enabled or () if n != name), name]
        return self._enabled

    def disable(self, name: str) -> list[str]:
        self._enabled = [n for n in self._enabled or () if n != name]
        return self._enabled


def registry():
    """This application's registry (one per application: two of them may share a cluster)."""
    name = f"{REGISTRY}-{serve.get_replica_context().app_name}"
    return Registry.options(name=name, namespace=NAMESPACE, get_if_exists=True, lifetime="detached").remote()


class _Job:
    """One job of a call, as run_call sees it; cancelled when the bot closes the request."""

    def __init__(self, index: int, request) -> None:
        self.index = index
        self.request = request
        self._cancel = threading.Event()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()


class _Held:
    """What Serve's multiplexer keeps per model id: a token. The weights are in Engine._models, so an
    unload frees them at once; when Serve evicts the token (least recently used), its __del__ frees them."""

    def __init__(self, engine: "Engine", name: str) -> None:
        self.engine, self.name = engine, name

    def __del__(self) -> None:
        self.engine._evicted(self)


@serve.deployment(name="Engine", max_ongoing_requests=1, health_check_period_s=2, health_check_timeout_s=30,
                  graceful_shutdown_timeout_s=5)
class Engine:
    """One replica: one device, one pipeline call at a time (max_ongoing_requests=1: the bot sends no more
    than the replicas can take, so nothing waits here that could be served elsewhere)."""

    async def __init__(self, models_dir: str = "models", device: str = "auto", torch_threads: int | None = None,
                       max_models: int = 3, device_options: dict | None = None) -> None:
        import torch

        self.models_dir = Path(models_dir)
        self.catalog = load_catalog(self.models_dir / "catalog.toml")
        if device == "auto":  # Ray shows a replica only its own GPU (CUDA_VISIBLE_DEVICES)
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.options = DeviceOptions(**(device_options or {}))
        self.upscalers = Upscalers(self.models_dir)
        self.describers = Describers(self.models_dir, device)
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.label = f"{self.replica}/{device}"
        self._models: dict[str, tuple[_Held, object, int, float]] = {}  # name -> (token, model, bytes, seconds)
        self._failed: dict[str, str] = {}  # enabled models that could not load here, and why
        self._busy = asyncio.Lock()  # one call or load at a time: loads happen between two calls
        self._calls = 0
        self.registry = registry()
        self._enabled: set[str] | None = None
        self._enabled_changed = asyncio.Event()
        async def load(name: str) -> _Held:  # a plain function: Serve keeps its model cache on it
            return await self._load_held(name)

        self.get_model = serve.multiplexed(max_num_models_per_replica=max_models)(load)
        self._tasks = [asyncio.create_task(self._report()), asyncio.create_task(self._follow())]

    # ---- models ----

    async def _load_held(self, name: str) -> _Held:
        held = _Held(self, name)
        await self._load_into(name, held)
        return held

    async def _load_into(self, name: str, held: _Held) -> None:
        started = time.perf_counter()
        model = await asyncio.to_thread(load_model, self.catalog, name, self.models_dir, self.device, self.options)
        self._models[name] = (held, model, weight_bytes(model), time.perf_counter() - started)
        self._failed.pop(name, None)

    async def model(self, name: str):
        """The loaded model (loaded now if needed); Serve learns this replica holds it (request routing)."""
        held = await self.get_model(name)
        entry = self._models.get(name)
        if entry is None or entry[0] is not held:  # unloaded by an admin while Serve still listed it
            await self._load_into(name, held)
        return self._models[name][1]

    def _evicted(self, held: _Held) -> None:
        entry = self._models.get(held.name)
        if entry is not None and entry[0] is held:  # not a newer load of that model
            self._free(held.name)

    def _free(self, name: str) -> None:
        if self._models.pop(name, None) is not None:
            free_memory(self.device)

    def state(self) -> dict:
        return {"replica": self.replica, "device": self.label, "pid": os.getpid(), "node": ray.util.get_node_ip_address(),
                "models": [{"name": name, "weight_bytes": size, "seconds": round(seconds, 3)}
                           for name, (_, _, size, seconds) in self._models.items()],
                "failed": dict(self._failed), "busy": self._busy.locked(), "calls": self._calls}

    async def _report(self) -> None:
        while True:
            try:
                enabled = await self.registry.sync.remote(self.replica, self.state())
                if enabled is not None and set(enabled) != self._enabled:
                    self._enabled = set(enabled)
                    self._enabled_changed.set()
            except Exception:
                log.warning("replica %s could not report to the registry", self.replica, exc_info=True)
            await asyncio.sleep(HEARTBEAT)

    async def _follow(self) -> None:
        """Keep the enabled set loaded here (between two calls) and free what admins unloaded."""
        had: set[str] = set()
        while True:
            await self._enabled_changed.wait()
            self._enabled_changed.clear()
            enabled = set(self._enabled or ())
            self._failed = {name: why for name, why in self._failed.items() if name in enabled}
            for name in sorted(had - enabled):
                async with self._busy:
                    self._free(name)
            for name in sorted(enabled - set(self._models) - set(self._failed)):
                async with self._busy:
                    try:
                        await self.model(name)
                    except Exception as exc:
                        log.exception("replica %s could not load %s", self.replica, name)
                        self._failed[name] = short(exc)
            had = enabled

    # ---- calls ----

    async def run(self, body: dict):
        """One pipeline call; yields the NDJSON lines of bot/engine/wire.py."""
        try:
            jobs = [_Job(index, decode_request(data)) for index, data in enumerate(body["jobs"])]
            if not jobs:
                raise ValueError("a call needs at least one job")
            preview_interval = float(body.get("preview_interval", 0.0))
        except Exception as exc:
            yield event_line({"event": "error", "job": None, "message": f"a malformed call: {short(exc)}",
                              "cancelled": False})
            yield event_line({"event": "end"})
            return
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        first = jobs[0].request
        async with self._busy:
            self._calls += 1
            model = None
            if isinstance(first, GenerateRequest):
                try:
                    model = await self.model(first.model)
                except Exception as exc:
                    error = exc if isinstance(exc, EngineError) else EngineError(f"generation failed: {short(exc)}")
                    for job in jobs:
                        yield event_line(outcome_event(job.index, error))
                    yield event_line({"event": "end"})
                    return
            emit = lambda job, event: loop.call_soon_threadsafe(events.put_nowait, (job.index, event))  # noqa: E731
            work = functools.partial(run_call, jobs, self.device, model_for=lambda name: model, catalog=self.catalog,
                                     upscalers=self.upscalers, emit=emit, preview_interval=preview_interval)
            future = loop.run_in_executor(None, work)
            # After every event the thread posted (call_soon_threadsafe keeps their order).
            future.add_done_callback(lambda _: loop.call_soon_threadsafe(events.put_nowait, None))
            try:
                while (item := await events.get()) is not None:
                    index, event = item
                    if isinstance(event, Started):
                        if index == 0:
                            yield event_line({"event": "started", "device": self.label})
                        continue
                    yield event_line(encode_event(index, event))
                for job, outcome in zip(jobs, future.result()):
                    if not isinstance(outcome, EngineError):
                        outcome = replace(outcome, device=self.label)
                    yield event_line(outcome_event(job.index, outcome))
                yield event_line({"event": "end"})
            finally:
                if not future.done():  # the bot closed the request: stop at the next denoising step
                    for job in jobs:
                        job.cancel()
                    try:
                        await asyncio.shield(future)  # the next call starts once this one has stopped
                    except BaseException:
                        pass

    async def describe(self, body: dict) -> dict:
        """/describe: {"prompts": [four]} for the picture, or {"error": text safe to show}."""
        try:
            name, image = str(body["describer"]), image_from_text(str(body["image"]))
        except Exception as exc:
            return {"error": f"a malformed /describe: {short(exc)}"}
        if name not in {spec.describer for spec in self.catalog.models.values() if spec.describer}:
            return {"error": f"no model of this cluster's catalog has the describer {name!r}"}
        async with self._busy:  # one thing on the device at a time
            try:
                return {"prompts": await asyncio.to_thread(self.describers.describe, name, image)}
            except DescriberError as exc:
                return {"error": str(exc)}
            except Exception as exc:
                log.exception("describer %s failed", name)
                return {"error": f"the describer failed ({short(exc)})"}

    def __del__(self) -> None:
        for task in getattr(self, "_tasks", ()):
            task.cancel()


@serve.deployment(name="Ingress", num_replicas=1, max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0})
class Ingress:
    """HTTP in front of the Engine replicas: the call stream, and the control endpoints."""

    def __init__(self, engine, max_models: int = 3, load_timeout: float = LOAD_TIMEOUT) -> None:
        self.engine = engine
        self.max_models = max_models
        self.load_timeout = load_timeout
        self.registry = registry()

    async def __call__(self, request: Request):
        parts = [part for part in request.url.path.split("/") if part]
        action = "/".join(parts[-2:]) if len(parts) >= 2 and parts[-2] == "control" else parts[-1] if parts else ""
        try:
            if action == "call" and request.method == "POST":
                return await self._call(request)
            if action == "describe" and request.method == "POST":
                answer = await self.engine.describe.remote(await request.json())
                return JSONResponse(answer, status_code=422 if "error" in answer else 200)
            if action == "control/status":
                return JSONResponse(await self._status())
            if action in ("control/load", "control/unload") and request.method == "POST":
                name = str((await request.json())["name"])
                return await (self._load(name) if action == "control/load" else self._unload(name))
        except (KeyError, ValueError, TypeError) as exc:
            return JSONResponse({"error": f"a malformed request: {short(exc)}"}, status_code=400)
        return JSONResponse({"error": f"no such endpoint: {request.method} {request.url.path}"}, status_code=404)

    async def _call(self, request: Request):
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("jobs"), list) or not body["jobs"]:
            raise ValueError("the body needs a list of jobs")
        model = request.headers.get(MODEL_HEADER) or str(body["jobs"][0].get("model", ""))
        stream = self.engine.options(stream=True, multiplexed_model_id=model).run.remote(body)

        async def lines():
            finished = False
            try:
                async for line in stream:
                    yield line
                finished = True
            except Exception as exc:  # the replica died (ActorDiedError...) or could not be reached
                log.warning("a call on model %s lost its replica: %s", model, exc)
                yield event_line({"event": "lost", "message": short(exc)})
            finally:
                if not finished:
                    stream.cancel()  # the bot went away: the replica stops at its next step

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def _status(self) -> dict:
        replicas = await self.registry.replicas.remote()
        return {"replicas": sorted(replicas, key=lambda r: r["replica"]), "enabled": await self.registry.enabled.remote(),
                "max_models": self.max_models}

    async def _load(self, name: str) -> JSONResponse:
        enabled = await self.registry.enabled.remote()
        if name not in enabled and len(enabled) >= self.max_models:
            return JSONResponse({"error": f"each replica holds at most {self.max_models} models "
                                          f"({', '.join(enabled)} are enabled): unload one first"}, status_code=409)
        await self.registry.enable.remote(name)
        deadline = time.monotonic() + self.load_timeout
        while time.monotonic() < deadline:
            replicas = await self.registry.replicas.remote()
            failed = [replica for replica in replicas if name in replica["failed"]]
            if failed:
                if name not in enabled:
                    await self.registry.disable.remote(name)
                return JSONResponse({"error": f"{failed[0]['device']}: {failed[0]['failed'][name]}"}, status_code=422)
            holding = [(replica, model) for replica in replicas for model in replica["models"] if model["name"] == name]
            if replicas and len(holding) == len(replicas):
                return JSONResponse({"loaded": [{"name": name, "device": replica["device"],
                                                 "weight_bytes": model["weight_bytes"], "seconds": model["seconds"]}
                                                for replica, model in holding]})
            await asyncio.sleep(HEARTBEAT / 2)
        return JSONResponse({"error": f"the replicas did not load {name} within {self.load_timeout:g} s"},
                            status_code=504)

    async def _unload(self, name: str) -> JSONResponse:
        def holders(replicas):
            return [replica["device"] for replica in replicas if any(m["name"] == name for m in replica["models"])]

        was_on = holders(await self.registry.replicas.remote())
        await self.registry.disable.remote(name)
        deadline = time.monotonic() + self.load_timeout
        while holders(await self.registry.replicas.remote()) and time.monotonic() < deadline:
            await asyncio.sleep(HEARTBEAT / 2)
        return JSONResponse({"freed": was_on})


def application(models_dir: str = "models", device: str = "auto", torch_threads: int | None = None,
                max_models: int = 3, device_options: dict | None = None, load_timeout: float = LOAD_TIMEOUT,
                engine_options: dict | None = None):
    """The bound application. The Engine's deployment options (replicas, GPUs) come from `engine_options`
    (`deploy`) or the config file (`serve run`)."""
    engine = Engine.options(**(engine_options or {})).bind(
        models_dir=str(models_dir), device=device, torch_threads=torch_threads, max_models=max_models,
        device_options=device_options)
    return Ingress.bind(engine, max_models=max_models, load_timeout=load_timeout)


def build(args: dict):
    """`serve run deploy/serve.yaml` (import_path: bot.serve.app:build): the config's `args` are
    application()'s keyword arguments."""
    return application(**args)


def deploy(models_dir: Path | str, *, host: str = "127.0.0.1", port: int = 8000, replicas: int | None = None,
           min_replicas: int = 1, max_replicas: int = 1, num_gpus: float = 0.0, num_cpus: float = 1.0,
           device: str = "auto", torch_threads: int | None = None, max_models: int = 3,
           device_options: dict | None = None, route_prefix: str = ROUTE_PREFIX, name: str = APP_NAME) -> str:
    """Deploy on the cluster `ray.init` connected to; returns the RAY_SERVE_URL. `replicas`: a fixed number;
    otherwise autoscaling between min_replicas and max_replicas on ongoing requests (one a replica)."""
    if min_replicas < 1:
        raise ValueError("min_replicas must be at least 1: a cold replica would outlast Discord's patience")
    if torch_threads is None and not num_gpus:
        torch_threads = max(1, int(num_cpus))
    scaling = {"num_replicas": replicas} if replicas else {"autoscaling_config": {
        "min_replicas": min_replicas, "max_replicas": max(min_replicas, max_replicas),
        "target_ongoing_requests": 1, "upscale_delay_s": 10, "downscale_delay_s": 300}}
    app = application(models_dir, device=device, torch_threads=torch_threads, max_models=max_models,
                      device_options=device_options,
                      engine_options={"ray_actor_options": {"num_gpus": num_gpus, "num_cpus": num_cpus}, **scaling})
    serve.start(http_options={"host": host, "port": port})
    serve.run(app, name=name, route_prefix=route_prefix)
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}{route_prefix}"
