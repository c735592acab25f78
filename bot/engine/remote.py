"""RemotePool: the WorkerPool's interface, with the pictures made by a Ray Serve application (bot/serve/).

The bot keeps the line: the same FairQueue and the same batching rule (bot/engine/tickets.py) decide what
runs next and which jobs share a pipeline call; then each call is one HTTP request (bot/engine/wire.py) that
Ray Serve routes to a replica holding its model. The bot sends no more calls than the replicas can take
(one each, and one more, which waits in Serve's queue so that its autoscaler sees the demand), so the order
is the fair queue's. Only aiohttp here: no Ray in the bot's process, no version lock with the cluster.

A call whose replica dies (the stream breaks, or ends without its "end" line) is sent once more, for the jobs
that have no outcome yet; if that fails too they fail with an EngineError (the Runner refunds them). A job's
result is handed over once, whichever attempt made it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Iterable

import aiohttp
from PIL import Image

from bot.engine.batching import BatchTuner
from bot.engine.catalog import Catalog
from bot.engine.requests import Cancelled, EngineError
from bot.engine.tickets import LoadedState, Ticket, TicketLine, measures, record_call, shutting_down
from bot.engine.wire import MODEL_HEADER, decode_event, decode_result, encode_request, image_to_text

log = logging.getLogger(__name__)

WAITING_AT_SERVE = 1  # calls beyond one per replica: Serve's autoscaler counts them as demand
LOST = "the GPU server running it stopped twice"


class Lost(Exception):
    """The call's replica (or the way to it) went away before the call ended."""


class RemotePool(TicketLine):
    def __init__(self, catalog: Catalog, url: str, *, max_running_per_owner: int | None = None,
                 max_batch_jobs: int = 4, adaptive_batching: bool = True, preview_interval: float = 0.0,
                 status_interval: float = 2.0, start_timeout: float = 120.0,
                 session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(catalog, max_running_per_owner, max_batch_jobs)
        self.url = url.rstrip("/")
        self.preview_interval = preview_interval
        self.status_interval = status_interval
        self.start_timeout = start_timeout
        # One tuner for the cluster: replicas of one deployment have the same kind of GPU.
        self._tuner = BatchTuner(max_batch_jobs, adaptive=adaptive_batching)
        self._session = session
        self._own_session = session is None
        self._status: dict = {"replicas": [], "enabled": []}
        self._calls: dict[int, asyncio.Task] = {}  # id(batch) -> the task streaming its call
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self.retries = 0  # calls sent again after their replica was lost

    # ---- the WorkerPool interface ----

    @property
    def devices(self) -> tuple[str, ...]:
        """The replicas, as `<replica>/<device>`, from the latest status."""
        return tuple(replica["device"] for replica in self._status["replicas"])

    @property
    def replicas(self) -> list[dict]:
        """The latest status of each replica: device, pid, node, models, busy."""
        return list(self._status["replicas"])

    async def start(self, preload: Iterable[str] = ()) -> None:
        """Wait for at least one replica (up to `start_timeout` seconds), then enable the `preload` models on
        every replica. Raises EngineError if the application cannot be reached or a model cannot load."""
        if self._wake is not None:
            raise RuntimeError("RemotePool.start() was already called")
        preload = list(preload)
        for name in preload:
            self.catalog.get(name)
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        try:
            await self._wait_for_replicas()
            for name in preload:
                await self.load(name)
        except BaseException:
            await self.close()
            raise
        self._tasks = [asyncio.create_task(self._dispatch(), name="ray-dispatch"),
                       asyncio.create_task(self._poll(), name="ray-status")]

    async def load(self, name: str) -> list[LoadedState]:
        """Enable a model in the application's multiplexed set: every replica loads it between two calls
        (and every replica started later). CatalogError for an unknown name, EngineError if it cannot load."""
        self.catalog.get(name)
        answer = await self._post("control/load", {"name": name})
        await self.refresh()
        return [LoadedState(s["name"], s["device"], s["weight_bytes"], s["seconds"]) for s in answer["loaded"]]

    async def unload(self, name: str) -> list[str]:
        """Take a model out of the enabled set; the replicas holding it free it. Returns where it was."""
        self.catalog.get(name)
        answer = await self._post("control/unload", {"name": name})
        await self.refresh()
        return list(answer["freed"])

    async def describe(self, describer: str, image: Image.Image) -> list[str]:
        """/describe's four prompts, from a replica (where the describer's weights and the GPU are). It makes no
        pictures, so it takes no place in the line; EngineError (safe to show) if it cannot be done."""
        picture = await asyncio.to_thread(image_to_text, image)  # PNG encoding is CPU work: off the loop
        return [str(prompt) for prompt in (await self._post("describe", {"describer": describer,
                                                                          "image": picture}))["prompts"]]

    def loaded(self) -> list[LoadedState]:
        return [LoadedState(model["name"], replica["device"], model["weight_bytes"], model["seconds"])
                for replica in self._status["replicas"] for model in replica["models"]]

    def batching(self) -> dict:
        """What the tuner measured: {"ray": {shape: {jobs per call: images/s}}}."""
        with self._lock:
            return {"ray": {shape: self._tuner.images_per_second(shape) for shape in self._tuner._seconds}}

    async def refresh(self) -> dict:
        """Read the application's status now (the replicas, their devices and models)."""
        async with self._session.get(f"{self.url}/control/status") as response:
            if response.status != 200:
                raise EngineError(f"the Ray Serve application answered {response.status} at {self.url}")
            self._status = await response.json()
        self._arrived()  # the capacity may have changed
        return self._status

    async def close(self) -> None:
        """Cancel waiting tasks, let running calls end (their jobs were cancelled by their owners' tasks),
        and close the HTTP session."""
        waiting = self._drop_waiting()
        shutting_down(waiting)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        calls = list(self._calls.values())
        if calls:
            _, pending = await asyncio.wait(calls, timeout=30)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._own_session and self._session is not None:
            await self._session.close()

    # ---- TicketLine hooks ----

    def _arrived(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _stop_call(self, batch: list[Ticket]) -> None:
        """Every job of the call asked to stop: close its request (the replica stops at its next step)."""
        task = self._calls.get(id(batch))
        if task is not None and all(ticket.cancel_requested for ticket in batch):
            task.cancel()

    # ---- dispatching ----

    @property
    def capacity(self) -> int:
        return len(self._status["replicas"]) + WAITING_AT_SERVE

    async def _dispatch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while len(self._calls) < self.capacity:
                with self._lock:
                    if self._closing or not self._queue:
                        break
                    batch = self._take_batch(self._tuner)
                task = asyncio.create_task(self._call(batch), name=f"ray-call-{batch[0].request.model}")
                self._calls[id(batch)] = task

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.status_interval)
            try:
                await self.refresh()
            except (aiohttp.ClientError, asyncio.TimeoutError, EngineError, ValueError) as error:
                log.warning("the Ray Serve application's status could not be read: %s", error)

    async def _call(self, batch: list[Ticket]) -> None:
        try:
            for attempt in (1, 2):
                pending = [ticket for ticket in batch if not ticket.done and not ticket.cancel_requested]
                if not pending:
                    return
                try:
                    await self._stream(pending)
                    return
                except Lost as lost:
                    if attempt == 1:
                        self.retries += 1
                        log.warning("a call on %s lost its replica (%s); sending it again", pending[0].request.model,
                                    lost)
                        continue
                    log.error("a call on %s lost its replica twice (%s); its jobs fail", pending[0].request.model,
                              lost)
                    for ticket in pending:
                        ticket.finish(error=EngineError(LOST))
        except asyncio.CancelledError:
            for ticket in batch:  # every job asked to stop (or the pool is closing)
                ticket.finish(error=Cancelled("cancelled"))
        except Exception as error:  # a bug here must not leave tickets hanging
            log.exception("a call failed")
            for ticket in batch:
                ticket.finish(error=EngineError(f"the image engine failed ({type(error).__name__})"))
        finally:
            for ticket in batch:
                ticket.finish(error=EngineError("the image engine gave no answer"))  # no-op if it has one
            self._calls.pop(id(batch), None)
            self._call_ended(batch)
            self._arrived()

    async def _stream(self, jobs: list[Ticket]) -> None:
        """One attempt: post the call, hand each job its events and its outcome as they arrive."""
        body = {"jobs": [encode_request(ticket.request) for ticket in jobs], "preview_interval": self.preview_interval}
        headers = {MODEL_HEADER: jobs[0].request.model}
        results = []
        try:
            async with self._session.post(f"{self.url}/call", json=body, headers=headers) as response:
                if response.status >= 500:
                    raise Lost(f"HTTP {response.status}: {(await response.text())[:200]}")
                if response.status != 200:
                    raise EngineError(f"the Ray Serve application refused the call (HTTP {response.status})")
                async for line in _lines(response.content):
                    event = json.loads(line)
                    kind = event["event"]
                    if kind == "end":
                        if measures(jobs, results):
                            with self._lock:
                                record_call(self._tuner, jobs[0].request, results)
                        return
                    if kind == "lost":
                        raise Lost(event.get("message", "the replica was lost"))
                    job = jobs[event["job"]] if event.get("job") is not None else None
                    if kind == "started":
                        for ticket in jobs:
                            ticket.emit(decode_event(event))
                    elif kind == "result":
                        result = await asyncio.to_thread(decode_result, event["result"])  # PNG decoding
                        results.append(result)
                        job.finish(result)
                    elif kind == "error":
                        error_class = Cancelled if event.get("cancelled") else EngineError
                        for ticket in ([job] if job is not None else jobs):
                            ticket.finish(error=error_class(event["message"]))
                    elif job is not None and not job.cancel_requested:
                        decoded = (await asyncio.to_thread(decode_event, event) if kind == "preview"
                                   else decode_event(event))
                        job.emit(decoded)
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, json.JSONDecodeError) as error:
            raise Lost(f"{type(error).__name__}: {error}") from None
        except EngineError as error:
            for ticket in jobs:
                ticket.finish(error=error)
            return
        raise Lost("the stream ended before the call did")

    async def _post(self, path: str, body: dict) -> dict:
        try:
            async with self._session.post(f"{self.url}/{path}", json=body) as response:
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
            raise EngineError(f"the Ray Serve application could not be reached ({type(error).__name__})") from None
        if response.status != 200:
            raise EngineError(answer.get("error", f"HTTP {response.status}"))
        return answer

    async def _wait_for_replicas(self) -> None:
        deadline = self._loop.time() + self.start_timeout
        problem = "no replica is running"
        while True:
            try:
                if (await self.refresh())["replicas"]:
                    return
            except (aiohttp.ClientError, asyncio.TimeoutError, EngineError, ValueError) as error:
                problem = f"{type(error).__name__}: {error}"
            if self._loop.time() > deadline:
                raise EngineError(f"the Ray Serve application at {self.url} is not ready after "
                                  f"{self.start_timeout:g} s ({problem}); start it with `dreamgrid serve`")
            await asyncio.sleep(0.5)


async def _lines(content: aiohttp.StreamReader):
    """The stream's lines, however long (a preview or a result is one long line)."""
    parts: list[bytes] = []
    async for chunk in content.iter_any():
        while (end := chunk.find(b"\n")) >= 0:
            line = b"".join((*parts, chunk[:end]))
            parts, chunk = [], chunk[end + 1:]
            if line.strip():
                yield line
        if chunk:
            parts.append(chunk)
    if b"".join(parts).strip():
        yield b"".join(parts)
