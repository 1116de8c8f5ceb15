"""The ZooKeeper metastore's self-mode records: ``reports/<node>`` (JSON; its mtime is when it was
written) and ``node_control``. A mixin of ``ZooKeeperMetastore``.

A report is written with the version of the znode it read (a compare-and-set), after checking the
stored ``seq`` is lower; a write that loses that race reads again. ``node_control`` is set in a
transaction that checks the ``paused`` znode's version as read (paused).
"""

from __future__ import annotations

from typing import Any

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from . import rows
from .base import TEXT_LIMIT, capped, foreign_rows
from .reports import NodeReport, ReportStore, node_control_value
from .zookeeper_calls import ZooKeeperCalls
from .zookeeper_records import dump, field


def decode_report(path: str, node: str, data: bytes, stat: Any, now: float) -> NodeReport:
    where = f"znode {path}"
    rows.name(where, node)  # the znode's own name is the node
    value = rows.json_object(where, data)

    def get(key: str) -> Any:
        return field(where, value, key)

    def at(key: str) -> str:
        return f"{where} field {key}"

    return NodeReport(
        node=node,
        holder=rows.holder(at("holder"), get("holder")),
        state=rows.label(at("state"), get("state"), 32),
        pids=rows.pids(at("pids"), get("pids")),
        leashed=rows.flag(at("leashed"), get("leashed")),
        foreign=rows.foreign(at("foreign"), get("foreign")),
        detail=rows.text(at("detail"), get("detail"), TEXT_LIMIT),
        answers=rows.integer(at("answers"), get("answers")),
        started_for=rows.integer(at("started_for"), get("started_for")),
        seq=rows.integer(at("seq"), get("seq")),
        observed_at=float(stat.mtime) / 1000.0,
        server_now=now,
    )


class ZooKeeperReports(ReportStore, ZooKeeperCalls):
    """``write_report``, ``reports``, ``claim_node_control``, ``set_node_control`` on znodes."""

    def write_report(self, report: NodeReport) -> bool:
        path = self._p("reports", report.node)
        data = dump(
            {
                "holder": report.holder,
                "state": report.state,
                "pids": list(report.pids),
                "leashed": report.leashed,
                "foreign": foreign_rows(report.foreign),
                "detail": capped(report.detail),
                "answers": report.answers,
                "started_for": report.started_for,
                "seq": report.seq,
            }
        )

        def go() -> bool:
            for _ in range(3):  # each lost race reads again; three are plenty for one writer per node
                try:
                    raw, stat = self._get(path)
                except NoNodeError:
                    try:
                        self._wait(self.client.create_async(path, data, acl=self.acl))
                        return True
                    except NodeExistsError:
                        continue
                stored = decode_report(path, report.node, raw, stat, 0.0)
                if stored.seq >= report.seq:
                    return False
                try:
                    self._set(path, data, stat.version)
                    return True
                except BadVersionError:
                    continue
            return False

        return self._run(go)

    def reports(self) -> list[NodeReport]:
        def go() -> list[NodeReport]:
            now = self._server_now()
            found = []
            for node in sorted(self._children(self._p("reports"))):
                path = self._p("reports", node)
                try:
                    data, stat = self._get(path)
                except NoNodeError:
                    continue
                found.append(decode_report(path, node, data, stat, now))
            return found

        return self._run(go)

    def read_node_control(self) -> str | None:
        path = self._p("node_control")
        return self._run(lambda: node_control_value(f"znode {path}", self._get_synced(path)[0]))

    def claim_node_control(self, value: str) -> str:
        path = self._p("node_control")

        def go() -> str:
            for _ in range(3):
                raw, stat = self._get_synced(path)  # the value a controller starts by: never a follower's stale one
                recorded = node_control_value(f"znode {path}", raw)
                if recorded is not None:
                    return recorded
                try:
                    self._set(path, value.encode(), stat.version)
                    return value
                except BadVersionError:
                    continue
            return node_control_value(f"znode {path}", self._get(path)[0]) or value

        return self._run(go)

    def set_node_control(self, value: str) -> bool:
        def go() -> bool:
            raw, stat = self._get(self._p("paused"))
            if not rows.paused(f"znode {self._p('paused')}", raw):
                return False
            tx = self.client.transaction()
            tx.check(self._p("paused"), stat.version)
            tx.set_data(self._p("node_control"), value.encode())
            return self._commit(tx)

        return self._run(go)
