"""The ZooKeeper metastore's controller registry (``controllers/<host>``, JSON; its mtime is the
heartbeat) and the active's observations (one ``observations`` znode, written fenced by its epoch).
A mixin of ``ZooKeeperMetastore``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from .base import ControllerInfo, Observation, capped, foreign_rows
from .zookeeper_records import decode_controller, decode_observations, dump, load_json

T = TypeVar("T")


class ZooKeeperRegistry:
    """``heartbeat``, ``deregister``, ``controllers``, ``record_observations`` and ``observations`` on znodes."""

    client: Any
    acl: Any

    if TYPE_CHECKING:  # ZooKeeperMetastore's and ZooKeeperSession's, which come after this mixin

        def _run(self, fn: Callable[[], T]) -> T: ...

        def _p(self, *parts: str) -> str: ...

        def _wait(self, pending: Any) -> Any: ...

        def _get(self, path: str) -> tuple[bytes, Any]: ...

        def _set(self, path: str, data: bytes, version: int = -1) -> Any: ...

        def _children(self, path: str) -> list[str]: ...

        def _server_now(self) -> float: ...

        def _fence(self, tx: Any, holder: str, epoch: int) -> bool: ...

        def _commit(self, tx: Any) -> bool: ...

    def heartbeat(self, info: ControllerInfo) -> None:
        path = self._p("controllers", info.host)
        value = {
            "holder": info.holder,
            "pid": info.pid,
            "version": info.version,
            "role": info.role,
            "paused": info.paused,
            "leashed": info.leashed,
        }

        def go() -> None:
            try:
                self._set(path, dump(value))
            except NoNodeError:
                try:
                    self._wait(self.client.create_async(path, dump(value), acl=self.acl))
                except NodeExistsError:
                    self._set(path, dump(value))

        self._run(go)

    def deregister(self, host: str, holder: str) -> None:
        def go() -> None:
            path = self._p("controllers", host)
            try:
                data, stat = self._get(path)
                if load_json(data).get("holder") == holder:
                    self._wait(self.client.delete_async(path, stat.version))
            except (NoNodeError, BadVersionError):
                pass

        self._run(go)

    def controllers(self) -> list[ControllerInfo]:
        def go() -> list[ControllerInfo]:
            now = self._server_now()
            found = []
            for host in sorted(self._children(self._p("controllers"))):
                try:
                    data, stat = self._get(self._p("controllers", host))
                except NoNodeError:
                    continue
                found.append(decode_controller(self._p("controllers", host), host, data, stat, now))
            return found

        return self._run(go)

    def record_observations(self, holder: str, epoch: int, observations: list[Observation]) -> bool:
        def go() -> bool:
            tx = self.client.transaction()
            if not self._fence(tx, holder, epoch):
                return False
            data = {
                o.node: {
                    "state": o.state,
                    "pids": list(o.pids),
                    "detail": capped(o.detail),
                    "by": o.by_host,
                    "leashed": o.leashed,
                    "foreign": foreign_rows(o.foreign),
                }
                for o in observations
            }
            tx.set_data(self._p("observations"), dump(data))
            return self._commit(tx)

        return self._run(go)

    def observations(self) -> list[Observation]:
        def go() -> list[Observation]:
            now = self._server_now()
            path = self._p("observations")
            data, stat = self._get(path)
            return decode_observations(path, data, float(stat.mtime) / 1000.0, now)

        return self._run(go)
