"""The chaos soak's figures (benchmarks/soak.py): per service, from its observer, and per fault kind.

Each service the soak runs has an observer of its own (tests/support/observer.py); a
:class:`ServiceTally` turns what that observer saw during each fault's window into the service's
figures: seconds with two, seconds with none, the longest outage per fault kind, and what was seen
whenever it ran twice. :class:`SoakResult` holds every service's tally and what is the cluster's
(faults, settle times, windows that did not settle), prints the table, and gives the exit status.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

SCHEDULER = "scheduler"


class Observed(Protocol):
    """What a tally reads of an observer (tests/support/observer.py's Observer)."""

    seconds_two_or_more: float
    seconds_none: float
    stopped: float

    @property
    def history(self) -> Sequence[tuple[float, tuple[object, ...], tuple[object, ...]]]: ...

    @property
    def doubled(self) -> Sequence[tuple[float, tuple[object, ...]]]: ...

    def mean_interval(self) -> float: ...


def longest_outage(
    history: Sequence[tuple[float, tuple[object, ...], tuple[object, ...]]], start: float, end: float
) -> float:
    """The longest span without the service that overlaps [start, end] (from the observer's changes)."""
    longest, empty_since = 0.0, None
    for t, real, _ in history:
        if t > end and empty_since is None:
            break
        if not real and empty_since is None:
            empty_since = t
        elif real and empty_since is not None:
            if t >= start:
                longest = max(longest, t - max(empty_since, start))
            empty_since = None
            if t > end:
                break
    if empty_since is not None:
        longest = max(longest, end - max(empty_since, start))
    return longest


@dataclass
class KindFigures:
    """One service's figures over every fault of one kind."""

    longest_outage: float = 0.0
    two: float = 0.0
    none: float = 0.0


@dataclass
class ServiceTally:
    """One service's figures over a soak, from its own observer."""

    name: str
    two: float = 0.0
    none: float = 0.0
    observed: float = 0.0  # seconds from its first sighting to the observer's stop
    pace: float = 0.0  # mean seconds between two samples
    kinds: dict[str, KindFigures] = field(default_factory=dict)
    doubled: list[str] = field(default_factory=list)  # what was seen, per fault window that doubled it

    @property
    def availability(self) -> float:
        return 1.0 - self.none / self.observed if self.observed else 0.0

    @staticmethod
    def mark(obs: Observed) -> tuple[float, float]:
        """The observer's running totals (two, none) as a fault begins."""
        return obs.seconds_two_or_more, obs.seconds_none

    def record(
        self, kind: str, obs: Observed, before: tuple[float, float], start: float, end: float, at: str = ""
    ) -> float:
        """Add one fault's window [start, end] of kind ``kind``; returns the seconds it ran twice."""
        figures = self.kinds.setdefault(kind, KindFigures())
        figures.longest_outage = max(figures.longest_outage, longest_outage(obs.history, start, end))
        two = obs.seconds_two_or_more - before[0]
        figures.two += two
        figures.none += obs.seconds_none - before[1]
        if two > 0:
            seen = [
                f"+{t - start:.2f}s {[getattr(s, 'node', s) for s in real]}" for t, real in obs.doubled if t >= start
            ]
            self.doubled.append(f"{at}: {seen[:5]}")
        return two

    def finish(self, obs: Observed) -> None:
        """The totals, once the observer has stopped."""
        self.two, self.none, self.pace = obs.seconds_two_or_more, obs.seconds_none, obs.mean_interval()
        first = next((t for t, real, _ in obs.history if real), None)
        self.observed = (obs.stopped - first) if first is not None else 0.0


@dataclass
class KindStats:
    """The cluster's figures over every fault of one kind."""

    count: int = 0
    longest_settle: float = 0.0
    unsettled: int = 0


@dataclass
class SoakResult:
    """A soak's figures: the cluster's, and each service's (the scheduler first)."""

    seed: int
    metastore: str
    node_control: str = "self"
    kind_names: Sequence[str] = ()
    service_names: Sequence[str] = (SCHEDULER,)
    seconds: float = 0.0
    faults: int = 0
    kinds: dict[str, KindStats] = field(default_factory=dict)
    services: dict[str, ServiceTally] = field(default_factory=dict)
    unsettled: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for kind in self.kind_names:
            self.kinds.setdefault(kind, KindStats())
        for name in self.service_names:
            self.services.setdefault(name, ServiceTally(name))

    # the scheduler's figures, as a soak with one service reports them

    @property
    def two(self) -> float:
        return self.services[SCHEDULER].two

    @property
    def none(self) -> float:
        return self.services[SCHEDULER].none

    @property
    def availability(self) -> float:
        return self.services[SCHEDULER].availability

    @property
    def pace(self) -> float:
        return self.services[SCHEDULER].pace

    @property
    def doubled(self) -> list[str]:
        return [f"{t.name}: {d}" for t in self.services.values() for d in t.doubled]

    @property
    def exit_status(self) -> int:
        """1 if any service ran twice at any observed instant, 2 if a window did not settle, else 0."""
        if any(t.two > 0 for t in self.services.values()):
            return 1
        return 2 if self.unsettled else 0

    def worst(self, service: str = SCHEDULER) -> tuple[str, float]:
        """The fault kind with the longest outage of ``service``, and that outage."""
        figures = self.services[service].kinds
        kind = max(self.kinds, key=lambda k: figures.get(k, KindFigures()).longest_outage)
        return kind, figures.get(kind, KindFigures()).longest_outage

    def table(self) -> str:
        names = list(self.services)
        lines = [
            f"seed {self.seed}, metastore {self.metastore}, node_control {self.node_control}, "
            f"services {', '.join(names)}: {self.faults} faults in {self.seconds:.0f}s",
            f"  {'':<22}" + "".join(f"{n:>12}" for n in names),
            f"  {'observer every (ms)':<22}" + "".join(f"{1e3 * t.pace:>12.0f}" for t in self.services.values()),
            f"  {'seconds with two':<22}" + "".join(f"{t.two:>12.2f}" for t in self.services.values()),
            f"  {'seconds with none':<22}" + "".join(f"{t.none:>12.2f}" for t in self.services.values()),
            f"  {'availability':<22}" + "".join(f"{100 * t.availability:>11.3f}%" for t in self.services.values()),
            "",
            "  longest outage / two s / none s, per service:",
            f"  {'fault':<18} {'count':>5} {'longest settle s':>16} {'unsettled':>9}"
            + "".join(f" {n[:20]:>20}" for n in names),
        ]
        for kind, k in self.kinds.items():
            cells = ""
            for tally in self.services.values():
                f = tally.kinds.get(kind, KindFigures())
                cells += f" {f'{f.longest_outage:.2f} / {f.two:.2f} / {f.none:.1f}':>20}"
            lines.append(f"  {kind:<18} {k.count:>5} {k.longest_settle:>16.2f} {k.unsettled:>9}" + cells)
        lines += [f"  TWO AT ONCE: {d}" for d in self.doubled]
        lines += [f"  NOT HEALTHY AGAIN: {u}" for u in self.unsettled]
        return "\n".join(lines)
