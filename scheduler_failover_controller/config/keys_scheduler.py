"""The scheduler's keys: which processes are it, whose, how it is started and stopped, restarts and fencing.

Assembled by :mod:`.keys`, in this order.
"""

from __future__ import annotations

from . import parsers as p
from .key import DERIVED_TIMEOUT, Key

SCHEDULER_KEYS = (
    Key(
        "scheduler_process_match",
        p.text,
        "airflow scheduler",
        """\
Words of a scheduler's command line, matched against each process's arguments.
{node} is replaced by the node name.""",
        "words of a scheduler's arguments (`{node}` = node name)",
    ),
    Key(
        "scheduler_user",
        p.user,
        "",
        """\
The user whose processes count as the scheduler (a name or uid). Empty: the controller's own.
A process below this controller's leash counts whatever its user (a start command may switch
user); any other matching process is foreign: reported, never adopted or signalled.""",
        "the user whose processes count as the scheduler (default: the controller's own)",
        shown_default="the controller's own",
    ),
    Key(
        "airflow_scheduler_start_command",
        p.command,
        "",
        """\
Command that starts the scheduler (run by /bin/sh, detached). Empty: run `airflow scheduler`
detached, its output appended to state_dir/scheduler.log. ";;" separates commands as in 2016.""",
        "run by `/bin/sh` in the background; `;;` separates commands as in 2016",
        shown_default="`airflow scheduler`, detached",
        command=True,
        since_2016=True,
    ),
    Key(
        "airflow_scheduler_stop_command",
        p.command,
        "",
        """\
Command that stops the scheduler. Empty: SIGTERM to every scheduler process tree,
SIGKILL after scheduler_stop_timeout.""",
        "run by `/bin/sh`; a `kill -9` in it is run as written, with a warning at start",
        shown_default="SIGTERM to every process tree, SIGKILL after `scheduler_stop_timeout`",
        command=True,
        since_2016=True,
    ),
    Key(
        "scheduler_start_timeout",
        p.positive,
        "60",
        "Seconds to wait for a started scheduler to show up before the start counts as failed.",
        "seconds to wait for a started scheduler",
    ),
    Key(
        "scheduler_stop_timeout",
        p.positive,
        None,
        """\
Seconds between SIGTERM and SIGKILL when stopping. Must be < lease_ttl - renewal interval.
The leash beside each scheduler starts stopping it this long before its placement deadline.
Default: min(10, (lease_ttl - renewal interval) / 4).""",
        "SIGTERM → SIGKILL grace; the leash starts stopping this long before the deadline",
        shown_default=DERIVED_TIMEOUT.format(cap=10) + ", shrunk to fit the leash rule",
    ),
    Key(
        "max_restart_attempts",
        p.count,
        "3",
        "Failed restarts in place before the scheduler is moved to another node.",
        "restarts in place before a move",
    ),
    Key(
        "retry_count_before_alerting",
        p.count,
        "5",
        "Failed start attempts before an alert is sent (once per incident). Every move alerts too.",
        "failures before the (single) incident alert; every move alerts",
        since_2016=True,
    ),
    Key(
        "move_backoff",
        p.positive,
        None,
        """\
Seconds a node that failed to start the scheduler is avoided as a move target (doubles on
every further failure, up to 8x). Default: max(3 x poll_frequency, 5).""",
        "seconds a node that failed to start is avoided (doubles, up to 8×)",  # noqa: RUF001
        shown_default="max(3 × poll, 5)",  # noqa: RUF001
    ),
    Key(
        "fence_command",
        p.command,
        "",
        """\
Command run locally with the node name as its last argument to power off a node that cannot
be reached (STONITH). Exit 0 must mean that nothing on that node can run any more (powered
off, VM stopped, container killed), never merely that it is cut off: the scheduler then moves
off it at once, without waiting for its placement to expire. Empty: none.""",
        "run with the node name to power off an unreachable node; exit 0: nothing there can run (README, Fencing)",
        command=True,
    ),
    Key(
        "services",
        p.comma_list,
        "",
        """\
Singleton daemons kept beside the scheduler, each exactly once (Airflow's triggerer, celery
beat, ...): comma separated names, each configured in a section
[scheduler_failover_service_NAME] (start_command, stop_command, process_match, nodes, ...).
Empty: the scheduler alone.""",
        "other singleton daemons, each in `[scheduler_failover_service_NAME]`",
        field="service_names",
    ),
)
