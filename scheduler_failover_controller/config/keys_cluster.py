"""The cluster's keys: its nodes, this node, the metastore, the state directory and the timing.

Assembled by :mod:`.keys`, in this order.
"""

from __future__ import annotations

from ..redaction import MASK, redact_url
from . import parsers as p
from .key import DERIVED_TIMEOUT, THIS_HOST, Key


def _mask_auth(value: str) -> str:
    return value.split(":", 1)[0] + ":" + MASK if value else value


CLUSTER_KEYS = (
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
        "node_control",
        p.choice("self", "ssh"),
        "self",
        """\
How the scheduler on each node is started and stopped. One value for the whole cluster.
  self - every node's own controller acts on its own node by the placement; no SSH
  ssh  - the active controller reaches the other nodes over SSH (masters without a controller)""",
        "`self`: each controller acts on its own node, no SSH; `ssh`: the active reaches the others over SSH",
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
        "metadata_service_sql_table_prefix",
        p.text,
        "sfc_",
        """\
Prefix of the metastore's SQL table names: separate fleets can share one SQL database, each
with a prefix of its own.""",
        "prefix of the SQL metastore's table names (one per fleet sharing a database)",
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
        "8",
        """\
Seconds a lease (leadership, scheduler placement) lasts without renewal. Rules:
renewal interval + 2 x metastore_timeout <= lease_ttl, and
renewal interval + 2 x metastore_timeout + scheduler_stop_timeout + safety margin
(10% of lease_ttl, at least 0.2s) <= lease_ttl.
The default 8 replaces a lost scheduler host within 12 s plus the start (lease + two renewal
intervals); a longer lease rides through longer metastore stalls (README, "Timing defaults").""",
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
        shown_default=DERIVED_TIMEOUT.format(cap=5),
    ),
)
