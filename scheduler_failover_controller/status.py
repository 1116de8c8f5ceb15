"""The cluster as the metastore knows it, judged once: what ``status`` shows.

``read_status`` builds a ``ClusterStatus``; the CLI only renders it (text, or ``to_json()``, whose
field names outside checks rely on) and exits with its ``health.exit_code``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .config.services import SCHEDULER
from .controller.term import Role
from .metastore.base import ClusterState, ControllerInfo, Event, Metastore
from .metastore.events import EventKind
from .metastore.rows import implausible
from .service_status import (
    FailedStarts,
    NodeStatus,
    ServiceHealth,
    ServiceStatus,
    failed_starts,
    failed_starts_json,
    known,
    look,
    node_problems,
    read_services,
    running_on,
    service_status,
    text_of,
)
from .strenum import StrEnum

__all__ = ["ClusterHealth", "ClusterStatus", "FailedStarts", "NodeStatus", "failed_starts", "read_status"]


class ClusterHealth(StrEnum):
    """What ``status`` concludes; its value is the ``health`` field."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    NO_SCHEDULER = "no scheduler"

    @property
    def exit_code(self) -> int:
        return {ClusterHealth.HEALTHY: 0, ClusterHealth.DEGRADED: 1, ClusterHealth.NO_SCHEDULER: 2}[self]


@dataclass(frozen=True)
class ControllerStatus:
    host: str
    role: Role | str  # as the lease (not the controller's own last word) says; an unknown role as written
    pid: int
    version: str
    heartbeat_age_s: float
    paused: bool  # the pause this controller acts on (cut off, it keeps acting on it)


@dataclass(frozen=True)
class Failover:
    at: float
    age_s: float
    message: str


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
    #: every service, the scheduler first (its entry repeats the top-level fields above)
    services: list[ServiceStatus] = field(default_factory=list)

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
                    "role": text_of(c.role),
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
                    "scheduler": text_of(n.scheduler),
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
            "failed_starts": failed_starts_json(self.failed_starts),
            "services": [s.to_json() for s in self.services],
        }


def role_by_lease(registered: str, holds_lease: bool, silent: bool) -> Role | str:
    """A controller's role as the lease (not its own last word) says."""
    if holds_lease:
        return Role.ACTIVE
    if silent:
        return Role.SILENT
    role = known(Role, registered)
    return Role.STANDBY if role is Role.ACTIVE else role


def read_status(store: Metastore, config: Config) -> ClusterStatus:
    """Read the cluster from ``store`` and judge it: healthy, degraded or without a scheduler.

    Every other service is read through its own view; one that is not running, or has a problem,
    makes the cluster degraded (only the scheduler decides "no scheduler").
    """
    state = store.read_state()
    registry = store.controllers()
    recorded = store.read_node_control()
    recent = store.events(200)
    moves = [e for e in recent if e.kind == EventKind.MOVE and e.service == SCHEDULER]
    lease, placement = state.lease, state.placement
    nodes, fresh = look(store, config)
    controllers = [_controller(c, state, config) for c in registry]
    running = running_on(nodes, fresh)
    doubts = implausible(state, config.nodes, config.lease_ttl)  # a lease or placement no controller of ours wrote
    problems = list(doubts) + _problems(state, controllers, nodes, config, fresh)
    problems += _cluster_problems(state, running, recorded, recent, config)
    failures = failed_starts(store.failures(), config)
    scheduler = service_status(SCHEDULER, placement, state.switchover, state.drained, nodes, fresh, failures)
    others = read_services(store, config)
    for other in others:
        if other.health is ServiceHealth.NOT_RUNNING:
            problems.append(f"{other.name} not running")
        problems += [f"{other.name}: {p}" for p in other.problems]
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
        failed_starts=failures,
        services=[scheduler, *others],
    )


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
    return problems + node_problems(nodes, fresh)


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
            "service": e.service,
        }
        for e in events
    ]
