"""What the controllers of one daemon process share: one holder, so one lease and one epoch.

A daemon runs one controller per service (the scheduler's and one for each name in ``services``).
They all hold the fleet's single leadership lease under the same holder, so each one's
``acquire_or_renew`` is a renewal of the same term, never a new one while it has not lapsed.

Two calls of one holder may overlap (two services' cycles, a cycle and a renewal). SQL runs each
as one atomic update: the second renews what the first took. ZooKeeper's takes a free lease with
a transaction, and of two such at once one loses, which would read as "another holds it". So a
call that found the lease taken while a twin's call overlapped it asks once more: by then the
twin's term is there, and this call renews it. No lock is held across a store call (the cycle
never waits for a renewal's call in flight).
"""

from __future__ import annotations

import secrets
import threading
from typing import TYPE_CHECKING

from ..metastore.base import Lease, Metastore

if TYPE_CHECKING:
    from .cycle import Controller


class LeaseCalls:
    """The lease calls of one holder, counted so that one which overlapped a twin can tell."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the counts only; never held across a store call
        self._in_flight = 0
        self._begun = 0  # calls begun, ever

    def acquire(self, store: Metastore, holder: str, host: str, ttl: float) -> Lease | None:
        """``store.acquire_or_renew``, asked once more when it found the lease taken while a call of
        this holder overlapped it (that call may have taken it). Raises MetastoreError."""
        with self._lock:
            self._in_flight += 1
            self._begun += 1
            begun, overlapped = self._begun, self._in_flight > 1
        try:
            lease = store.acquire_or_renew(holder, host, ttl)
        finally:
            with self._lock:
                self._in_flight -= 1
                overlapped = overlapped or self._begun != begun
        if lease is None and overlapped:
            lease = store.acquire_or_renew(holder, host, ttl)
        return lease


class Fleet:
    """The holder every controller of this process leads under, and the controllers themselves."""

    def __init__(self, host: str, pid: int) -> None:
        # Unique per process incarnation: a restarted controller is a new holder.
        self.holder = f"{host}:{pid}:{secrets.token_hex(4)}"
        self.lease_calls = LeaseCalls()
        self.members: list[Controller] = []  # every service's controller, the scheduler's first
        # False once a service's controller could not shut down in time: the lease is left to expire.
        self.release_lease = True

    def join(self, controller: Controller) -> str:
        """Count ``controller`` in; the holder it leads under."""
        self.members.append(controller)
        return self.holder

    def leashed(self) -> bool:
        """Whether this node runs only leashed processes of every service (the registry row's
        ``leashed``: what an active elsewhere may assume of this node when it cannot reach it)."""
        return all(member.blind.leashed for member in self.members)
