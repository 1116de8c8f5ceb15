"""The keys of where the scheduler goes: preference and failback, and how long failed starts count.

Assembled by :mod:`.keys`, after the scheduler's keys.
"""

from __future__ import annotations

from . import parsers as p
from .key import Key

PLACEMENT_KEYS = (
    Key(
        "failback",
        p.boolean,
        "false",
        """\
The order of scheduler_nodes_in_cluster is the preference: a new placement goes to the most
preferred node that can take it. true: the scheduler also moves back, by a controlled switchover,
to a more preferred node once that node has been seen healthy (reachable, empty, no failed start
kept) for failback_delay seconds. false: it stays where it runs.""",
        "move the scheduler back to a more preferred node (list order) once that node is healthy",
    ),
    Key(
        "failback_delay",
        p.positive,
        "60",
        "Seconds a more preferred node must be seen healthy, without a break, before a failback to it.",
        "seconds a more preferred node must be healthy before a failback",
    ),
    Key(
        "failure_timeout",
        p.off_or_seconds,
        "600",
        """\
Seconds after a node's last failed start when its failed starts (and the doubling of its
move_backoff) are forgotten; kept in the metastore, so a new active controller inherits them.
0: never (as Pacemaker's failure-timeout).""",
        "seconds after a node's last failed start before its failures are forgotten (0: never)",
    ),
)
