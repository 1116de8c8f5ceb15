"""The cluster as the metastore knows it, judged once: what ``status`` shows.

``read_status`` builds a ``ClusterStatus``; the CLI only renders it (text, or ``to_json()``, whose
field names outside checks rely on) and exits with its ``health.exit_code``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .config import Config
from .controller.term import Role
from .metastore.base import ClusterState, ControllerInfo, Event, Metastore, Observation
from .metastore.events import EventKind
from .metastore.nodestate import NodeFailures, backoff_seconds
from .metastore.reports import NodeReport
from .metastore.rows import implausible
from .nodes.by_report import stale_after
from .probe_result import SchedulerState
from .strenum import StrEnum

E = TypeVar("E", bound=enum.Enum)


class ClusterHealth(StrEnum):
    """What ``status`` concludes; its value is the ``health`` field."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    NO_SCHEDULER = "no scheduler"

    @property
    def exit_code(self) -> int:
        return {ClusterHealth.HEALTHY: 0, ClusterHealth.DEGRADED: 1, ClusterHealth.NO_SCHEDULER: 2}[self]


def _known(kind: type[E], text: str) -> E | str:
    """``text`` as a member of ``kind``; a value this release does not know (a newer one may write it) as is."""
    try:
        return kind(text)
    except ValueError:
        return text


def _text(value: enum.Enum | str) -> str:
    """What the metastore and JSON hold: an enum's value, or the text as it was written."""
    return str(value.value) if isinstance(value, enum.Enum) else value


@dataclass(frozen=True)
class ControllerStatus:
    host: str
    role: Role | str  # as the lease (not the controller's own last word) says; an unknown role as written
    pid: int
    version: str
    heartbeat_age_s: float
    paused: bool  # the pause this controller acts on (cut off, it keeps acting on it)


@dataclass(frozen=True)
class NodeStatus:
    host: str
    scheduler: SchedulerState | str  # UNKNOWN when never observed; an unknown state as written
    pids: tuple[int, ...]
    observed_age_s: float | None  # None: never observed
    #: (pid, user) of matching processes another user runs outside the leash: not counted
    foreign: tuple[tuple[int, str], ...] = ()
    #: the age of the node's own controller's last report (self mode); None: none
    report_age_s: float | None = None


@dataclass(frozen=True)
class Failover:
    at: float
    age_s: float
    message: str


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


@dataclass(frozen=True)
class ClusterStatus:
    health: ClusterHealth
    problems: list[str]
    active_controller: str | None
    epoch: int
    scheduler_node: str | None
    placement_expires_in_s: float | None
    paused: bool
    implausible: list[str]
    controllers: list[ControllerStatus]
    nodes: list[NodeStatus]
    last_failover: Failover | None
    #: the cluster's recorded node_control (None: not recorded yet), and this config's
    node_control: str | None = None
    configured_node_control: str = "self"
    drained: list[str] = field(default_factory=list)  # nodes kept free of the scheduler (sfc drain)
    failed_starts: list[FailedStarts] = field(default_factory=list)  # nodes with failed starts remembered

    def to_json(self) -> dict[str, Any]:
        """The ``status --json`` document (its field names and order are an interface)."""
        failover = self.last_failover
        return {
            "health": self.health.value,
            "problems": self.problems,
            "active_controller": self.active_controller,
            "epoch": self.epoch,
            "scheduler_node": self.scheduler_node,
            "placement_expires_in_s": self.placement_expires_in_s,
            "paused": self.paused,
            "implausible": self.implausible,
            "controllers": [
                {
                    "host": c.host,
                    "role": _text(c.role),
                    "pid": c.pid,
                    "version": c.version,
                    "heartbeat_age_s": c.heartbeat_age_s,
                    "paused": c.paused,
                }
                for c in self.controllers
            ],
            "nodes": [
                {
                    "host": n.host,
                    "scheduler": _text(n.scheduler),
                    "pids": list(n.pids),
                    "observed_age_s": n.observed_age_s,
                    "foreign": [{"pid": pid, "user": user} for pid, user in n.foreign],
                    "report_age_s": n.report_age_s,
                }
                for n in self.nodes
            ],
            "last_failover": (
                {"at": failover.at, "age_s": failover.age_s, "message": failover.message} if failover else None
            ),
            "node_control": self.node_control,
            "drained": self.drained,
            "failed_starts": [
                {
                    "host": f.host,
                    "count": f.count,
                    "last_age_s": f.last_age_s,
                    "avoided_for_s": f.avoided_for_s,
                    "forgotten_in_s": f.forgotten_in_s,
                }
                for f in self.failed_starts
            ],
        }


def role_by_lease(registered: str, holds_lease: bool, silent: bool) -> Role | str:
    """A controller's role as the lease (not its own last word) says."""
    if holds_lease:
        return Role.ACTIVE
    if silent:
        return Role.SILENT
    role = _known(Role, registered)
    return Role.STANDBY if role is Role.ACTIVE else role


def read_status(store: Metastore, config: Config) -> ClusterStatus:
    """Read the cluster from ``store`` and judge it: healthy, degraded or without a scheduler."""
    state = store.read_state()
    registry = store.controllers()
    observations = {o.node: o for o in store.observations()}
    reports = {r.node: r for r in store.reports()}
    recorded = store.read_node_control()
    recent = store.events(200)
    moves = [e for e in recent if e.kind == EventKind.MOVE]
    lease, placement = state.lease, state.placement
    fresh = 2 * config.poll_frequency + config.lease_ttl
    if config.node_control == "self":  # each node's own report: true within one renewal of a change
        fresh = stale_after(config)
        observations = {
            node: Observation(node, r.state, r.pids, r.detail, r.observed_at, node, r.server_now, r.leashed, r.foreign)
            for node, r in reports.items()
        }
    nodes = _nodes(observations, reports, config)
    controllers = [_controller(c, state, config) for c in registry]
    running = [n for n in nodes if n.scheduler is SchedulerState.RUNNING and (n.observed_age_s or 0) <= fresh]
    doubts = implausible(state, config.nodes, config.lease_ttl)  # a lease or placement no controller of ours wrote
    problems = list(doubts) + _problems(state, controllers, nodes, config, fresh)
    problems += _cluster_problems(state, running, recorded, recent, config)
    if not running:
        health = ClusterHealth.NO_SCHEDULER
    elif problems:
        health = ClusterHealth.DEGRADED
    else:
        health = ClusterHealth.HEALTHY
    last = moves[-1] if moves else None
    return ClusterStatus(
        health=health,
        problems=problems,
        active_controller=lease.host if lease.valid else None,
        epoch=lease.epoch,
        scheduler_node=placement.node if placement.valid else None,
        placement_expires_in_s=round(placement.remaining, 3) if placement.node else None,
        paused=state.paused,
        implausible=doubts,
        controllers=controllers,
        nodes=nodes,
        last_failover=Failover(last.at, round(state.server_now - last.at, 1), last.message) if last else None,
        node_control=recorded,
        configured_node_control=config.node_control,
        drained=sorted(state.drained),
        failed_starts=failed_starts(store.failures(), config),
    )


def _nodes(observations: dict[str, Observation], reports: dict[str, NodeReport], config: Config) -> list[NodeStatus]:
    """One status per configured node, from its latest observation (UNKNOWN without one)."""
    return [
        NodeStatus(
            node, _known(SchedulerState, obs.state), obs.pids, round(obs.age, 3), obs.foreign, _age(reports, node)
        )
        if (obs := observations.get(node))
        else NodeStatus(node, SchedulerState.UNKNOWN, (), None, report_age_s=_age(reports, node))
        for node in config.nodes
    ]


def _cluster_problems(
    state: ClusterState, running: list[NodeStatus], recorded: str | None, recent: list[Event], config: Config
) -> list[str]:
    """Problems of the cluster as a whole: two schedulers, a node_control mismatch, duplicate controllers."""
    problems = []
    if len(running) > 1:
        problems.append("more than one scheduler running")
    problems += [f"the scheduler runs on {n.host}, which is drained" for n in running if n.host in state.drained]
    if recorded is not None and recorded != config.node_control:
        problems.append(
            f"the cluster's node_control is {recorded} but {config.node_control} in this config: "
            "a controller with this config refuses to act"
        )
    # Two controllers with one current_host share one registry row: only the events tell.
    window = 10 * config.lease_ttl + 2 * config.poll_frequency
    for event in recent:
        if event.kind == EventKind.DUPLICATE and state.server_now - event.at <= window:
            problems.append(f"two controllers ran as {event.host} ({event.message.split(':', 1)[0]})")
            break
    return problems


def _age(reports: dict[str, NodeReport], node: str) -> float | None:
    report = reports.get(node)
    return round(report.age, 3) if report is not None else None


def _controller(c: ControllerInfo, state: ClusterState, config: Config) -> ControllerStatus:
    lease = state.lease
    role = role_by_lease(c.role, c.holder == lease.holder and lease.valid, c.age > config.lease_ttl)
    return ControllerStatus(c.host, role, c.pid, c.version, round(c.age, 3), c.paused)


def _problems(
    state: ClusterState, controllers: list[ControllerStatus], nodes: list[NodeStatus], config: Config, fresh: float
) -> list[str]:
    """What keeps the cluster from being healthy, as the records and observations say."""
    problems = []
    if not state.lease.valid:
        problems.append("no active controller")
    if state.paused:
        problems.append("paused")
    if not state.placement.valid:
        problems.append("no valid scheduler placement")
    for c in controllers:
        if c.heartbeat_age_s > config.lease_ttl:
            problems.append(f"controller on {c.host} silent for {c.heartbeat_age_s:.0f}s")
    for n in nodes:
        if n.scheduler is SchedulerState.UNKNOWN:
            problems.append(f"{n.host} unknown")
        elif n.observed_age_s is not None and n.observed_age_s > fresh:
            problems.append(f"observation of {n.host} is {n.observed_age_s:.0f}s old")
        if n.foreign:
            who = ", ".join(f"pid {pid} ({user})" for pid, user in n.foreign)
            problems.append(f"foreign scheduler process on {n.host}: {who} (another user's, not counted)")
    return problems


def history_json(events: list[Event]) -> list[dict[str, Any]]:
    """The ``history --json`` document: one object per event, oldest first (field names are an interface)."""
    return [
        {
            "at": e.at,
            "host": e.host,
            "kind": str(e.kind),
            "epoch": e.epoch,
            "message": e.message,
            "request_id": e.request_id,
        }
        for e in events
    ]
