"""``load_config``: merge the sources, parse each key, check the topology and the timing, build.

Each stage is a small function over ``values`` (key -> parsed value, None for a derived key not
set); the later stages fill in the derived values. The checks run in this order, so a file with
several problems always reports the same one first.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping
from typing import Any

from ..exceptions import ConfigError
from .airflow import airflow_sql_conn, check_job_heartbeat, job_database, smtp
from .checks import (
    MAX_NODE_NAME,
    check_sql,
    check_url,
    check_zookeeper,
    directory,
    match_problem,
    node_name_problem,
)
from .keys import KEYS
from .model import LOCAL_NAMES, Config, airflow_home, renew_interval, safety_margin
from .parsers import SQL_SERVICE, ZOOKEEPER_SERVICE
from .service_load import check_services
from .sources import Sources, merge


def load_config(
    explicit_path: str | None = None,
    env: Mapping[str, str] | None = None,
    hostname: Callable[[], str] = socket.gethostname,
) -> Config:
    """Read, merge and validate the configuration; raise ConfigError with one clear line."""
    src = merge(explicit_path, os.environ if env is None else env)
    values = parse(src)
    check_topology(values, src, hostname)
    check_places(values, src)
    check_timing(values, src)
    check_scheduler(values, src)
    check_http(values, src)
    specs = check_services(values, src)
    return Config(
        source=str(src.path),
        smtp=smtp(src),
        service_specs=specs,
        **{k.attribute: values[k.name] for k in KEYS.values()},
    )


def parse(src: Sources) -> dict[str, Any]:
    """Each key's value: its parser on the raw text, else on its default; None for a derived default."""
    values: dict[str, Any] = {}
    for name, key in KEYS.items():
        if name in src.raw:
            text, where = src.raw[name]
            try:
                values[name] = key.parse(text)
            except ValueError as exc:
                reason = str(exc) if "must" in str(exc) else "not a valid value"
                raise ConfigError(f"{where}: {name} = {text.strip()!r}: {reason}") from None
        else:
            values[name] = None if key.default is None else key.parse(key.default)
    return values


def check_topology(values: dict[str, Any], src: Sources, hostname: Callable[[], str]) -> None:
    """The nodes, this node and the local ones: each listed once, named safely, this one among them."""
    fail = src.fail
    current = values["current_host"] or hostname()
    if "scheduler_nodes_in_cluster" in src.raw:
        nodes = values["scheduler_nodes_in_cluster"]
        if not nodes:
            raise fail("scheduler_nodes_in_cluster", "the node list is empty")
        loopback = [n for n in nodes if n in LOCAL_NAMES]
        if not values["current_host"] and current not in nodes and loopback:
            current = loopback[0]  # as in 2016: "localhost" in the list is this host
    else:
        nodes = (current,)
    _check_node_names(nodes, src)
    if current not in nodes:
        raise fail("current_host", f"{current!r} is not in scheduler_nodes_in_cluster ({', '.join(nodes)})")
    local_nodes = values["local_nodes"] or (current,)  # unset or empty: this node only
    for node in local_nodes:
        if node not in nodes:
            raise fail("local_nodes", f"{node!r} is not in scheduler_nodes_in_cluster")
    if current not in local_nodes:
        local_nodes = (current, *local_nodes)
    if len(local_nodes) > 1 and "{node}" not in values["scheduler_process_match"]:
        # Every local node's probe would see the others' schedulers as its own: a stray to kill.
        raise fail(
            "scheduler_process_match",
            f"must contain {{node}} when several nodes are local ({', '.join(local_nodes)}), "
            "so that each node's scheduler is told apart",
        )
    values.update(current_host=current, scheduler_nodes_in_cluster=nodes, local_nodes=local_nodes)


def _check_node_names(nodes: tuple[str, ...], src: Sources) -> None:
    """Each node listed once (ignoring case) under a name that is safe in shells, ssh and file names."""
    seen: dict[str, str] = {}
    for node in nodes:
        # Host names are case-insensitive: "vm" and "VM" are one host, and would be two nodes
        # whose controllers each run a scheduler there.
        if node.lower() in seen:
            twice = node if seen[node.lower()] == node else f"{seen[node.lower()]} and {node} (host names ignore case)"
            raise src.fail("scheduler_nodes_in_cluster", f"a node is listed twice: {twice}")
        seen[node.lower()] = node
    for node in nodes:
        # An allow-list: node names reach shells and ssh, so nothing that could be an option
        # (a leading "-") or a metacharacter. Not too long either: it names files in state_dir.
        problem = node_name_problem(node)
        if problem:
            raise src.fail("scheduler_nodes_in_cluster", problem)


def check_places(values: dict[str, Any], src: Sources) -> None:
    """Where things live and go: state_dir, the metastore, the log file, the alert addresses."""
    fail = src.fail
    state_dir = directory(values["state_dir"] or str(airflow_home(src.env) / "scheduler_failover"), "state_dir", fail)
    sql_conn = values["metadata_service_sql_conn"] or airflow_sql_conn(src) or f"sqlite:///{state_dir / 'metastore.db'}"
    if values["metadata_service_type"] == SQL_SERVICE:
        check_sql(sql_conn, values["scheduler_nodes_in_cluster"], values["local_nodes"], fail)
    if values["logging_dir"]:
        directory(values["logging_dir"], "logging_dir", fail)
    name = values["logging_file_name"]
    if not name or "/" in name or name in (".", "..") or len(name) > MAX_NODE_NAME:
        raise fail("logging_file_name", f"{name!r} must be a file name (no '/', at most {MAX_NODE_NAME} characters)")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,15}", values["metadata_service_sql_table_prefix"]):
        prefix = values["metadata_service_sql_table_prefix"][:40]
        rule = "[A-Za-z_][A-Za-z0-9_]{0,15}"
        raise fail("metadata_service_sql_table_prefix", f"{prefix!r} is not an SQL name prefix ({rule})")
    if values["alert_webhook_url"]:
        check_url(values["alert_webhook_url"], "alert_webhook_url", fail, show=False)
    for address in values["alert_to_email"]:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", address):
            raise fail("alert_to_email", f"{address!r} is not an email address")
    if values["metadata_service_type"] == ZOOKEEPER_SERVICE:
        check_zookeeper(values, fail)
    values.update(
        state_dir=state_dir,
        metadata_service_sql_conn=sql_conn,
        alert_email_subject=values["alert_email_subject"].strip("\"'"),
    )


def check_timing(values: dict[str, Any], src: Sources) -> None:
    """The lease rules (README, Configuration); derives the timeouts that are not set.

    Renewals run on their own clock, every renew_interval(poll, ttl) seconds: poll_frequency is
    only how often the scheduler is probed, so it may exceed the lease (2016's default poll of
    60 s with a 40 s lease). What runs in sequence with a renewal is the renewal's own metastore
    calls; the leash starts stopping the scheduler scheduler_stop_timeout before the placement
    deadline (expiry less the safety margin).
    """
    poll, ttl = values["poll_frequency"], values["lease_ttl"]
    renew = renew_interval(poll, ttl)
    slack = ttl - renew
    if values["metastore_timeout"] is None:
        # A quarter of the slack: a renewal that hangs on the store twice still lands in time.
        values["metastore_timeout"] = min(5.0, slack / 4)
    timeout = values["metastore_timeout"]
    if renew + 2 * timeout > ttl:
        raise src.fail(
            "lease_ttl",
            f"renewal interval + 2 x metastore_timeout ({renew:g} + 2 x {timeout:g}) must be <= lease_ttl ({ttl:g})",
        )
    margin = safety_margin(ttl)
    for key in ("scheduler_stop_timeout", "ssh_timeout"):
        if values[key] is None:
            values[key] = min(10.0, slack / 4)
            if key == "scheduler_stop_timeout":  # derived: fit the leash rule below when it can
                values[key] = max(0.1, min(values[key], ttl - renew - 2 * timeout - margin))
        elif values[key] >= slack:
            raise src.fail(key, f"{values[key]:g}s must be < lease_ttl - renewal interval ({slack:g}s)")
    stop = values["scheduler_stop_timeout"]
    if renew + 2 * timeout + stop + margin > ttl:
        raise src.fail(
            "scheduler_stop_timeout" if "scheduler_stop_timeout" in src.raw else "lease_ttl",
            f"a renewal must land before the leash starts stopping the scheduler: renewal interval + "
            f"2 x metastore_timeout + scheduler_stop_timeout + safety margin ({renew:g} + 2 x {timeout:g} + "
            f"{stop:g} + {margin:g}) must be <= lease_ttl ({ttl:g})",
        )


def check_scheduler(values: dict[str, Any], src: Sources) -> None:
    """How the scheduler is checked and found: health URL, Airflow's job table, the process match."""
    nodes = values["scheduler_nodes_in_cluster"]
    if values["scheduler_health_url"]:
        for node in nodes:
            url = values["scheduler_health_url"].replace("{node}", node)
            check_url(url, "scheduler_health_url", src.fail, show=True)
    job_conn = ""
    job_hostnames: tuple[tuple[str, str], ...] = ()
    if values["scheduler_job_heartbeat_timeout"]:
        job_conn, job_hostnames = check_job_heartbeat(values, nodes, src)
    elif values["airflow_job_fencing"]:
        job_conn, job_hostnames = job_database(values, nodes, src)
    if values["move_backoff"] is None:
        values["move_backoff"] = max(values["poll_frequency"] * 3, 5.0)
    problem = match_problem(values["scheduler_process_match"], "the scheduler's")
    if problem:
        raise src.fail("scheduler_process_match", problem)
    values.update(
        scheduler_health_failures=max(1, values["scheduler_health_failures"]),
        scheduler_job_sql_conn=job_conn,
        scheduler_job_hostnames=job_hostnames,
    )


def check_http(values: dict[str, Any], src: Sources) -> None:
    """The HTTP API: its port (``metrics_port`` is its old name) and an address it can listen on."""
    if values["http_port"] is None:
        values["http_port"] = values["metrics_port"]
    host = values["http_host"].strip()
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise src.fail("http_host", f"{host!r} is not an IP address (or localhost)") from None
    token = values["http_token"]
    if token and (len(token) < 16 or any(c.isspace() for c in token)):
        raise src.fail("http_token", "must be at least 16 characters, without spaces")
    values.update(http_host=host)
