"""What the ZooKeeper metastore's mixins call on the class they are mixed into.

Declared for the type checker only: at run time ``ZooKeeperMetastore`` and ``ZooKeeperSession``
provide them, after the mixins in the method resolution order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

T = TypeVar("T")


class ZooKeeperCalls:
    """The client, its ACL, and the store's request helpers (see ``zookeeper.py``)."""

    client: Any
    acl: Any

    if TYPE_CHECKING:

        def _run(self, fn: Callable[[], T]) -> T: ...

        def _p(self, *parts: str) -> str: ...

        def _wait(self, pending: Any) -> Any: ...

        def _get(self, path: str) -> tuple[bytes, Any]: ...

        def _get_synced(self, path: str) -> tuple[bytes, Any]: ...

        def _set(self, path: str, data: bytes, version: int = -1) -> Any: ...

        def _children(self, path: str) -> list[str]: ...

        def _server_now(self) -> float: ...

        def _fence(self, tx: Any, holder: str, epoch: int) -> bool: ...

        def _commit(self, tx: Any) -> bool: ...
