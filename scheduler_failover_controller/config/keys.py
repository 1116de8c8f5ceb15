"""The one registry of the ``[scheduler_failover]`` keys: name, parser, default and documentation.

Everything else that lists the keys is built from :data:`KEYS`: the loader (which keys exist,
how each is parsed, its default), the :class:`~.model.Config` construction, the ``init``
template and the README's key table (see :mod:`.docs`; a unit test keeps the README and
``config/scheduler_failover_controller.cfg`` equal to what is built here).

Adding a key: write one ``Key(...)`` below (name, parser, default, template comment, README
summary; ``shown_default`` when the default is derived, ``command``/``redact`` when it is a shell
command or a secret) and the typed attribute of the same name in ``Config`` (``model.py``: a unit
test fails until the two agree; mypy needs the attribute written out). A check that involves
other keys goes in the ``load`` stage it belongs to. Then run ``scripts/config_docs.py``: it
rewrites the README's table and ``config/scheduler_failover_controller.cfg``, which a unit test
compares with this registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..redaction import MASK, redact_url, redact_webhook
from . import parsers as p

SECTION = "scheduler_failover"
THIS_HOST = "<this host>"  # a template sample replaced by the host ``init`` runs on


def _mask_auth(value: str) -> str:
    return value.split(":", 1)[0] + ":" + MASK if value else value


@dataclass(frozen=True)
class Key:
    """One config key.

    ``default`` is the raw text parsed when the key is not set; None means the loader derives the
    value (from other keys, the host, Airflow's settings). ``doc`` is the comment above the key in
    the ``init`` template; ``summary`` and ``shown_default`` are its README table row (the latter
    when the raw default is not what a reader needs, e.g. a derived one).
    """

    name: str
    parse: Callable[[str], Any]
    default: str | None
    doc: str
    summary: str
    shown_default: str = ""
    field: str = ""  # the Config attribute, when it is not the key's name
    sample: str | None = None  # the value written in the template, when not the default
    commented: bool | None = None  # written as "# key = ..." in the template (default: when derived)
    command: bool = False  # a shell command: an indented continuation line is a second command
    redact: Callable[[Any], Any] | None = None  # a secret: how Config.redacted() shows it
    since_2016: bool = False  # a key of the 2016 controller, kept with the same meaning

    @property
    def attribute(self) -> str:
        """The name of this key's :class:`~.model.Config` attribute."""
        return self.field or self.name

    @property
    def in_comment(self) -> bool:
        """Whether the template writes this key commented out."""
        return self.default is None if self.commented is None else self.commented

    @property
    def readme_default(self) -> str:
        """The default as the README's table shows it."""
        if self.shown_default:
            return self.shown_default
        return f"`{self.default}`" if self.default else "empty"


# Airflow's [smtp] keys (and AIRFLOW__SMTP__<KEY>), read for alert email; SmtpConfig field = key less "smtp_".
SMTP_KEYS: dict[str, Callable[[str], Any]] = {
    "smtp_host": p.text,
    "smtp_port": p.tcp_port,
    "smtp_starttls": p.boolean,
    "smtp_ssl": p.boolean,
    "smtp_user": p.text,
    "smtp_password": p.text,
    "smtp_mail_from": p.text,
    "smtp_timeout": p.positive,
}

# The README writes a minus sign and a times sign in its formulas (RUF001: meant, not look-alikes).
_DERIVED_TIMEOUT = "min({cap}, (lease_ttl − renewal interval)/4)"  # noqa: RUF001

_REGISTRY = (
    Key(
        "scheduler_nodes_in_cluster",
        p.comma_list,
        None,
        "Every master node that may run the scheduler, comma separated. Each runs a controller.",
        "master nodes, comma separated",
        shown_default="this host",
        field="nodes",
        sample=THIS_HOST,
        commented=False,
        since_2016=True,
    ),
    Key(
        "current_host",
        p.text,
        None,
        "This node's name as it appears in scheduler_nodes_in_cluster (default: the hostname).",
        "this node's name in that list",
        shown_default="hostname",
        sample=THIS_HOST,
    ),
    Key(
        "local_nodes",
        p.comma_list,
        None,
        """\
Nodes whose scheduler processes are visible from this machine (same host / PID namespace).
The controller's own node is always local. Other nodes are reached over SSH.""",
        "nodes whose processes this machine sees (single-host setups, tests)",
        shown_default="`current_host`",
    ),
    Key(
        "metadata_service_type",
        p.service,
        p.SQL_SERVICE,
        """\
Where the lease and the cluster state live.
  SQLMetadataService (alias: sql)  - SQLAlchemy: embedded SQLite, MySQL/MariaDB, PostgreSQL
  ZookeeperMetadataService (alias: zookeeper)""",
        "`SQLMetadataService`/`sql`, or `ZookeeperMetadataService`/`zookeeper`",
        since_2016=True,
    ),
    Key(
        "metadata_service_sql_conn",
        p.text,
        None,
        """\
SQLAlchemy URL of the metastore. Default: Airflow's own sql_alchemy_conn from this file's
[database] or [core] section, else an embedded SQLite file in state_dir (one host only).
Example: mysql+pymysql://sfc:secret@db.example.com:3306/airflow
Or metadata_service_sql_conn_cmd (a command printing it) or _file (a private file holding it).""",
        "SQLAlchemy URL",
        shown_default="Airflow's shared `sql_alchemy_conn`, else `state_dir/metastore.db`",
        redact=redact_url,
    ),
    Key(
        "metadata_service_zookeeper_nodes",
        p.text,
        "localhost:2181",
        """\
ZooKeeper servers, comma separated, with an optional chroot (used with ZookeeperMetadataService):
  zk1:2181,zk2:2181,zk3:2181/airflow""",
        "ZooKeeper servers (`host:port`), comma separated, optional `/chroot`",
        since_2016=True,
    ),
    Key(
        "metadata_service_zookeeper_root",
        p.text,
        "/scheduler_failover_controller",
        """\
Root znode of the controller's records (under the chroot). Its session timeout is lease_ttl:
the servers' minSessionTimeout/maxSessionTimeout must allow it.""",
        "root znode of the controller's records",
    ),
    Key(
        "metadata_service_zookeeper_auth",
        p.text,
        "",
        """\
Digest authentication "user:password"; the controller's znodes then get an ACL for that user only.
Or metadata_service_zookeeper_auth_cmd (a command printing it) or _file (a private file holding it).""",
        "digest `user:password`; our znodes then get an ACL for that user",
        redact=_mask_auth,
    ),
    Key(
        "metadata_service_zookeeper_use_ssl",
        p.boolean,
        "false",
        "TLS to the ensemble (ZooKeeper's secureClientPort), with the CA bundle, certificate and key below.",
        "TLS to the ensemble (ZooKeeper's `secureClientPort`)",
    ),
    Key(
        "metadata_service_zookeeper_ca",
        p.text,
        "",
        "TLS: the CA bundle the servers' certificates are checked against.",
        "TLS: CA bundle file",
    ),
    Key(
        "metadata_service_zookeeper_certfile",
        p.text,
        "",
        "TLS: this client's certificate file (given together with the key file).",
        "TLS: client certificate file (with `_keyfile`)",
    ),
    Key(
        "metadata_service_zookeeper_keyfile",
        p.text,
        "",
        "TLS: this client's private key file (given together with the certificate file).",
        "TLS: client key file (with `_certfile`)",
    ),
    Key(
        "metadata_service_zookeeper_verify_certs",
        p.boolean,
        "true",
        "TLS: whether the servers' certificates are verified.",
        "TLS: verify the servers' certificates",
    ),
    Key(
        "state_dir",
        p.text,
        None,
        """\
Directory for the embedded SQLite metastore, the scheduler log and lock files.
Default: $AIRFLOW_HOME/scheduler_failover""",
        "embedded SQLite file, scheduler log, locks and sessions (`locks/`), leash deadlines (`leash/`); must "
        "belong to the controller's user and be writable by nobody else, up the whole path (`start` refuses it "
        "otherwise); its files are created 0600",
        shown_default="`$AIRFLOW_HOME/scheduler_failover`",
    ),
    Key(
        "poll_frequency",
        p.seconds(p.MIN_POLL_FREQUENCY),
        "10",
        """\
Seconds between two controller cycles: how often the scheduler is probed (as in 2016). It may
be longer than the lease: leases are renewed on their own clock, every
min(poll_frequency, lease_ttl / 4) seconds (the "renewal interval").""",
        "seconds between cycles (how often the scheduler is probed); may exceed the lease",
        since_2016=True,
    ),
    Key(
        "lease_ttl",
        p.seconds(p.MIN_LEASE_TTL),
        "40",
        """\
Seconds a lease (leadership, scheduler placement) lasts without renewal. Rules:
renewal interval + 2 x metastore_timeout <= lease_ttl, and
renewal interval + 2 x metastore_timeout + scheduler_stop_timeout + safety margin
(10% of lease_ttl, at least 0.2s) <= lease_ttl.""",
        "seconds a lease lasts without renewal; renewed every `min(poll_frequency, lease_ttl / 4)` s "
        "(the renewal interval)",
    ),
    Key(
        "metastore_timeout",
        p.positive,
        None,
        """\
Seconds a metastore call may take, as a hard deadline (connect, each statement).
Default: min(5, (lease_ttl - renewal interval) / 4).""",
        "hard deadline of every metastore call",
        shown_default=_DERIVED_TIMEOUT.format(cap=5),
    ),
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
        shown_default=_DERIVED_TIMEOUT.format(cap=10) + ", shrunk to fit the leash rule",
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
Command run locally with the node name as its last argument to power off / isolate a node
that cannot be reached and runs no controller of its own (STONITH). Empty: none.""",
        "run with the node name to fence an unreachable node without a controller",
        command=True,
    ),
    Key(
        "alert_to_email",
        p.comma_list,
        "",
        "Alerts: comma separated recipients; SMTP settings come from Airflow's [smtp] section.",
        "alert email recipients, comma separated; SMTP from Airflow's `[smtp]` ("
        + ", ".join(f"`{name}`" for name in SMTP_KEYS)
        + ", and `AIRFLOW__SMTP__*`)",
        since_2016=True,
    ),
    Key(
        "alert_email_subject",
        p.text,
        "Airflow Alert - Scheduler Failover Controller",
        "Subject of the alert email (surrounding quotes are dropped).",
        "subject of the alert email",
        since_2016=True,
    ),
    Key(
        "alert_webhook_url",
        p.text,
        "",
        """\
Optional URL that receives each alert as a JSON POST.
Or alert_webhook_url_cmd (a command printing it) or _file (a private file holding it).""",
        "alerts also POSTed as JSON",
        redact=lambda value: redact_webhook(value) if value else value,
    ),
    Key(
        "logging_level",
        p.level,
        "INFO",
        "Logging. Logs always go to stderr (journald), at this level: DEBUG, INFO, WARNING, ERROR or CRITICAL.",
        "logs go to stderr (journald) at this level",
        since_2016=True,
    ),
    Key(
        "logging_dir",
        p.text,
        "",
        """\
With logging_dir set (an absolute path) the logs also go to a rotating file there. Like state_dir,
it must belong to the controller's user and be writable by nobody else, up the whole path.""",
        "also log to a rotating file in this directory (private to the controller's user, as `state_dir`)",
        since_2016=True,
    ),
    Key(
        "logging_file_name",
        p.text,
        "scheduler_failover_controller.log",
        "The name of that log file in logging_dir.",
        "name of that file",
        since_2016=True,
    ),
    Key(
        "logs_rotate_when",
        p.rotate_when,
        "midnight",
        "When the log file is rotated: S, M, H, D, midnight or W0-W6 (weekday).",
        "when the file is rotated",
        since_2016=True,
    ),
    Key(
        "logs_rotate_backup_count",
        p.count,
        "7",
        "Rotated log files kept.",
        "rotated files kept",
        since_2016=True,
    ),
    Key(
        "ssh_user",
        p.text,
        "",
        "SSH to other master nodes (see README): the user. Empty: the current user.",
        "SSH to the other masters (key auth only): the user",
        shown_default="current user",
    ),
    Key(
        "ssh_port",
        p.tcp_port,
        "22",
        "SSH port of the other master nodes.",
        "SSH port",
    ),
    Key(
        "ssh_key_file",
        p.text,
        "",
        "Private key file for SSH (key authentication only). Empty: the SSH agent and the default keys.",
        "SSH private key file",
        shown_default="agent/default keys",
    ),
    Key(
        "ssh_host_key_policy",
        p.choice("reject", "warn", "auto_add"),
        "reject",
        """\
reject (default): unknown host keys are refused; warn: accepted with a warning;
auto_add: accepted and saved. A changed host key is always refused.""",
        "unknown host keys: `reject`, `warn` (accept for this run) or `auto_add` (append); a changed key is "
        "always refused",
    ),
    Key(
        "ssh_timeout",
        p.positive,
        None,
        """\
Seconds an SSH step may take: connecting (TCP, banner, key exchange, authentication), opening
a channel, a remote command; a whole probe fits in it. A node that does not answer in time is
"unknown". Must be < lease_ttl - renewal interval. Default: min(10, (lease_ttl - renewal interval) / 4).""",
        "each SSH step and a whole remote probe",
        shown_default=_DERIVED_TIMEOUT.format(cap=10),
    ),
    Key(
        "ssh_known_hosts_file",
        p.text,
        "",
        """\
known_hosts file to check host keys against (auto_add appends to it).
Empty: ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts.""",
        "where host keys are checked",
        shown_default="`~/.ssh/known_hosts` + `/etc/ssh/ssh_known_hosts`",
    ),
    Key(
        "ssh_remote_command",
        p.command_words,
        "scheduler_failover_controller",
        """\
This project's command on the other masters, used to probe and kill there with psutil
(an absolute path when its virtualenv is not on the SSH session's PATH). When it is not
found there, or this is empty, a POSIX shell fallback (ps, kill) is used instead.""",
        "this project on the other masters (empty: always the POSIX `ps`/`kill` fallback)",
    ),
    Key(
        "metrics_port",
        p.port_or_off,
        "0",
        "Port of a Prometheus text endpoint on 127.0.0.1; 0 disables it.",
        "Prometheus text endpoint on 127.0.0.1",
        shown_default="0 (off)",
    ),
    Key(
        "scheduler_health_url",
        p.text,
        "",
        """\
Airflow's scheduler health check (Airflow: [scheduler] enable_health_check = True, port 8974),
{node} replaced by the node name, e.g. http://{node}:8974/health. A running scheduler that
fails it scheduler_health_failures times in a row counts as unhealthy and is restarted.
Empty: only the process is checked.""",
        "Airflow's scheduler health check (`[scheduler] enable_health_check = True`), `{node}` = node name, e.g. "
        "`http://{node}:8974/health`; a new scheduler gets until its first answer or `scheduler_start_timeout`",
        shown_default="empty (off)",
    ),
    Key(
        "scheduler_health_failures",
        p.count,
        "3",
        """\
Failed checks in a row (scheduler_health_url, scheduler_job_heartbeat_timeout) that make a
running scheduler unhealthy: it is then restarted. 0 counts as 1.""",
        "that many failed checks in a row make a running scheduler unhealthy (restarted)",
    ),
    Key(
        "scheduler_job_heartbeat_timeout",
        p.off_or_seconds,
        "0",
        """\
Airflow's own record of the scheduler, without its health server: the heartbeat of the node's
newest SchedulerJob row in Airflow's job table. A running scheduler whose heartbeat is older than
this many seconds (by the database server's clock) scheduler_health_failures times in a row counts
as unhealthy and is restarted; a new scheduler gets until its first fresh heartbeat or
scheduler_start_timeout. Must be larger than Airflow's [scheduler] scheduler_heartbeat_sec (5);
Airflow's scheduler_health_check_threshold (30) is a good value. A database that cannot be read
(within metastore_timeout) is logged and restarts nothing. 0 or empty: off.""",
        "seconds: a running scheduler whose newest `SchedulerJob` row in Airflow's `job` table is not `running` "
        "or has a heartbeat this old (database server's clock) fails a check; `scheduler_health_failures` failures "
        "in a row make it unhealthy (restarted), a new scheduler gets until its first fresh heartbeat or "
        "`scheduler_start_timeout`; must be larger than Airflow's `[scheduler] scheduler_heartbeat_sec` (5), e.g. "
        "30 (Airflow's `scheduler_health_check_threshold`)",
        shown_default="0 (off)",
    ),
    Key(
        "scheduler_job_sql_conn",
        p.text,
        None,
        """\
SQLAlchemy URL of Airflow's database, only read (SQLite read-only). Default: Airflow's
sql_alchemy_conn from this file's [database] or [core] section or AIRFLOW__DATABASE__SQL_ALCHEMY_CONN,
else $AIRFLOW_HOME/airflow.db. mysql:// and mysql+mysqldb:// are read with pymysql.""",
        "Airflow's database, only read; `mysql://`/`mysql+mysqldb://` read with pymysql",
        shown_default="Airflow's `[database]`/`[core]` `sql_alchemy_conn` (this file or "
        "`AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`), else `$AIRFLOW_HOME/airflow.db`",
        redact=redact_url,
    ),
    Key(
        "scheduler_job_hostnames",
        p.comma_list,
        "",
        """\
The host name Airflow records for each node's scheduler ([core] hostname_callable, by default the
fully qualified name), as node:hostname, comma separated. Default: the node name, or any name
that starts with it and a dot (node1 matches node1.example.com).""",
        "`node:hostname, ...`: the `hostname` Airflow records for each node's scheduler "
        "(`[core] hostname_callable`, by default the FQDN)",
        shown_default="each node's name, or a name starting with it and a dot",
        sample="node1:node1.example.com, node2:ip-10-0-0-2.ec2.internal",
        commented=True,
    ),
)

# name -> Key, in the template's (and the checks') order.
KEYS: dict[str, Key] = {key.name: key for key in _REGISTRY}
# Keys whose value is a shell command: an indented continuation line is a second command there.
COMMAND_KEYS = frozenset(key.name for key in KEYS.values() if key.command)
