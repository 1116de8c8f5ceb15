"""``drain --wait``: wait until no service (the scheduler, and every other one) runs on the drained node.

A service not placed there is done at once. Otherwise the active controller moves it by a
controlled switchover whose outcome event, stamped with the service, carries the drain's request
id; that outcome decides. A service that left the node another way (a failover) counts once it
runs on its new node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ..config.services import SCHEDULER
from ..metastore.base import Metastore
from ..metastore.events import SWITCHOVER_OUTCOMES, EventKind
from .switchover_wait import OUTCOME_WINDOW


class NotMoved(Exception):
    """A service did not leave the drained node (the message says why); the drain stays."""


def _runs_on(store: Metastore, node: str) -> bool:
    """Whether the latest look at ``node`` (the active's observation, or the node's own report) says running."""
    seen = [o.state for o in store.observations() if o.node == node]
    seen += [r.state for r in store.reports() if r.node == node]
    return "running" in seen


def _called(service: str) -> str:
    return "the scheduler" if service == SCHEDULER else service


class _Leaving:
    """One service leaving the drained node, seen through its own metastore view."""

    def __init__(self, service: str, store: Metastore) -> None:
        self.service = service
        self.store = store
        self.first = True
        self.moved_at: float | None = None
        self.done: str | None = None  # what happened, once it has left

    def check(self, node: str, request_id: str, now: float, settle: float) -> None:
        """Look once: set ``done`` when it has left; raise NotMoved when it will not."""
        state = self.store.read_state()
        placed = state.placement.node if state.placement.valid else None
        what = _called(self.service)
        if node not in state.drained:
            raise NotMoved(f"{node} was undrained before {what} left it")
        ours = [
            e
            for e in self.store.events(OUTCOME_WINDOW)
            if e.request_id == request_id and e.kind in SWITCHOVER_OUTCOMES and e.service == self.service
        ]
        if ours:
            if ours[-1].kind == EventKind.SWITCHOVER_DONE and placed != node:
                self.done = ours[-1].message
                return
            raise NotMoved(f"drained {node}, but {what} was not moved: {ours[-1].message}")
        if placed != node and self.first:
            self.done = f"drained {node}; {what} runs on {placed or 'no node'}"
            return
        self.first = False
        if placed is not None and placed != node and _runs_on(self.store, placed):
            # Moved: its outcome (written once the start is confirmed) may follow in a moment.
            self.moved_at = now if self.moved_at is None else self.moved_at
            if now - self.moved_at >= settle:
                self.done = f"drained {node}; {what} runs on {placed}"


def await_move(
    services: Sequence[tuple[str, Metastore]],
    node: str,
    request_id: str,
    wait: float,
    interval: float,
    settle: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Wait up to ``wait`` seconds for every service (name, its store view) to leave the drained
    ``node``: what happened, one line per service.

    A service seen running elsewhere without an outcome counts after ``settle`` more seconds.
    Raises NotMoved when a move was refused or failed, the drain was lifted, or time ran out.
    """
    deadline = clock() + wait
    leaving = [_Leaving(name, store) for name, store in services]
    while True:
        for one in leaving:
            if one.done is None:
                one.check(node, request_id, clock(), settle)
        still = [one.service for one in leaving if one.done is None]
        if not still:
            return "\n".join(one.done or "" for one in leaving)
        if clock() > deadline:
            there = ", ".join(_called(s) for s in still)
            raise NotMoved(
                f"drained {node}, but {there} still {'runs' if len(still) == 1 else 'run'} there after {wait:g}s "
                "(is a controller active, and not paused?); the drain stays"
            )
        sleep(interval)
