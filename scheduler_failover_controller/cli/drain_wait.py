"""``drain --wait``: wait until the scheduler no longer runs on the drained node.

Done at once when it is not placed there. Otherwise the active controller moves it by a controlled
switchover whose outcome event carries the drain's request id; that outcome decides. A scheduler
that left the node another way (a failover) counts once it runs on its new node.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..metastore.base import Metastore
from ..metastore.events import SWITCHOVER_OUTCOMES, EventKind
from .switchover_wait import OUTCOME_WINDOW


class NotMoved(Exception):
    """The scheduler did not leave the drained node (the message says why); the drain stays."""


def _runs_on(store: Metastore, node: str) -> bool:
    """Whether the latest look at ``node`` (the active's observation, or the node's own report) says running."""
    seen = [o.state for o in store.observations() if o.node == node]
    seen += [r.state for r in store.reports() if r.node == node]
    return "running" in seen


def await_move(
    store: Metastore,
    node: str,
    request_id: str,
    wait: float,
    interval: float,
    settle: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Wait up to ``wait`` seconds for the scheduler to leave the drained ``node``: what happened.

    A scheduler seen running elsewhere without an outcome counts after ``settle`` more seconds.
    Raises NotMoved when the move was refused or failed, the drain was lifted, or time ran out.
    """
    deadline = clock() + wait
    first = True
    moved_at: float | None = None
    while True:
        state = store.read_state()
        placed = state.placement.node if state.placement.valid else None
        if node not in state.drained:
            raise NotMoved(f"{node} was undrained before the scheduler left it")
        ours = [e for e in store.events(OUTCOME_WINDOW) if e.request_id == request_id and e.kind in SWITCHOVER_OUTCOMES]
        if ours:
            if ours[-1].kind == EventKind.SWITCHOVER_DONE and placed != node:
                return ours[-1].message
            raise NotMoved(f"drained {node}, but the scheduler was not moved: {ours[-1].message}")
        if placed != node and first:
            return f"drained {node}; the scheduler runs on {placed or 'no node'}"
        if placed is not None and placed != node and _runs_on(store, placed):
            # Moved: its outcome (written once the start is confirmed) may follow in a moment.
            moved_at = clock() if moved_at is None else moved_at
            if clock() - moved_at >= settle:
                return f"drained {node}; the scheduler runs on {placed}"
        if clock() > deadline:
            raise NotMoved(
                f"drained {node}, but the scheduler still runs there after {wait:g}s "
                "(is a controller active, and not paused?); the drain stays"
            )
        first = False
        sleep(interval)
