"""The keys of the HTTP API and the scheduler's health checks (HTTP, Airflow's job table).

Assembled by :mod:`.keys`, in this order.
"""

from __future__ import annotations

from ..redaction import MASK, redact_url
from . import parsers as p
from .key import Key

CHECK_KEYS = (
    Key(
        "http_port",
        p.port_or_off,
        None,
        """\
Port of the HTTP API (GET/HEAD /health, /leader, /scheduler, /status, /history, /metrics) on
http_host; 0 disables it. Default: metrics_port, its old name.""",
        "HTTP API: `/health`, `/leader`, `/scheduler`, `/status`, `/history`, `/metrics`",
        shown_default="`metrics_port`, else 0 (off)",
        sample="0",
    ),
    Key(
        "metrics_port",
        p.port_or_off,
        "0",
        "Old name of http_port, still read when http_port is not set.",
        "old name of `http_port`",
        shown_default="0 (off)",
    ),
    Key(
        "http_host",
        p.text,
        "127.0.0.1",
        """\
The address the HTTP API listens on (an IP address, or localhost). Beyond loopback, /health,
/leader and /scheduler answer anyone; /status, /history and /metrics need http_token.""",
        "address of the HTTP API; beyond loopback `/status`, `/history`, `/metrics` need `http_token`",
    ),
    Key(
        "http_token",
        p.text,
        "",
        """\
Bearer token that /status, /history and /metrics require (Authorization: Bearer TOKEN) when set,
and always when http_host is beyond loopback. Or http_token_cmd (a command printing it) or
_file (a private file holding it).""",
        "bearer token for `/status`, `/history`, `/metrics` (also `http_token_cmd`, `http_token_file`)",
        redact=lambda value: MASK if value else value,
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
    Key(
        "airflow_job_fencing",
        p.boolean,
        "false",
        """\
Writes to Airflow's database (scheduler_job_sql_conn), off by default. Before a scheduler starts,
once a node is proven to run none (seen or reported empty, fenced, or its placement expired with
everything under a leash), its newest running SchedulerJob is marked failed (only while its
heartbeat stands still between two reads), so the new scheduler adopts its tasks at once; and,
when that node could not be seen, its sessions to Airflow's database are ended first (PostgreSQL
pg_terminate_backend, MySQL KILL: by client address, Airflow's user, this database only).""",
        "before a start, end a proven-empty node's `SchedulerJob` (marked `failed` as Airflow does, heartbeat "
        "standing still) so its tasks are adopted at once, and, for an unseen node, its sessions to Airflow's "
        "database (PostgreSQL, MySQL/MariaDB) first; the only writes to Airflow's database",
    ),
)
