"""The drain and failure-memory part of the metastore contract in memory (a mixin of ``FakeStore``)."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler_failover_controller.metastore.nodestate import NodeFailures, NodeStateStore


class FakeNodes(NodeStateStore):
    """Drained nodes (node -> request id) and failed starts (node -> strikes, server time of the last)."""

    server_now: float
    drained: dict[str, str]
    node_failures: dict[str, tuple[int, float]]

    def _enter(self, name: str) -> None:
        raise NotImplementedError

    def drain(self, node: str, nodes: Sequence[str], request_id: str = "") -> bool:
        self._enter("drain")
        after = {**self.drained, node: request_id}
        if not [n for n in nodes if n not in after]:
            return False
        self.drained = after
        return True

    def undrain(self, node: str) -> bool:
        self._enter("undrain")
        return self.drained.pop(node, None) is not None

    def record_failure(self, node: str) -> NodeFailures:
        self._enter("record_failure")
        strikes = self.node_failures.get(node, (0, 0.0))[0] + 1
        self.node_failures[node] = (strikes, self.server_now)
        return NodeFailures(node, strikes, self.server_now, self.server_now)

    def failures(self) -> list[NodeFailures]:
        self._enter("failures")
        return [NodeFailures(n, s, at, self.server_now) for n, (s, at) in sorted(self.node_failures.items())]

    def forget_failures(self, node: str, strikes: int | None = None) -> bool:
        self._enter("forget_failures")
        kept = self.node_failures.get(node)
        if kept is None or (strikes is not None and kept[0] != strikes):
            return False
        del self.node_failures[node]
        return True
