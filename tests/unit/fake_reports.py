"""The self-mode part of the metastore contract in memory (a mixin of ``FakeStore``)."""

from __future__ import annotations

from dataclasses import replace

from scheduler_failover_controller.metastore.base import capped, foreign_rows
from scheduler_failover_controller.metastore.reports import NodeReport, ReportStore


class FakeReports(ReportStore):
    """Reports kept per node, ordered by ``seq``; ``node_control`` set once, or while paused."""

    server_now: float
    paused: bool
    node_reports: dict[str, NodeReport]
    node_control: str | None

    def _enter(self, name: str) -> None:
        raise NotImplementedError

    def write_report(self, report: NodeReport) -> bool:
        self._enter("write_report")
        stored = self.node_reports.get(report.node)
        if stored is not None and stored.seq >= report.seq:
            return False
        kept = replace(
            report,
            detail=capped(report.detail),
            foreign=tuple(foreign_rows(report.foreign)),
            observed_at=self.server_now,
        )
        self.node_reports[report.node] = kept
        return True

    def reports(self) -> list[NodeReport]:
        self._enter("reports")
        return [replace(r, server_now=self.server_now) for _, r in sorted(self.node_reports.items())]

    def read_node_control(self) -> str | None:
        self._enter("read_node_control")
        return self.node_control

    def claim_node_control(self, value: str) -> str:
        self._enter("claim_node_control")
        if self.node_control is None:
            self.node_control = value
        return self.node_control

    def set_node_control(self, value: str) -> bool:
        self._enter("set_node_control")
        if not self.paused:
            return False
        self.node_control = value
        return True
