"""What the cycle writes down of its looks, and what it doubts in what it reads."""

from __future__ import annotations

import logging

from ..exceptions import MetastoreError
from ..metastore.base import ClusterState, Metastore, Observation
from ..metastore.rows import implausible
from ..probe_result import ProbeResult

log = logging.getLogger("scheduler_failover_controller.controller")


def record_looks(store: Metastore, holder: str, epoch: int, host: str, results: dict[str, ProbeResult]) -> None:
    """Record these looks (by ``host``) as the cluster's observations, under ``epoch``."""
    observations = [
        Observation(
            n,
            r.state.value,
            r.pids,
            r.detail,
            by_host=host,
            leashed=r.leashed,
            foreign=tuple((f.pid, f.user) for f in r.foreign),
        )
        for n, r in results.items()
    ]
    try:
        store.record_observations(holder, epoch, observations)
    except MetastoreError as exc:
        log.warning("observations not recorded: %s", exc)


def doubts(state: ClusterState, nodes: tuple[str, ...], ttl: float) -> list[str]:
    """What in ``state`` no controller of this config wrote, each logged as a warning."""
    found = implausible(state, nodes, ttl)
    for doubt in found:
        log.warning(
            "metastore: %s; no controller of this config wrote that, and it is not taken as expired "
            "(a controller with another config may hold it): fix the configs or clear the record",
            doubt,
        )
    return found
