"""Node runners: the controller's hands on each master node."""

from __future__ import annotations

from ..config import Config
from .base import NodeRunner, NoTransportRunner
from .local import LocalNodeRunner

__all__ = ["LocalNodeRunner", "NoTransportRunner", "NodeRunner", "make_runners"]


def make_runners(config: Config) -> dict[str, NodeRunner]:
    """One runner per node: local for this machine's nodes, the others are not reachable yet."""
    runners: dict[str, NodeRunner] = {}
    for node in config.nodes:
        if node in config.local_nodes:
            runners[node] = LocalNodeRunner(node, config)
        else:
            runners[node] = NoTransportRunner(
                node, "not reachable from here: not in local_nodes and SSH control is not available yet"
            )
    return runners
