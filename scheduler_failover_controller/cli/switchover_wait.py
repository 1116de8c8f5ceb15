"""``switchover --wait``: wait for the outcome of one switchover request, found by the request's id.

The active controller records the outcome as an event that carries the request's id, then clears
the request; a controller of an earlier release cleared it first, so the outcome is looked for a
little longer once the request is gone. A controller of a release without ids records its outcome
without one: then the id-less outcome after this request's own event is taken, as such releases'
CLIs did.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config.services import SCHEDULER
from ..metastore.base import Event, Metastore
from ..metastore.events import SWITCHOVER_OUTCOMES, EventKind

OUTCOME_WINDOW = 100  # newest events searched for the outcome: it follows its request within a few


@dataclass(frozen=True)
class Verdict:
    """What the CLI says (``message``) and whether the switchover to its target is done (``ok``)."""

    ok: bool
    message: str


class NotCarriedOut(Exception):
    """The request is still pending when the wait ended (it stays pending)."""


def await_outcome(
    store: Metastore,
    request_id: str,
    target: str,
    wait: float,
    interval: float,
    settle: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    service: str = SCHEDULER,
) -> Verdict:
    """Wait up to ``wait`` seconds for the request ``request_id`` (to ``target``) to be answered.

    ``store`` is the view of ``service`` (:meth:`Metastore.for_service`); only its events count.

    Polls every ``interval`` seconds. Once the request is gone, its outcome event may still be on
    its way (it is written after the clear): it is looked for during ``settle`` more seconds.
    Raises NotCarriedOut if the request is still pending at the end.
    """
    deadline = clock() + wait
    gone_at: float | None = None
    while True:
        state = store.read_state()
        if state.switchover is not None and state.switchover_id == request_id:
            if clock() > deadline:
                raise NotCarriedOut(target)
        else:
            events = [e for e in store.events(OUTCOME_WINDOW) if e.service == service]
            ours = [e for e in events if e.request_id == request_id and e.kind in SWITCHOVER_OUTCOMES]
            if ours:
                return _judge(ours[-1], target, state.placement.node)
            if state.switchover is not None:  # another request took the place of ours before it was carried out
                return Verdict(False, _replaced(target, f"to {state.switchover[0]}"))
            gone_at = clock() if gone_at is None else gone_at
            if clock() - gone_at >= settle:
                return _without_id(events, request_id, target, store.read_state().placement.node)
        sleep(interval)


def _judge(outcome: Event, target: str, placed: str | None) -> Verdict:
    """An outcome's verdict: done (by its kind alone, never its words) and the scheduler placed on ``target``."""
    return Verdict(outcome.kind == EventKind.SWITCHOVER_DONE and placed == target, outcome.message)


def _replaced(target: str, by: str) -> str:
    return f"the switchover request to {target} was replaced by another one ({by}) before it was carried out"


def _without_id(events: list[Event], request_id: str, target: str, placed: str | None) -> Verdict:
    """No outcome names the request: what the history and the placement still tell."""
    asked = [i for i, e in enumerate(events) if e.kind == EventKind.SWITCHOVER and e.request_id == request_id]
    after = events[asked[-1] + 1 :] if asked else []
    later = next((i for i, e in enumerate(after) if e.kind == EventKind.SWITCHOVER), len(after))
    # A controller of a release without ids answers without one, before any later request's event.
    outcomes = [e for e in after[:later] if e.kind in SWITCHOVER_OUTCOMES and not e.request_id]
    if outcomes:
        return _judge(outcomes[-1], target, placed)
    if later < len(after):
        return Verdict(False, _replaced(target, after[later].message))
    return Verdict(placed == target, "no outcome recorded")
