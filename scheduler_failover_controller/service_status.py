"""Each service's part of ``status``: where it is placed, what runs on each node, what is wrong.

The scheduler is one service among them (the first); every other one is read through its own
metastore view (:meth:`Metastore.for_service`) and judged against its own config view
(:meth:`Config.for_service`): its nodes, its placement, its observations or reports, its failed
starts. The lease, the pause and the drained nodes are the fleet's.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, TypeVar

from .config import Config
from .config.services import SCHEDULER
from .metastore.base import Metastore, Observation, Placement
from .metastore.nodestate import NodeFailures, backoff_seconds
from .metastore.reports import NodeReport
from .nodes.by_report import stale_after
from .probe_result import SchedulerState

E = TypeVar("E", bound=enum.Enum)


def known(kind: type[E], text: str) -> E | str:
    """``text`` as a member of ``kind``; a value this release does not know (a newer one may write it) as is."""
    try:
        return kind(text)
    except ValueError:
        return text


def text_of(value: enum.Enum | str) -> str:
    """What the metastore and JSON hold: an enum's value, or the text as it was written."""
    return str(value.value) if isinstance(value, enum.Enum) else value


@dataclass(frozen=True)
class NodeStatus:
    host: str
    scheduler: SchedulerState | str  # the service's state there; UNKNOWN when never observed
    pids: tuple[int, ...]
    observed_age_s: float | None  # None: never observed
    #: (pid, user) of matching processes another user runs outside the leash: not counted
    foreign: tuple[tuple[int, str], ...] = ()
    #: the age of the node's own controller's last report (self mode); None: none
    report_age_s: float | None = None


@dataclass(frozen=True)
class FailedStarts:
    """A node's failed starts as the metastore keeps them (``failure_timeout``)."""

    host: str
    count: int
    last_age_s: float
    avoided_for_s: float  # the rest of its backoff (0: over)
    forgotten_in_s: float | None  # None: never (failure_timeout 0)


def failed_starts(found: list[NodeFailures], config: Config) -> list[FailedStarts]:
    """The failed starts still remembered: those ``failure_timeout`` has not yet forgotten."""
    shown = []
    timeout = config.failure_timeout
    for f in found:
        if timeout > 0 and f.age >= timeout:
            continue  # forgotten: the active deletes it at its next cycle
        forgotten = round(timeout - f.age, 1) if timeout > 0 else None
        backoff = max(0.0, backoff_seconds(f.strikes, config.move_backoff) - f.age)
        avoided = min(backoff, forgotten) if forgotten is not None else backoff
        shown.append(FailedStarts(f.node, f.strikes, round(f.age, 1), round(avoided, 1), forgotten))
    return shown


def failed_starts_json(shown: list[FailedStarts]) -> list[dict[str, Any]]:
    return [
        {
            "host": f.host,
            "count": f.count,
            "last_age_s": f.last_age_s,
            "avoided_for_s": f.avoided_for_s,
            "forgotten_in_s": f.forgotten_in_s,
        }
        for f in shown
    ]


def look(store: Metastore, config: Config) -> tuple[list[NodeStatus], float]:
    """Each of ``config``'s nodes as ``store`` last saw it (the active's observations, or in self
    mode each node's own report), and the age after which such a look no longer tells."""
    observations = {o.node: o for o in store.observations()}
    reports = {r.node: r for r in store.reports()}
    fresh = 2 * config.poll_frequency + config.lease_ttl
    if config.node_control == "self":  # each node's own report: true within one renewal of a change
        fresh = stale_after(config)
        observations = {
            node: Observation(node, r.state, r.pids, r.detail, r.observed_at, node, r.server_now, r.leashed, r.foreign)
            for node, r in reports.items()
        }
    return node_statuses(observations, reports, config), fresh


def node_statuses(
    observations: dict[str, Observation], reports: dict[str, NodeReport], config: Config
) -> list[NodeStatus]:
    """One status per configured node, from its latest observation (UNKNOWN without one)."""
    return [
        NodeStatus(
            node, known(SchedulerState, obs.state), obs.pids, round(obs.age, 3), obs.foreign, _age(reports, node)
        )
        if (obs := observations.get(node))
        else NodeStatus(node, SchedulerState.UNKNOWN, (), None, report_age_s=_age(reports, node))
        for node in config.nodes
    ]


def _age(reports: dict[str, NodeReport], node: str) -> float | None:
    report = reports.get(node)
    return round(report.age, 3) if report is not None else None


def running_on(nodes: list[NodeStatus], fresh: float) -> list[NodeStatus]:
    """The nodes whose look, no older than ``fresh``, saw the service running."""
    return [n for n in nodes if n.scheduler is SchedulerState.RUNNING and (n.observed_age_s or 0) <= fresh]


def node_problems(nodes: list[NodeStatus], fresh: float, what: str = "scheduler") -> list[str]:
    """What the looks at the nodes leave in doubt: unknown nodes, old looks, other users' processes."""
    problems = []
    for n in nodes:
        if n.scheduler is SchedulerState.UNKNOWN:
            problems.append(f"{n.host} unknown")
        elif n.observed_age_s is not None and n.observed_age_s > fresh:
            problems.append(f"observation of {n.host} is {n.observed_age_s:.0f}s old")
        if n.foreign:
            who = ", ".join(f"pid {pid} ({user})" for pid, user in n.foreign)
            problems.append(f"foreign {what} process on {n.host}: {who} (another user's, not counted)")
    return problems


class ServiceHealth(enum.Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    NOT_RUNNING = "not running"


@dataclass(frozen=True)
class ServiceStatus:
    """One service as the metastore knows it; ``to_json()`` is an entry of ``status --json``'s ``services``."""

    name: str
    node: str | None  # its valid placement (None: placed nowhere)
    state: SchedulerState | str  # as seen on its node; placed nowhere: RUNNING if seen anywhere, STOPPED if nowhere
    health: ServiceHealth
    problems: list[str]
    placement_expires_in_s: float | None
    switchover: str | None  # the node a pending switchover request names
    nodes: list[NodeStatus]
    failed_starts: list[FailedStarts]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "node": self.node,
            "state": text_of(self.state),
            "health": self.health.value,
            "problems": self.problems,
            "placement_expires_in_s": self.placement_expires_in_s,
            "switchover": self.switchover,
            "nodes": [
                {
                    "host": n.host,
                    "state": text_of(n.scheduler),
                    "pids": list(n.pids),
                    "observed_age_s": n.observed_age_s,
                    "report_age_s": n.report_age_s,
                }
                for n in self.nodes
            ],
            "failed_starts": failed_starts_json(self.failed_starts),
        }


def service_status(
    name: str,
    placement: Placement,
    switchover: tuple[str, str] | None,
    drained: dict[str, str],
    nodes: list[NodeStatus],
    fresh: float,
    failures: list[FailedStarts],
) -> ServiceStatus:
    """Judge one service from what was read of it."""
    running = running_on(nodes, fresh)
    node = placement.node if placement.valid else None
    problems = [] if node else ["no valid placement"]
    if len(running) > 1:
        problems.append(f"more than one {name} running ({', '.join(n.host for n in running)})")
    problems += [f"runs on {n.host}, which is drained" for n in running if n.host in drained]
    problems += node_problems(nodes, fresh, name)
    if node is None:  # stopped only where every node was seen without it
        seen_all = all(n.scheduler is not SchedulerState.UNKNOWN for n in nodes)
        state: SchedulerState | str = SchedulerState.STOPPED if seen_all else SchedulerState.UNKNOWN
        state = SchedulerState.RUNNING if running else state
    else:
        seen = next((n for n in nodes if n.host == node), None)
        fresh_look = seen is not None and (seen.observed_age_s or 0) <= fresh
        state = seen.scheduler if seen is not None and fresh_look else SchedulerState.UNKNOWN
    health = ServiceHealth.DEGRADED if problems else ServiceHealth.HEALTHY
    if not running:
        health = ServiceHealth.NOT_RUNNING
    return ServiceStatus(
        name=name,
        node=node,
        state=state,
        health=health,
        problems=problems,
        placement_expires_in_s=round(placement.remaining, 3) if placement.node else None,
        switchover=switchover[0] if switchover else None,
        nodes=nodes,
        failed_starts=failures,
    )


def read_services(store: Metastore, config: Config) -> list[ServiceStatus]:
    """Every service but the scheduler, in the order of ``services``, each through its own view."""
    found = []
    for spec in config.service_specs:
        if spec.name == SCHEDULER:
            continue
        view, own = store.for_service(spec.name), config.for_service(spec.name)
        state = view.read_state()
        nodes, fresh = look(view, own)
        failures = failed_starts(view.failures(), own)
        placement, switchover, drained = state.placement, state.switchover, state.drained
        found.append(service_status(spec.name, placement, switchover, drained, nodes, fresh, failures))
    return found
