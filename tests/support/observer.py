"""An observer that samples the stand-in (or real) schedulers every ~50 ms and keeps the worst it saw."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from scheduler_failover_controller.matching import find_schedulers


@dataclass(frozen=True, order=True)
class Seen:
    """One stand-in scheduler as the observer saw it."""

    node: str
    pid: int
    stray: bool = False


@dataclass
class Observer:
    """Samples the schedulers that ``match`` names every ~50 ms, from the root namespace.

    The lab's and the process tests' stand-ins name their node (``--node N``); a real Airflow
    scheduler does not (``named=False``: its node is ""). Strays a test planted itself
    (``--stray``) are tracked apart and never count as "two schedulers": the scenarios check they
    are killed, and that the real one was never doubled.
    """

    match: str
    interval: float = 0.05
    named: bool = True  # stand-ins name their node (--node N); real schedulers do not
    samples: int = 0
    started: float = 0.0
    stopped: float = 0.0
    max_seen: int = 0
    seconds_two_or_more: float = 0.0
    seconds_none: float = 0.0  # after the first scheduler appeared
    history: list[tuple[float, tuple[Seen, ...], tuple[Seen, ...]]] = field(default_factory=list)
    doubled: list[tuple[float, tuple[Seen, ...]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> list[Seen]:
        found = []
        for proc in find_schedulers(self.match):
            with contextlib.suppress(psutil.Error):
                argv = proc.cmdline()
                if not argv or (self.named and "--node" not in argv[:-1]):
                    continue  # exiting: a process being killed reads as an empty command line for a moment
                node = argv[argv.index("--node") + 1] if "--node" in argv[:-1] else ""
                found.append(Seen(node, proc.pid, "--stray" in argv))
        return found

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                seen = self.sample()
            except Exception as exc:  # noqa: BLE001 - keep sampling; a lost sample is recorded
                print(f"observer: sample failed: {exc}", file=sys.stderr)
                self._stop.wait(self.interval)
                continue
            now = time.monotonic()
            dt, last = now - last, now
            real = tuple(sorted(s for s in seen if not s.stray))
            strays = tuple(sorted(s for s in seen if s.stray))
            self.samples += 1
            self.max_seen = max(self.max_seen, len(real))
            if len(real) >= 2:
                self.seconds_two_or_more += dt
                self.doubled.append((now, real))
            if not real and any(h[1] for h in self.history):
                self.seconds_none += dt
            if not self.history or self.history[-1][1:] != (real, strays):
                self.history.append((now, real, strays))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))  # a fixed period

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="lab-observer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if not self._stop.is_set():
            self.stopped = time.monotonic()
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def mean_interval(self) -> float:
        """Mean seconds between two samples."""
        end = self.stopped or time.monotonic()
        return (end - self.started) / self.samples if self.samples else float("inf")

    def current(self) -> tuple[Seen, ...]:
        return self.history[-1][1] if self.history else ()

    def pids(self) -> tuple[int, ...]:
        """The pids of the real schedulers running now."""
        return tuple(s.pid for s in self.current())

    def strays(self) -> tuple[Seen, ...]:
        return self.history[-1][2] if self.history else ()

    def one(self) -> Seen | None:
        now = self.current()
        return now[0] if len(now) == 1 else None

    def first_after(self, since: float, predicate: Callable[[tuple[Seen, ...]], bool]) -> float | None:
        """Monotonic time of the first change after ``since`` to real schedulers satisfying ``predicate``."""
        for t, real, _ in self.history:
            if t >= since and predicate(real):
                return t
        return None

    def describe(self) -> str:
        t0 = self.history[0][0] if self.history else 0.0
        return "; ".join(
            f"+{t - t0:.2f}s {[f'{s.node}:{s.pid}' for s in real]}" + (f" strays {[s.node for s in st]}" if st else "")
            for t, real, st in self.history
        )
