"""Node runners: the controller's hands on each master node."""

from __future__ import annotations

from ..config import Config
from .base import NodeRunner, NoTransportRunner
from .local import LocalNodeRunner
from .ssh import SSHNodeRunner

__all__ = ["LocalNodeRunner", "NoTransportRunner", "NodeRunner", "SSHNodeRunner", "make_runners"]


def make_runners(config: Config) -> dict[str, NodeRunner]:
    """One runner per node: local for this machine's nodes (always its own), SSH for the others."""
    runners: dict[str, NodeRunner] = {}
    for node in config.nodes:
        if node in config.local_nodes:
            runners[node] = LocalNodeRunner(node, config)
        else:
            runners[node] = SSHNodeRunner(node, config)
    return runners
