"""One fault on one cluster, as the lab's observer saw it, and the table of many such trials.

Every trial boots a fresh lab (scheduler and active controller on h1), injects one fault on h1,
waits until the fault is over and the cluster has looked healthy for a while (exactly one
scheduler, where the controllers believe it runs) or a bound has passed, and keeps:

  recovery   fault -> a scheduler runs again: a new process (scheduler SIGKILL), one on another
             host (host crash, partition: a cut-off scheduler reaches no database either), or,
             for the controller faults, 0 if the scheduler never stopped, else the first
             scheduler after it went
  two        seconds with two or more schedulers, fault to end of the window
  outage     seconds with none, fault to end of the window
  takeover   fault -> another host's controller is the active one (by its metastore)

A partition stays until a scheduler runs on another host, ``HOLD`` seconds more (or until the
bound), then heals, so that what happens to the cut-off scheduler counts too.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.observer import Seen

if TYPE_CHECKING:
    from benchmarks.legacy_cluster import Cluster

HOME = "h1"  # the host that runs the scheduler and the active controller when a fault comes
FAULTS = {
    "kill": "scheduler SIGKILL",
    "crash": "host crash (scheduler + active)",
    "partition": "partition (scheduler + active)",
    "controller_kill": "active controller SIGKILL",
    "graceful": "active controller SIGTERM",
}
CONTROLLER_FAULTS = ("controller_kill", "graceful")
HOLD = 10.0  # a partition lasts until a scheduler runs elsewhere, then this much longer
LOOK = 0.25  # seconds between two looks at the cluster while a trial runs

History = Sequence[tuple[float, tuple[Seen, ...], tuple[Seen, ...]]]


@dataclass
class Trial:
    """What one fault cost (seconds; None: not within the trial's bound)."""

    controller: str  # "2016" or "ours"
    settings: str  # "same" or "defaults"
    fault: str
    recovery: float | None
    two: float
    outage: float
    takeover: float | None
    two_at_end: bool = False
    note: str = ""


def recovery_from(history: History, since: float, fault: str, old: Seen) -> float | None:
    """Seconds from ``since`` to the first sample in which ``fault`` is recovered (see the module)."""
    after = [(t, real) for t, real, _ in history if t >= since]
    if fault in CONTROLLER_FAULTS:
        gone = next((t for t, real in after if all(s.pid != old.pid for s in real)), None)
        if gone is None:
            return 0.0  # the scheduler ran on
        back = next((t for t, real in after if t >= gone and real), None)
        return None if back is None else back - since
    if fault == "kill":

        def ok(real: tuple[Seen, ...]) -> bool:
            return any(s.pid != old.pid for s in real)
    else:

        def ok(real: tuple[Seen, ...]) -> bool:
            return any(s.node != old.node for s in real)

    at = next((t for t, real in after if ok(real)), None)
    return None if at is None else at - since


def inject(cluster: Cluster, fault: str, old: Seen, target: str) -> None:
    """``fault`` on h1, or for the controller faults on ``target`` (the active's host)."""
    host = cluster.lab.host(target if fault in CONTROLLER_FAULTS else HOME)
    if fault == "kill":
        os.kill(old.pid, signal.SIGKILL)
    elif fault == "crash":
        host.crash()
    elif fault == "partition":
        cluster.lab.partition(HOME)
    elif fault == "controller_kill":
        host.kill_controller()
    elif fault == "graceful":
        host.signal_controller(signal.SIGTERM)
    else:
        raise ValueError(f"unknown fault {fault!r}")


class Window:
    """One trial after its fault: what has been seen, and whether the trial is done."""

    def __init__(self, cluster: Cluster, fault: str, old: Seen, since: float, target: str = HOME) -> None:
        self.cluster, self.fault, self.old, self.since = cluster, fault, old, since
        self.target = target  # the active controller's host at the fault
        self.settle = cluster.settle()
        self.linger = self.settle + 2 * cluster.poll + 40.0  # the most it waits for health once the fault is over
        self.end_by = since + cluster.cap()
        self.over_at: float | None = None  # the fault was over (recovered, or taken over), or given up on
        self.heal_at: float | None = None
        self.healed = fault != "partition"
        self.steady_since: float | None = None
        self.takeover: float | None = None
        self.note = ""

    def over(self) -> bool:
        if self.fault in CONTROLLER_FAULTS:
            return self.takeover is not None
        return recovery_from(self.cluster.lab.observer.history, self.since, self.fault, self.old) is not None

    def look(self, now: float) -> bool:
        """One look at the cluster; True once the trial is done."""
        cluster = self.cluster
        if self.takeover is None and cluster.active() not in (None, self.target):
            self.takeover = now - self.since
        if self.over_at is None:
            over = self.over()
            if over or now >= self.end_by:
                self.note = "" if over else f"not over within {cluster.cap():.0f}s"
                self.over_at = now
                self.end_by = now + self.linger + (0.0 if self.healed else HOLD)
                if not self.healed:
                    self.heal_at = now + HOLD if over else now
        if not self.healed and self.heal_at is not None and now >= self.heal_at:
            cluster.lab.heal(HOME)
            self.healed = True
        seen = cluster.lab.observer.current()
        healthy = self.over_at is not None and self.healed and len(seen) == 1 and cluster.placed() == seen[0].node
        self.steady_since = (self.steady_since or now) if healthy else None
        if self.steady_since is not None and now - self.steady_since >= self.settle:
            return True
        if now >= self.end_by:
            if self.over_at is not None and not self.note:
                self.note = f"not healthy {self.linger:.0f}s after the fault was over"
            return True
        return False


def run_trial(cluster: Cluster, controller: str, settings: str, fault: str) -> Trial:
    """Boot ``cluster``, inject ``fault`` on h1, watch until it is over (bounded), measure."""
    lab = cluster.lab
    obs = lab.observer
    cluster.boot()
    old = obs.one()
    assert old is not None and old.node == HOME, f"after boot: {obs.describe()}"
    # The 2016 controller at poll 1 may have handed the active role to a standby by itself (a
    # heartbeat older than two polls, its cycle being longer than one): the controller faults
    # hit the active controller wherever it is.
    target = cluster.active() or HOME
    two0, none0 = obs.seconds_two_or_more, obs.seconds_none
    since = time.monotonic()
    inject(cluster, fault, old, target)
    window = Window(cluster, fault, old, since, target)
    try:
        while not window.look(time.monotonic()):
            time.sleep(LOOK)
    finally:
        if not window.healed:
            lab.heal(HOME)
        obs.stop()
    return Trial(
        controller=controller,
        settings=settings,
        fault=fault,
        recovery=recovery_from(obs.history, since, fault, old),
        two=obs.seconds_two_or_more - two0,
        outage=obs.seconds_none - none0,
        takeover=window.takeover,
        two_at_end=len(obs.current()) >= 2,
        note=window.note + ("" if target == HOME else f" (active on {target} at the fault)"),
    )


def record(trial: Trial, out: Path | None) -> None:
    if out is not None:
        with out.open("a") as f:
            f.write(json.dumps(asdict(trial)) + "\n")


def load(path: Path) -> list[Trial]:
    """Trials saved by ``record`` (one JSON object a line)."""
    return [Trial(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def _cell(values: Sequence[float | None], unit: Callable[[float], str]) -> str:
    got = [v for v in values if v is not None]
    if not values:
        return ""
    text = f"{unit(statistics.median(got))} / {unit(max(got))}" if got else "none"
    missing = len(values) - len(got)
    return text + (f" ({missing} of {len(values)} never)" if missing else "")


def table(trials: Sequence[Trial], columns: Sequence[tuple[str, str, str]]) -> str:
    """A markdown table, a row per fault and measure, a column per (controller, settings, title).

    Cells: median / max over the trials (seconds)."""
    broken = [t for t in trials if t.note.startswith("failed")]  # no fault was injected: not a figure
    trials = [t for t in trials if not t.note.startswith("failed")]
    head = "| fault | measure | " + " | ".join(title for _, _, title in columns) + " |"
    lines = [head, "|---|---|" + "---|" * len(columns)]

    def secs(v: float) -> str:
        return f"{v:.1f}"

    for fault, name in FAULTS.items():
        measures: list[tuple[str, Callable[[Trial], float | None]]] = [
            ("recovery s", lambda t: t.recovery),
            ("two schedulers s", lambda t: t.two),
            ("no scheduler s", lambda t: t.outage),
        ]
        if fault in CONTROLLER_FAULTS:
            measures.append(("new active s", lambda t: t.takeover))
        for i, (label, get) in enumerate(measures):
            cells = []
            for controller, settings, _ in columns:
                mine = [t for t in trials if (t.controller, t.settings, t.fault) == (controller, settings, fault)]
                cell = _cell([get(t) for t in mine], secs)
                if label.startswith("two") and any(t.two_at_end for t in mine):
                    cell += f" (still two at the end: {sum(t.two_at_end for t in mine)} of {len(mine)})"
                cells.append(cell)
            lines.append(f"| {name if i == 0 else ''} | {label} | " + " | ".join(cells) + " |")
    per = []
    for controller, settings, title in columns:
        faults = [t.fault for t in trials if (t.controller, t.settings) == (controller, settings)]
        counts = sorted({faults.count(f) for f in FAULTS} - {0})
        if counts:
            per.append(f"{title}: {counts[0]}" + (f"-{counts[-1]}" if counts[-1] != counts[0] else ""))
    lines += ["", "trials per fault: " + ", ".join(per)]
    if broken:
        lines.append(f"trials that failed before their fault (left out): {len(broken)}")
    return "\n".join(lines)
