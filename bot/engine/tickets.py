"""What both engines share: tickets, and the line they wait in.

`TicketLine` is the bookkeeping of the in-process `WorkerPool` (bot/engine/pool.py) and of the `RemotePool`
that hands calls to Ray Serve (bot/engine/remote.py): a FairQueue (bot/engine/queue.py), places in line,
cancel, and batches taken by the same rule (`FairQueue.popbatch` with a BatchTuner, bot/engine/batching.py).
So whichever backend runs the pictures, jobs leave the line in the same order.

Tickets are touched on the event loop thread only; the line is guarded by a lock the worker threads share.
"""

from __future__ import annotations

import asyncio
import enum
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Iterable, Protocol

from bot.engine.batching import BatchTuner, batch_key
from bot.engine.catalog import Catalog, CatalogError
from bot.engine.queue import LANES, FairQueue
from bot.engine.requests import (
    Cancelled,
    EngineError,
    Event,
    GenerateRequest,
    GenerationResult,
    Request,
    UpscaleRequest,
)

if TYPE_CHECKING:
    from PIL import Image


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

    def __init__(self, pool: TicketLine, request: Request, loop: asyncio.AbstractEventLoop,
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


class EnginePool(Protocol):
    """What the service and the app use of an engine: the in-process WorkerPool (ENGINE=local) or the
    RemotePool (ENGINE=ray). Both are TicketLines, so their queues behave the same."""

    @property
    def devices(self) -> tuple[str, ...]: ...

    def queued_by_lane(self) -> dict[str, int]: ...

    def submit(self, request: Request, *, owner: object = None, lane: str = "fast") -> Ticket: ...

    async def start(self, preload: Iterable[str] = ()) -> None: ...

    async def load(self, name: str) -> list[LoadedState]: ...

    async def unload(self, name: str) -> list[str]: ...

    def loaded(self) -> list[LoadedState]: ...

    async def describe(self, describer: str, image: Image.Image) -> list[str]: ...  # /describe's four prompts

    async def close(self) -> None: ...


class TicketLine:
    """The line of a pool: submit, places in line, cancel, batches; the subclass runs what it takes."""

    def __init__(self, catalog: Catalog, max_running_per_owner: int | None = None, max_batch_jobs: int = 4):
        if max_batch_jobs < 1:
            raise ValueError(f"max_batch_jobs must be at least 1, got {max_batch_jobs}")
        self.catalog = catalog
        # How many jobs of one shape may share a pipeline call (measured by a BatchTuner; 1 = no batching).
        self.max_batch_jobs = max_batch_jobs
        self._queue = FairQueue(max_running_per_owner)
        self._lock = threading.Condition()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def queued(self) -> int:
        """Tasks waiting for a worker (running ones not included)."""
        with self._lock:
            return len(self._queue)

    def queued_by_lane(self) -> dict[str, int]:
        """Tasks waiting for a worker in each lane: {"fast": n, "relax": m}."""
        with self._lock:
            return self._queue.waiting()

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
        self._arrived()
        return ticket

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
        elif state is TicketState.RUNNING:
            self._stop_call(ticket.batch)
        if state is TicketState.QUEUED:
            self._arrived()  # the line changed
        return state is not TicketState.FINISHED

    # ---- for the subclasses ----

    def _arrived(self) -> None:
        """The line changed (a ticket came or left), on the loop thread: the worker threads were notified."""

    def _stop_call(self, batch: list[Ticket]) -> None:
        """Every ticket of a running call asked to stop (the worker threads see the flags themselves)."""

    def _family(self, request: Request):
        """The family of the request's model, for its batch key (None for an upscale or an unknown model,
        which then fails on its own)."""
        try:
            return self.catalog.get(request.model).family
        except CatalogError:
            return None

    def _take_batch(self, tuner: BatchTuner) -> list[Ticket]:
        """The next call's tickets, marked running (call with the lock held and the queue ready)."""
        batch = self._queue.popbatch(lambda t: batch_key(t.request, self._family(t.request)),
                                     lambda key: tuner.jobs_for(key.shape))
        for ticket in batch:
            ticket.state = TicketState.RUNNING
            ticket.batch = batch
        return batch

    def _call_ended(self, batch: list[Ticket]) -> None:
        """A call's tickets stopped running: their owners may run others (takes the lock)."""
        with self._lock:
            for ticket in batch:
                ticket.state = TicketState.FINISHED
                self._queue.done(ticket)
            self._lock.notify_all()  # their owners may be under the running limit again

    def _drop_waiting(self) -> list[Ticket]:
        """Closing: no new tickets; the waiting ones leave the line (finish them with `shutting_down`)."""
        with self._lock:
            self._closing = True
            waiting = list(self._queue)
            self._queue.clear()
            for ticket in waiting:
                ticket.state = TicketState.FINISHED
            self._lock.notify_all()
        return waiting


def measures(batch: list[Ticket], results: list[GenerationResult]) -> bool:
    """Whether a call's results tell how fast its pipeline call ran: it ran to its end (every job in the
    pipeline call gave a result, none asked to stop), and it was a pipeline call (an upscale is not)."""
    return (bool(results) and bool(results[0].seeds) and len(results) == results[0].batched
            and not any(ticket.cancel_requested for ticket in batch))


def record_call(tuner: BatchTuner, request: Request, results: list[GenerationResult]) -> None:
    """Tell the tuner how fast a call that `measures` ran: its results share `seconds` and `batched` (the
    jobs in the pipeline call)."""
    key = batch_key(request)
    if key is None:
        return
    first = results[0]
    tuner.record(key.shape, first.batched, sum(len(result.images) for result in results), first.seconds)


def shutting_down(tickets) -> None:
    for ticket in tickets:
        ticket.finish(error=Cancelled("the image engine is shutting down"))
