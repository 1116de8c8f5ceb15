"""The keys of a service's section ``[scheduler_failover_service_NAME]``: name, parser, default, docs.

The same :class:`~.key.Key` as the main section's, in a registry of their own: the loader, the
``init`` template's example section and the README's service key table are built from it. A
default of None is either required (``start_command``, ``process_match``) or taken from the
scheduler's key or the cluster (see :mod:`.service_load`).
"""

from __future__ import annotations

import re

from . import parsers as p
from .key import Key

SERVICE_ENV_PREFIX = "AIRFLOW__SCHEDULER_FAILOVER_SERVICE_"  # + NAME + "__" + KEY, upper-cased
SERVICE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
REQUIRED = ("start_command", "process_match")

SERVICE_KEYS: dict[str, Key] = {
    key.name: key
    for key in (
        Key(
            "start_command",
            p.command,
            None,
            """\
Required. Command that starts the service, as airflow_scheduler_start_command: run by /bin/sh,
detached; ";;" separates commands; {node} is replaced by the node name.""",
            "required; run by `/bin/sh` in the background (`;;`, `{node}` as for the scheduler)",
            shown_default="required",
            sample="airflow triggerer",
            command=True,
        ),
        Key(
            "stop_command",
            p.command,
            "",
            "Command that stops the service. Empty: SIGTERM to every process tree, SIGKILL after stop_timeout.",
            "run by `/bin/sh`",
            shown_default="SIGTERM to every process tree, SIGKILL after `stop_timeout`",
            command=True,
        ),
        Key(
            "process_match",
            p.text,
            None,
            """\
Required. Words of the service's command line, as scheduler_process_match ({node}: the node).
No two services (the scheduler included) may match each other's processes.""",
            "required; words of the service's arguments, matching no other service's",
            shown_default="required",
            sample="airflow triggerer",
        ),
        Key(
            "start_timeout",
            p.positive,
            None,
            "Seconds to wait for a started service to show up. Default: scheduler_start_timeout.",
            "seconds to wait for a started service",
            shown_default="`scheduler_start_timeout`",
        ),
        Key(
            "stop_timeout",
            p.positive,
            None,
            """\
Seconds between SIGTERM and SIGKILL; its leash starts stopping it this long before the
deadline, by the same rule as scheduler_stop_timeout. Default: scheduler_stop_timeout.""",
            "SIGTERM → SIGKILL grace (the leash rule of `scheduler_stop_timeout`)",
            shown_default="`scheduler_stop_timeout`",
        ),
        Key(
            "health_url",
            p.text,
            "",
            "URL that answers 2xx while the service is healthy ({node}: the node). Empty: none.",
            "URL answering 2xx while healthy (`{node}` = node name)",
            shown_default="none",
        ),
        Key(
            "nodes",
            p.comma_list,
            None,
            "The masters it may run on, a subset of scheduler_nodes_in_cluster. Default: all of them.",
            "the masters it may run on (a subset of `scheduler_nodes_in_cluster`)",
            shown_default="all of them",
        ),
        Key(
            "colocate_with",
            p.text,
            "",
            """\
A service (scheduler allowed) whose node this one runs on: it follows that one, never moves it.""",
            "a service (or `scheduler`) it follows onto its node",
            shown_default="none",
            sample="scheduler",
        ),
        Key(
            "anti_colocate_with",
            p.comma_list,
            "",
            "Services (scheduler allowed), comma separated, it never shares a node with.",
            "services (or `scheduler`) it never shares a node with",
            shown_default="none",
        ),
    )
}

SERVICE_COMMAND_KEYS = frozenset(name for name, key in SERVICE_KEYS.items() if key.command)


def service_env_name(service: str, key: str) -> str:
    """The environment variable that sets ``key`` of ``service``."""
    return f"{SERVICE_ENV_PREFIX}{service.upper()}__{key.upper()}"
