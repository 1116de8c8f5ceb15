"""What a leash is told by its starter: the ``SFC_LEASH_*`` variables, and the scheduler's environment."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..ownership import expected_uid
from ..probe import MATCH_ENV, STATE_DIR_ENV
from .records import LEASH_MODULE

ENV_PREFIX = "SFC_LEASH_"
ENV_NODE = ENV_PREFIX + "NODE"
ENV_STATE_DIR = ENV_PREFIX + "STATE_DIR"
ENV_COMMAND = ENV_PREFIX + "COMMAND"
ENV_STOP_COMMAND = ENV_PREFIX + "STOP_COMMAND"
ENV_STOP_TIMEOUT = ENV_PREFIX + "STOP_TIMEOUT"
ENV_TTL = ENV_PREFIX + "TTL"
ENV_DEADLINE = ENV_PREFIX + "DEADLINE"
ENV_LINGER = ENV_PREFIX + "LINGER"
ENV_TOKEN = ENV_PREFIX + "TOKEN"
ENV_USER = ENV_PREFIX + "USER"

#: how a leash is started on this machine
LOCAL_ARGV = (sys.executable, "-m", LEASH_MODULE)
#: the hidden CLI subcommand that execs the same on another node (``ssh_remote_command leash``)
CLI_SUBCOMMAND = "leash"
SERVE_BANNER = "sfc-leash-serve 1"


# --- what the starter passes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """What a leash is told by its starter, in the environment (never on its command line)."""

    node: str
    state_dir: Path
    command: str  # run by /bin/sh -c
    stop_command: str  # empty: SIGTERM
    stop_timeout: float
    ttl: float
    deadline: float  # time.monotonic() on this host
    match: str  # scheduler_process_match for the node
    linger: float  # seconds to wait for a handed-off scheduler (scheduler_start_timeout)
    token: str = ""
    #: whose matching processes a watching leash watches and stops (scheduler_user: a name or uid;
    #: empty: the leash's own user): the ownership rule, as for a probe
    user: str = ""

    @property
    def uid(self) -> int:
        """The uid ``user`` names on this machine."""
        return expected_uid(self.user)

    def environment(self) -> dict[str, str]:
        """The variables that carry this spec (see :meth:`from_env`)."""
        return {
            ENV_NODE: self.node,
            ENV_STATE_DIR: str(self.state_dir),
            ENV_COMMAND: self.command,
            ENV_STOP_COMMAND: self.stop_command,
            ENV_STOP_TIMEOUT: repr(float(self.stop_timeout)),
            ENV_TTL: repr(float(self.ttl)),
            ENV_DEADLINE: repr(float(self.deadline)),
            MATCH_ENV: self.match,
            ENV_LINGER: repr(float(self.linger)),
            ENV_TOKEN: self.token,
            ENV_USER: self.user,
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Spec:
        """Read the spec; ValueError naming what is missing or wrong."""

        def text(name: str, required: bool = True) -> str:
            value = env.get(name, "")
            if required and not value:
                raise ValueError(f"{name} is not set")
            return value

        def number(name: str, positive: bool = True) -> float:
            raw = text(name)
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name} is not a number") from None
            if not math.isfinite(value) or (positive and value <= 0):
                raise ValueError(f"{name} must be a positive number")
            return value

        user = text(ENV_USER, required=False)
        try:
            expected_uid(user)
        except ValueError as exc:
            raise ValueError(f"{ENV_USER}: {exc}") from None
        return cls(
            node=text(ENV_NODE),
            state_dir=Path(text(ENV_STATE_DIR)),
            command=text(ENV_COMMAND),
            stop_command=text(ENV_STOP_COMMAND, required=False),
            stop_timeout=number(ENV_STOP_TIMEOUT),
            ttl=number(ENV_TTL),
            deadline=number(ENV_DEADLINE, positive=False),
            match=text(MATCH_ENV, required=False),
            linger=number(ENV_LINGER),
            token=text(ENV_TOKEN, required=False),
            user=user,
        )


# --- what the scheduler may see ---------------------------------------------------------------------

#: Variables only the controller reads: its own settings (``AIRFLOW__SCHEDULER_FAILOVER__KEY``, and
#: their ``_CMD``/``_SECRET`` forms: webhook URLs, the ZooKeeper digest, the metastore URL), its config
#: path, this project's ``SFC_*`` instructions, and systemd's channel to the controller's unit. Every
#: DAG a scheduler parses could read them in its environment; Airflow needs none of them (its own
#: ``AIRFLOW__*``, ``AIRFLOW_CONN_*``, ``PYTHONPATH``, ``PATH``, ... pass, ``AIRFLOW__SMTP__*`` too).
CONTROLLER_PREFIXES = ("AIRFLOW__SCHEDULER_FAILOVER", "SFC_")
CONTROLLER_NAMES = frozenset(
    {"SCHEDULER_FAILOVER_CONTROLLER_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", MATCH_ENV, STATE_DIR_ENV}
)


def controller_only(name: str) -> bool:
    """Whether variable ``name`` is the controller's own (see ``CONTROLLER_PREFIXES``)."""
    return name.upper().startswith(CONTROLLER_PREFIXES) or name in CONTROLLER_NAMES


def scrubbed_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without what only the controller reads: what a leash is started with (plus its spec)."""
    return {k: v for k, v in env.items() if not controller_only(k)}


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment of the scheduler (and of its stop command): the leash's without its
    instructions, and without anything only the controller reads, should a starter have passed it."""
    return scrubbed_environment(env)
