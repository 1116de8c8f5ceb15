"""The controller's events: each recorded in the history and queued for ``event_command``.

A mixin of ``Controller`` (first among its bases, so its ``_event`` is the one the others call).
"""

from __future__ import annotations

import logging

from ..config.services import SCHEDULER
from ..event_hook import EventHook
from ..exceptions import MetastoreError
from ..metastore.base import Metastore
from ..metastore.events import EventKind
from .term import Term

log = logging.getLogger("scheduler_failover_controller.controller")


class Recording:
    """``_event``: the history's entry, then ``event_command``'s (also when the store is down: a
    self-fence happens then)."""

    store: Metastore
    host: str
    term: Term
    hooks: EventHook
    service: str

    def _event(
        self, kind: EventKind, message: str, request_id: str = "", *, node: str = "", from_node: str = ""
    ) -> None:
        """Record ``kind``; ``node``: the node it is about, ``from_node``: where the scheduler came from."""
        epoch = self.term.epoch
        if self.service != SCHEDULER:  # the store's view stamps the event; its reader sees the name too
            message = f"[{self.service}] {message}"
        try:
            self.store.add_event(self.host, kind, message, epoch, request_id)
        except MetastoreError as exc:
            log.warning("could not record %s event: %s", kind, exc)
        self.hooks.emit(kind, message, node, from_node, epoch)
