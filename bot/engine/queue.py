"""FairQueue: the order in which waiting tickets reach the workers.

Two lanes: `fast` first; `relax` only while no fast ticket waits that a worker could take. Within a lane,
owners take turns: the next ticket comes from the owner served least recently (never-served owners first,
in order of arrival), and each owner's tickets leave in the order they came. So one owner's ten tickets
delay another owner's first ticket by at most one of theirs, and an owner who keeps one ticket waiting
cannot starve the rest. An owner may have at most `max_running_per_owner` tickets running at once.

Not thread-safe on its own: the pool uses it under its lock. Tickets only need `owner` and `lane` attributes.
"""

from __future__ import annotations

import collections
import itertools
from typing import Any, Callable, Hashable, Iterator

LANES = ("fast", "relax")


class FairQueue:
    def __init__(self, max_running_per_owner: int | None = None) -> None:
        if max_running_per_owner is not None and max_running_per_owner < 1:
            raise ValueError(f"max_running_per_owner must be at least 1, got {max_running_per_owner}")
        self.max_running_per_owner = max_running_per_owner
        # lane -> owner -> that owner's waiting tickets, oldest first
        self._lanes: dict[str, dict[Hashable, collections.deque]] = {lane: {} for lane in LANES}
        self._arrival: dict[int, int] = {}  # id(ticket) -> arrival number, to break ties between owners
        self._served: dict[Hashable, int] = {}  # owner -> when it was last served (a pop counter)
        self._running: collections.Counter = collections.Counter()
        self._counter = itertools.count()
        self._pops = itertools.count()

    # --- the deque-like surface the pool uses --------------------------------------------------

    def append(self, ticket: Any) -> None:
        lane = getattr(ticket, "lane", "fast")
        if lane not in LANES:
            raise ValueError(f"lane must be one of {LANES}, got {lane!r}")
        self._lanes[lane].setdefault(ticket.owner, collections.deque()).append(ticket)
        self._arrival[id(ticket)] = next(self._counter)

    def popleft(self) -> Any:
        """The next ticket a worker should run; it counts as running for its owner until `done(ticket)`."""
        owner, lane = self._next(self._lanes, self._served, self._running)
        if owner is None:
            raise IndexError("no ticket can be taken now")
        waiting = self._lanes[lane][owner]
        ticket = waiting.popleft()
        if not waiting:
            del self._lanes[lane][owner]
        del self._arrival[id(ticket)]
        self._served[owner] = next(self._pops)
        self._running[owner] += 1
        self._forget_idle_owners()
        return ticket

    def popbatch(self, key_of: Callable[[Any], Hashable | None],
                 jobs_for: Callable[[Hashable], int]) -> list[Any]:
        """The next ticket (as popleft), plus waiting tickets of the same lane with the same key, up to
        `jobs_for(key)` in all, taken by the same rule: owners take turns, each owner's tickets in order
        (only an owner's oldest waiting ticket can join), owners at the running limit skipped. So a batch
        only ever moves tickets forward, and relax tickets never ride along with fast ones."""
        first = self.popleft()
        batch = [first]
        key = key_of(first)
        if key is None:
            return batch
        room = jobs_for(key) - 1
        lane = self._lanes[first.lane]
        while room > 0:
            best, best_rank = None, None
            for owner, waiting in lane.items():
                if self.max_running_per_owner is not None and self._running[owner] >= self.max_running_per_owner:
                    continue
                if key_of(waiting[0]) != key:
                    continue
                rank = (self._served.get(owner, -1), self._arrival[id(waiting[0])])
                if best_rank is None or rank < best_rank:
                    best, best_rank = owner, rank
            if best is None:
                break
            ticket = lane[best].popleft()
            if not lane[best]:
                del lane[best]
            del self._arrival[id(ticket)]
            self._served[best] = next(self._pops)
            self._running[best] += 1
            batch.append(ticket)
            room -= 1
        return batch

    def done(self, ticket: Any) -> None:
        """A ticket taken with popleft() stopped running: its owner may run another."""
        self._running[ticket.owner] -= 1
        if self._running[ticket.owner] <= 0:
            del self._running[ticket.owner]

    def remove(self, ticket: Any) -> None:
        waiting = self._lanes[ticket.lane][ticket.owner]
        waiting.remove(ticket)
        if not waiting:
            del self._lanes[ticket.lane][ticket.owner]
        del self._arrival[id(ticket)]

    def index(self, ticket: Any) -> int:
        """0-based place in the order the waiting tickets will be served if nothing else arrives."""
        for place, queued in enumerate(self._order()):
            if queued is ticket:
                return place
        raise ValueError("the ticket is not waiting")

    def clear(self) -> None:
        for lane in self._lanes.values():
            lane.clear()
        self._arrival.clear()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._order())

    def __len__(self) -> int:
        return len(self._arrival)

    def waiting(self) -> dict[str, int]:
        """How many tickets wait in each lane (the operators' queue depth)."""
        return {lane: sum(map(len, owners.values())) for lane, owners in self._lanes.items()}

    def __bool__(self) -> bool:
        """True when a worker could take a ticket now (one waits whose owner is under the running limit)."""
        return self._next(self._lanes, self._served, self._running)[0] is not None

    # --- the rule ---------------------------------------------------------------------------------

    def _next(self, lanes, served, running) -> tuple[Hashable | None, str | None]:
        for lane in LANES:
            best, best_key = None, None
            for owner, waiting in lanes[lane].items():
                if self.max_running_per_owner is not None and running.get(owner, 0) >= self.max_running_per_owner:
                    continue
                key = (served.get(owner, -1), self._arrival[id(waiting[0])])
                if best_key is None or key < best_key:
                    best, best_key = owner, key
            if best is not None:
                return best, lane
        return None, None

    def _order(self) -> list[Any]:
        """Every waiting ticket in serving order: the same rule, run on a copy, ignoring running limits
        (running tickets finish; places in line are what a person wants to see)."""
        lanes = {lane: {owner: collections.deque(waiting) for owner, waiting in owners.items()}
                 for lane, owners in self._lanes.items()}
        served = dict(self._served)
        later = itertools.count(max(served.values(), default=0) + 1)
        order = []
        while True:
            owner, lane = self._next(lanes, served, {})
            if owner is None:
                return order
            order.append(lanes[lane][owner].popleft())
            if not lanes[lane][owner]:
                del lanes[lane][owner]
            served[owner] = next(later)

    def _forget_idle_owners(self) -> None:
        """Keep `_served` small: an owner with nothing waiting who was served before every waiting owner
        would be first in line anyway when it comes back, exactly like a new owner."""
        if len(self._served) < 256:
            return
        waiting = {owner for owners in self._lanes.values() for owner in owners}
        oldest_waiting = min((self._served[owner] for owner in waiting if owner in self._served), default=None)
        for owner, stamp in list(self._served.items()):
            if owner not in waiting and owner not in self._running and (
                    oldest_waiting is None or stamp < oldest_waiting):
                del self._served[owner]
