"""Per-node reports and the cluster's ``node_control``: the records of self mode (docs/design.md, 5a).

Each node's report is written by that node's own controller only, and every write is ordered by
``seq``: it lands only when the stored report's ``seq`` is lower, so a write from an older look
that arrives late never replaces a newer one.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from . import rows

#: the values ``node_control`` may take; "" in the store: not recorded yet
NODE_CONTROLS = ("self", "ssh")


@dataclass(frozen=True)
class NodeReport:
    """A node's own controller's last look at its own scheduler."""

    node: str
    holder: str
    state: str
    pids: tuple[int, ...] = ()
    leashed: bool = False
    foreign: tuple[tuple[int, str], ...] = ()
    detail: str = ""
    #: the placement version the controller read before it looked
    answers: int = 0
    #: the highest placement version it started a scheduler for (or saw one running for)
    started_for: int = 0
    #: orders the writes of one node's reports: a write lands only over a lower one
    seq: int = 0
    observed_at: float = 0.0  # server time of the write
    server_now: float = 0.0

    @property
    def age(self) -> float:
        return max(0.0, self.server_now - self.observed_at)


def node_control_value(where: str, value: object) -> str | None:
    """A recorded ``node_control``: None when unset; CorruptRecord when no valid write made it."""
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise rows.corrupt(where, "is not text", value) from None
    if value in ("", None):
        return None
    if value not in NODE_CONTROLS:
        raise rows.corrupt(where, f"is not one of {', '.join(NODE_CONTROLS)}", value)
    return str(value)


class ReportStore(abc.ABC):
    """The self-mode part of the metastore contract (every backend keeps it)."""

    @abc.abstractmethod
    def write_report(self, report: NodeReport) -> bool:
        """Insert or replace ``report.node``'s report, stamped with the server's now.

        One ordered write: it lands only when no report of the node is stored, or the stored
        one's ``seq`` is lower than ``report.seq``. False when it did not land (a newer one is there).
        """

    @abc.abstractmethod
    def reports(self) -> list[NodeReport]:
        """Every node's last report, with ``server_now`` set for ages."""

    @abc.abstractmethod
    def read_node_control(self) -> str | None:
        """The cluster's recorded node_control; None when none is recorded yet."""

    @abc.abstractmethod
    def claim_node_control(self, value: str) -> str:
        """Record ``value`` as the cluster's node_control if none is (one compare-and-set); return
        the value recorded now (``value``, or the one recorded before)."""

    @abc.abstractmethod
    def set_node_control(self, value: str) -> bool:
        """Record ``value`` as the cluster's node_control, only while the cluster is paused (checked
        in the same atomic step). False when it is not paused."""
