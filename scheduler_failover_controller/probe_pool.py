"""Runs each node's probe in a thread of its own, at most one per node, and never waits past a deadline.

A probe that misses its deadline is abandoned, not waited for: its thread (a daemon thread, which
never holds up the process's exit) ends whenever the probe does, and until then the node's next
probes report it still busy instead of starting another thread. So a node whose probe hangs costs
one thread, and the other nodes' probes never queue behind it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    """One node's call: its value, or what it raised, or why there is neither yet."""

    value: T | None = None
    error: BaseException | None = None
    #: seconds the call has been running when it is not done ("busy" or timed out), else None
    running_for: float | None = None
    #: the call was not started: the previous one of this node is still running
    busy: bool = False


@dataclass
class _Slot:
    started: float
    done: threading.Event = field(default_factory=threading.Event)
    value: object = None
    error: BaseException | None = None


class ProbePool:
    """One thread per node at a time; :meth:`run_all` returns within its timeout whatever the calls do."""

    def __init__(self, name: str = "probe", monotonic: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.monotonic = monotonic
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()

    def running(self) -> int:
        """How many calls are still running (abandoned ones included)."""
        with self._lock:
            return sum(not slot.done.is_set() for slot in self._slots.values())

    def _start(self, key: str, call: Callable[[], T]) -> _Slot | None:
        """Start ``call`` for ``key``, unless its previous call still runs (then None)."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None and not slot.done.is_set():
                return None
            slot = self._slots[key] = _Slot(self.monotonic())

        def run() -> None:
            try:
                slot.value = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, never lost
                slot.error = exc
            finally:
                slot.done.set()

        threading.Thread(target=run, name=f"{self.name}-{key}", daemon=True).start()
        return slot

    def run_all(self, calls: Mapping[str, Callable[[], T]], timeout: float) -> dict[str, Outcome[T]]:
        """Run every call at once and wait for them until ``timeout`` seconds pass."""
        slots = {key: self._start(key, call) for key, call in calls.items()}
        deadline = self.monotonic() + timeout
        out: dict[str, Outcome[T]] = {}
        for key, slot in slots.items():
            if slot is None:
                with self._lock:
                    since = self._slots[key].started
                out[key] = Outcome(running_for=self.monotonic() - since, busy=True)
                continue
            left = deadline - self.monotonic()
            if left > 0:
                slot.done.wait(left)
            if slot.done.is_set():
                out[key] = Outcome(value=slot.value, error=slot.error)  # type: ignore[arg-type]
            else:
                out[key] = Outcome(running_for=self.monotonic() - slot.started)
        return out
