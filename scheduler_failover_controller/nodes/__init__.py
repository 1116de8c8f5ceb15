"""Node runners: the controller's hands on each master node.

The SSH runner (and with it paramiko and cryptography, some 13 MB) is imported only when a node
is remote: a single-host controller never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import Config
from ..metastore.base import Metastore
from .base import NodeRunner
from .local import LocalNodeRunner

if TYPE_CHECKING:
    from .ssh import SSHNodeRunner

__all__ = ["LocalNodeRunner", "NodeRunner", "SSHNodeRunner", "make_runners"]


def __getattr__(name: str) -> Any:
    if name == "SSHNodeRunner":
        from .ssh import SSHNodeRunner

        return SSHNodeRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_runners(config: Config, store: Metastore | None = None) -> dict[str, NodeRunner]:
    """One runner per node: local for this machine's nodes (always its own), SSH for the others.

    In self mode (``node_control = self``) every other node is seen through its report in
    ``store`` (read only here; the controller gives its runners the orders) and SSH is never loaded.
    """
    runners: dict[str, NodeRunner] = {}
    if config.node_control == "self":
        from .by_report import ReportRunner

        for node in config.nodes:
            if node == config.current_host:
                runners[node] = LocalNodeRunner(node, config)
            elif store is None:
                raise ValueError("self mode reads the other nodes from the metastore")
            else:
                runners[node] = ReportRunner(node, config, store)
        return runners
    for node in config.nodes:
        if node in config.local_nodes:
            runners[node] = LocalNodeRunner(node, config)
        else:
            from .ssh import SSHNodeRunner

            runners[node] = SSHNodeRunner(node, config)
    return runners
