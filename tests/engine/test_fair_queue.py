"""FairQueue: owners take turns, FIFO within an owner, relax only when no fast ticket waits."""

from dataclasses import dataclass, field
from itertools import count

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.engine.queue import FairQueue

_ids = count()


@dataclass(eq=False)
class T:
    owner: str
    lane: str = "fast"
    id: int = field(default_factory=lambda: next(_ids))

    def __repr__(self) -> str:
        return f"{self.owner}{self.id}{'r' if self.lane == 'relax' else ''}"


def drain(queue: FairQueue) -> list:
    taken = []
    while queue:
        ticket = queue.popleft()
        queue.done(ticket)
        taken.append(ticket)
    return taken


def test_a_second_owner_waits_for_at_most_one_ticket_of_the_first():
    queue = FairQueue()
    a = [T("a") for _ in range(10)]
    for ticket in a:
        queue.append(ticket)
    first = queue.popleft()  # a worker took a's first ticket before b arrived
    b = T("b")
    queue.append(b)
    assert queue.index(b) == 0
    assert queue.popleft() is b
    queue.done(first)
    assert drain(queue) == a[1:]  # and a's tickets keep their order


def test_owners_take_turns_and_a_latecomer_is_not_starved():
    queue = FairQueue()
    a = [T("a") for _ in range(3)]
    b = [T("b") for _ in range(3)]
    for ticket in a + b:
        queue.append(ticket)
    assert drain(queue) == [a[0], b[0], a[1], b[1], a[2], b[2]]
    # b keeps one ticket waiting at a time; a still gets every other turn.
    queue.append(T("a")), queue.append(T("a"))
    order = []
    for _ in range(4):
        queue.append(T("b"))
        ticket = queue.popleft()
        queue.done(ticket)
        order.append(ticket.owner)
    assert order[:4].count("a") == 2


def test_relax_runs_only_when_no_fast_ticket_waits():
    queue = FairQueue()
    relaxed = T("a", "relax")
    queue.append(relaxed)
    fast = [T("b"), T("c")]
    for ticket in fast:
        queue.append(ticket)
    assert queue.index(relaxed) == 2
    assert [queue.popleft(), queue.popleft()] == fast
    assert queue.popleft() is relaxed


def test_an_owner_at_the_running_limit_is_skipped_until_one_finishes():
    queue = FairQueue(max_running_per_owner=1)
    a1, a2 = T("a"), T("a")
    queue.append(a1), queue.append(a2)
    assert queue.popleft() is a1
    assert not queue and len(queue) == 1  # a2 waits, but no worker may take it yet
    queue.done(a1)
    assert queue and queue.popleft() is a2


def test_removed_tickets_leave_the_line():
    queue = FairQueue()
    a1, a2, b1 = T("a"), T("a"), T("b")
    for ticket in (a1, a2, b1):
        queue.append(ticket)
    queue.remove(a1)
    assert list(queue) == [a2, b1] and len(queue) == 2
    with pytest.raises(ValueError):
        queue.index(a1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from(["fast", "relax"]), st.booleans()),
                max_size=40))
def test_places_in_line_are_the_order_tickets_are_served(script):
    """Whatever arrives and leaves in between, index() predicts exactly what popleft() does next."""
    queue = FairQueue()
    for owner, lane, pop_now in script:
        queue.append(T(owner, lane))
        if pop_now and queue:
            predicted = list(queue)
            assert [queue.index(t) for t in predicted] == list(range(len(predicted)))
            ticket = queue.popleft()
            queue.done(ticket)
            assert ticket is predicted[0]
    predicted = list(queue)
    assert drain(queue) == predicted
    # Fast before relax, and FIFO within each owner and lane.
    lanes = [t.lane for t in predicted]
    assert lanes == sorted(lanes, key=["fast", "relax"].index)
    for owner in "abcd":
        for lane in ("fast", "relax"):
            mine = [t.id for t in predicted if t.owner == owner and t.lane == lane]
            assert mine == sorted(mine)
