"""The ZooKeeper metastore's per-node records: ``drained`` (one JSON object, node -> request id,
written by compare-and-set on its version) and ``failures/<node>`` (JSON ``{"strikes": n}``; its
mtime is the server time of the last failed start). A mixin of ``ZooKeeperMetastore``."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from ..exceptions import MetastoreError
from . import rows
from .nodestate import NodeFailures, NodeStateStore, drained_entry
from .zookeeper_calls import ZooKeeperCalls
from .zookeeper_records import dump, field

TRIES = 5  # compare-and-set rounds before a write gives up as raced (a few writers at most: CLIs, the active)


def decode_drained(path: str, data: bytes) -> dict[str, str]:
    """The ``drained`` znode's nodes and their requests' ids ({} when empty)."""
    where = f"znode {path}"
    value = rows.json_object(where, data or b"{}")
    return dict(drained_entry(f"{where} entry", node, request) for node, request in sorted(value.items()))


class ZooKeeperNodes(NodeStateStore, ZooKeeperCalls):
    """``drain``, ``undrain``, ``record_failure``, ``failures``, ``forget_failures`` on znodes."""

    def read_drained(self) -> dict[str, str]:
        """The drained nodes (part of ``read_state``); {} in a store set up by a release without drains."""
        try:
            return decode_drained(self._p("drained"), self._get(self._p("drained"))[0])
        except NoNodeError:
            return {}

    def _change_drained(self, change: Any) -> bool:
        """Apply ``change`` (drained dict -> new dict, or None: nothing to write, False) by compare-and-set."""
        path = self._p("drained")
        for _ in range(TRIES):
            try:
                raw, stat = self._get_synced(path)
            except NoNodeError:
                with contextlib.suppress(NodeExistsError):
                    self._wait(self.client.create_async(path, b"{}", acl=self.acl))
                continue
            new = change(decode_drained(path, raw))
            if new is None:
                return False
            try:
                self._set(path, dump(new), stat.version)
                return True
            except BadVersionError:
                continue
        raise MetastoreError(f"znode {path} kept changing during the drain; try again")

    def drain(self, node: str, nodes: Sequence[str], request_id: str = "") -> bool:
        def change(drained: dict[str, str]) -> dict[str, str] | None:
            after = {**drained, node: request_id}
            return after if [x for x in nodes if x not in after] else None

        return self._run(lambda: self._change_drained(change))

    def undrain(self, node: str) -> bool:
        def change(drained: dict[str, str]) -> dict[str, str] | None:
            return {k: v for k, v in drained.items() if k != node} if node in drained else None

        return self._run(lambda: self._change_drained(change))

    def _failure(self, node: str) -> tuple[NodeFailures, Any]:
        path = self._p("failures", node)
        data, stat = self._get(path)
        where = f"znode {path}"
        strikes = rows.integer(f"{where} field strikes", field(where, rows.json_object(where, data), "strikes"))
        return NodeFailures(node, strikes, float(stat.mtime) / 1000.0), stat

    def record_failure(self, node: str) -> NodeFailures:
        path = self._p("failures", node)

        def go() -> NodeFailures:
            for _ in range(TRIES):
                try:
                    before, stat = self._failure(node)
                except NoNodeError:
                    try:
                        self._wait(self.client.create_async(path, dump({"strikes": 1}), acl=self.acl))
                    except NodeExistsError:
                        continue
                else:
                    try:
                        self._set(path, dump({"strikes": before.strikes + 1}), stat.version)
                    except BadVersionError:
                        continue
                found, _ = self._failure(node)
                return NodeFailures(node, found.strikes, found.last_at, found.last_at)
            raise MetastoreError(f"znode {path} kept changing while a failed start was counted")

        return self._run(go)

    def failures(self) -> list[NodeFailures]:
        def go() -> list[NodeFailures]:
            try:
                names = sorted(self._children(self._p("failures")))
            except NoNodeError:
                return []
            if not names:
                return []
            now = self._server_now()
            found = []
            for node in names:
                rows.name(f"znode {self._p('failures', node)}", node)
                try:
                    failure, _ = self._failure(node)
                except NoNodeError:
                    continue
                found.append(NodeFailures(node, failure.strikes, failure.last_at, now))
            return found

        return self._run(go)

    def forget_failures(self, node: str, strikes: int | None = None) -> bool:
        def go() -> bool:
            try:
                found, stat = self._failure(node)
            except NoNodeError:
                return False
            if strikes is not None and found.strikes != strikes:
                return False
            try:
                self._wait(self.client.delete_async(self._p("failures", node), stat.version))
            except (NoNodeError, BadVersionError):
                return False
            return True

        return self._run(go)

    def _clear_failures(self) -> None:
        """Drop every failure count of this store's service (part of ``clear``)."""
        try:
            names = self._children(self._p("failures"))
        except NoNodeError:
            names = []
        deletes = [self.client.delete_async(self._p("failures", node)) for node in names]
        for deleted in deletes:
            with contextlib.suppress(NoNodeError):
                self._wait(deleted)

    def _clear_drained(self) -> None:
        """Drop every drain, the fleet's (part of ``clear``)."""
        with contextlib.suppress(NoNodeError):
            self._set(self._p("drained"), b"{}")
