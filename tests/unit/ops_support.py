"""Shared set-up of the per-service operations' tests: a config with a service ``beat`` beside
the scheduler, and a store whose scheduler and beat are each placed and observed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from scheduler_failover_controller.config import Config
from scheduler_failover_controller.config.services import ServiceSpec
from scheduler_failover_controller.metastore.base import Metastore, Observation

BEAT = "beat"


def with_beat(config: Config, nodes: Sequence[str] | None = None) -> Config:
    """``config`` with one more service, ``beat``, on ``nodes`` (all of the config's by default)."""
    spec = ServiceSpec(BEAT, "start-beat", "", "celery beat", 3.0, 3.0, "", tuple(nodes or config.nodes))
    return replace(config, service_names=(BEAT,), service_specs=(spec,))


def place(store: Metastore, holder: str, node: str, states: dict[str, str], ttl: float = 5.0) -> None:
    """As the active ``holder`` would: place the store's (view's) service on ``node`` and record
    what runs on each node."""
    lease = store.read_state().lease
    version = store.read_state().placement.version
    assert store.set_placement(node, holder, lease.epoch, version, ttl) is not None
    seen = [Observation(n, state, (100,) if state == "running" else (), "") for n, state in states.items()]
    assert store.record_observations(holder, lease.epoch, seen)
