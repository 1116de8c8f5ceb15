"""Wiping the ZooKeeper metastore (``clear``): the fleet's records, the scheduler's and every
service's. A mixin of ``ZooKeeperMetastore``, on top of the per-node records it also wipes."""

from __future__ import annotations

import contextlib
from typing import cast

from kazoo.exceptions import NoNodeError

from ..exceptions import CorruptRecord
from .zookeeper_nodes import ZooKeeperNodes
from .zookeeper_records import decode_placement, dump


class ZooKeeperWipe(ZooKeeperNodes):
    """``clear``, and the part of it each service's view does for its own records."""

    def clear(self) -> None:
        def go() -> None:
            deletes = [
                self.client.delete_async(self._p(parent, name))
                for parent in ("controllers", "events")
                for name in self._children(self._p(parent))
            ]
            deletes.append(self.client.delete_async(self._p("leader")))  # the epoch counter stays: tokens never go back
            for deleted in deletes:  # sent at once: a thousand events are not a thousand round trips
                with contextlib.suppress(NoNodeError):
                    self._wait(deleted)
            self._clear_service()
            for view in self._stored_services():
                view._clear_service()
            self._set(self._p("paused"), b"0")
            self._set(self._p("node_control"), b"")
            self._clear_drained()

        self._run(go)

    def _clear_service(self) -> None:
        """Wipe this store's service's own records: reports, failure counts, observations, the
        switchover request, and the placement (to nowhere, its version past every one it held).

        A record that is missing (a service whose setup never finished) is skipped: there is
        nothing in it to wipe, and setup creates it afresh.
        """
        with contextlib.suppress(NoNodeError):
            names = self._children(self._p("reports"))
            deletes = [self.client.delete_async(self._p("reports", name)) for name in names]
            for deleted in deletes:
                with contextlib.suppress(NoNodeError):
                    self._wait(deleted)
        self._clear_failures()
        with contextlib.suppress(NoNodeError):
            raw, stat = self._get(self._p("placement"))
            try:
                placement = decode_placement(self._p("placement"), raw, stat, 0.0)
                epoch, version = placement.epoch, placement.version
            except CorruptRecord:
                # The znode's own version grows with every write of it, changes of node included:
                # past every version its data ever held.
                epoch, version = 0, int(stat.version)
            data = {"node": None, "epoch": epoch, "version": version + 1, "ttl": 0}
            self._set(self._p("placement"), dump(data), stat.version)
        for name, empty in (("observations", b"{}"), ("switchover", b"")):
            with contextlib.suppress(NoNodeError):
                self._set(self._p(name), empty)

    def _stored_services(self) -> list[ZooKeeperWipe]:
        """The views of the services with records in the store (none in one a release without services set up)."""
        from .zookeeper import ZooKeeperMetastore
        from .zookeeper_services import service_view, stored_services

        store = cast(ZooKeeperMetastore, self)  # the class this is mixed into
        return [service_view(store, name) for name in stored_services(store)]
