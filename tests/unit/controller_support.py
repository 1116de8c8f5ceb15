"""Helpers of the controller's unit tests: one poll, an active n1, and the sentences a cycle returns."""

from __future__ import annotations

from typing import Any

from scheduler_failover_controller.controller.cycle import Controller

from .fakes import Cluster, FakeStore

TTL = 5.0  # lease_ttl of the test config (poll_frequency 1, metastore_timeout 0.5)


def tick(cluster: Cluster, *controllers: Controller, seconds: float = 1.0) -> list[str]:
    """Let one poll pass, then run one cycle of each controller, in order."""
    cluster.clock.advance(seconds)
    return [c.run_cycle() for c in controllers]


def active_on_n1(cluster: Cluster, **settings: Any) -> Controller:
    """n1's controller, active, with the scheduler placed and running on n1."""
    c1 = cluster.controller("n1", **settings)
    assert c1.run_cycle() == placed(cluster, "n1")
    assert cluster.running() == ["n1"]
    return c1


def pid(cluster: Cluster, node: str) -> int:
    """The one scheduler pid ``node`` runs now (its sentences name it)."""
    (only,) = cluster.runners[node].pids
    return only


def healthy(cluster: Cluster, node: str, epoch: int = 1) -> str:
    """The active's sentence for a healthy scheduler on ``node``."""
    return f"active (epoch {epoch}): scheduler healthy on {node} (running (pid {pid(cluster, node)}))"


def placed(cluster: Cluster, node: str, epoch: int = 1) -> str:
    """The active's sentence for a scheduler placed and started on ``node`` at once."""
    started = f"up after 0.0s, running (pid {pid(cluster, node)})"
    return f"active (epoch {epoch}): placed and started the scheduler on {node} ({started})"


def bump_version(store: FakeStore) -> None:
    """Another writer moved the placement between our read and our compare-and-set."""
    store.placement_version += 1
