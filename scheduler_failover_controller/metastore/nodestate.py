"""Per-node records an operator and the active controller keep in the metastore: which nodes are
drained (``sfc drain``), and each node's failed starts (their backoff, and ``failure_timeout``).

Drained nodes are read with every ``read_state`` (``ClusterState.drained``): the active controller
acts on a drain within a renewal interval. Failed starts are kept so that a new active controller
inherits them; each is stamped with the server's clock, never a controller's.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from . import rows
from .events import request_id


@dataclass(frozen=True)
class NodeFailures:
    """A node's failed starts since they were last forgotten, and when the last one was (server time)."""

    node: str
    strikes: int
    last_at: float
    server_now: float = 0.0

    @property
    def age(self) -> float:
        """Seconds since the last failed start, by the server's clock."""
        return max(0.0, self.server_now - self.last_at)


def backoff_seconds(strikes: int, move_backoff: float) -> float:
    """How long after its last failed start a node with ``strikes`` failures is avoided (doubling, up to 8x)."""
    return 0.0 if strikes <= 0 else move_backoff * min(8, 2 ** (strikes - 1))


def drained_entry(where: str, node: object, request: object) -> tuple[str, str]:
    """A drained node as kept: its name and the id of the drain that asked for it ('' for none)."""
    return rows.name(f"{where} node", node), request_id(f"{where} request id", request)


class NodeStateStore(abc.ABC):
    """The drain and failure-memory part of the metastore contract (every backend keeps it)."""

    @abc.abstractmethod
    def drain(self, node: str, nodes: Sequence[str], request_id: str = "") -> bool:
        """Mark ``node`` drained (no scheduler may be placed there), with the id of the request.

        One atomic step that refuses (False) when it would leave none of ``nodes`` undrained. Draining
        a drained node again replaces its request id and returns True.
        """

    @abc.abstractmethod
    def undrain(self, node: str) -> bool:
        """Remove ``node``'s drain; False if it was not drained."""

    @abc.abstractmethod
    def record_failure(self, node: str) -> NodeFailures:
        """Count one more failed start of ``node``, stamped with the server's now; return the count as kept."""

    @abc.abstractmethod
    def failures(self) -> list[NodeFailures]:
        """Every node with failed starts kept, with ``server_now`` set for ages."""

    @abc.abstractmethod
    def forget_failures(self, node: str, strikes: int | None = None) -> bool:
        """Forget ``node``'s failed starts; with ``strikes``, only while that many are kept (a failure
        recorded meanwhile is not forgotten with the older ones). False when nothing was forgotten."""
