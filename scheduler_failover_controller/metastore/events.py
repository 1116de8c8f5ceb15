"""What the event history holds: the kinds of events, and the ids that tie a switchover request to its outcome.

Kinds are stored as their exact strings: releases before this enum wrote the same strings,
and ``history --json`` shows them. A kind this release does not know (a newer release may write
one) is read back as the plain string it is, never as an error.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from ..strenum import StrEnum
from . import rows

REQUEST_ID_LIMIT = 32  # characters of a switchover request's id kept (the SQL column; with a node name, within a row)
_REQUEST_ID = re.compile(r"[0-9A-Za-z_.-]*")  # one word: the SQL store keeps it before the request, space-separated


class EventKind(StrEnum):
    """Every kind of event a controller or the CLI writes to the history."""

    ELECTED = "elected"  # a controller became active (a new term)
    ADOPT = "adopt"  # the active took a scheduler already running as the placed one
    START = "start"  # the active placed and started the scheduler
    START_FAILED = "start_failed"  # a start did not bring the scheduler up
    RESTART = "restart"  # the scheduler restarted in place
    MOVE = "move"  # the scheduler moved to another node (a failover)
    KILL = "kill"  # stray schedulers stopped
    FENCE = "fence"  # a node fenced: its own scheduler stopped by its deadline, or fence_command run
    ALERT = "alert"  # an alert sent
    DUPLICATE = "duplicate"  # two controllers ran as one host
    STEP_DOWN = "step-down"  # an active that cannot see its own node left the lease to one that can
    STOP = "stop"  # a controller stopped, and what it released
    PAUSE = "pause"  # maintenance mode on (CLI)
    RESUME = "resume"  # maintenance mode off (CLI)
    SWITCHOVER = "switchover"  # a switchover requested (CLI)
    NODE_CONTROL = "node_control"  # the cluster's node_control changed (CLI, while paused)
    DRAIN = "drain"  # a node drained (CLI): no scheduler is placed there
    UNDRAIN = "undrain"  # a node's drain removed (CLI)
    # How the active carried out a switchover request (see SWITCHOVER_OUTCOMES).
    SWITCHOVER_DONE = "switchover_done"
    SWITCHOVER_REFUSED = "switchover_refused"
    SWITCHOVER_FAILED = "switchover_failed"


#: The kinds that answer a switchover request: the CLI judges the outcome by the kind alone.
SWITCHOVER_OUTCOMES = frozenset({EventKind.SWITCHOVER_DONE, EventKind.SWITCHOVER_REFUSED, EventKind.SWITCHOVER_FAILED})


def event_kind(text: str) -> EventKind | str:
    """A stored kind as a member of :class:`EventKind`; one this release does not know, as written."""
    try:
        return EventKind(text)
    except ValueError:
        return text


def new_request_id() -> str:
    """A fresh id for a switchover request: unique across CLIs and hosts."""
    return uuid.uuid4().hex[:16]


def request_id(where: str, value: Any) -> str:
    """A switchover request's id as kept: one word of letters, digits and ``_.-``, or '' (none)."""
    word = rows.text(where, value, REQUEST_ID_LIMIT)
    if not _REQUEST_ID.fullmatch(word):
        raise rows.corrupt(where, "is not a request id (letters, digits, _.-)", value)
    return word
