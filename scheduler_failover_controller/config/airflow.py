"""What the config takes from Airflow's own settings: its database URL, ``[scheduler]``, ``[smtp]``.

Airflow's sections are read with Airflow's interpolation, and its ``AIRFLOW__<SECTION>__<KEY>``
variables win over the file, as in Airflow.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import ConfigError
from .checks import check_job_db
from .indirect import CMD, FILE, resolve
from .keys import SMTP_KEYS
from .model import SmtpConfig, airflow_home
from .sources import Sources

# Airflow's default [scheduler] scheduler_heartbeat_sec: how often a scheduler stamps its job row.
AIRFLOW_SCHEDULER_HEARTBEAT_SEC = 5.0
MAX_AIRFLOW_HOSTNAME = 500  # Airflow's job.hostname is a VARCHAR(500)


def airflow_sql_conn(src: Sources) -> str:
    """Airflow's own metadata DB URL, if this config or the environment names a shared one.

    Airflow's SQLite file is not used: our WAL mode and write locks would change how Airflow's
    own database behaves, so that case falls back to our own embedded file.
    """
    found = airflow_db_url(src)
    return "" if found.startswith("sqlite") else found


def airflow_db_url(src: Sources) -> str:
    """Airflow's ``sql_alchemy_conn`` as this config file (``[database]``, else ``[core]``) or the
    environment (``AIRFLOW__DATABASE__``/``AIRFLOW__CORE__SQL_ALCHEMY_CONN``, which win) names it; ""."""
    found = ""
    for name in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__SQL_ALCHEMY_CONN"):
        if src.env.get(name):
            found = found or src.env[name].strip()
    for section in ("database", "core"):
        if src.parser.has_option(section, "sql_alchemy_conn"):
            found = found or src.airflow_value(section, "sql_alchemy_conn").strip()
    return found


def scheduler_heartbeat_sec(src: Sources) -> float:
    """Airflow's ``[scheduler] scheduler_heartbeat_sec`` (environment, file, else Airflow's default)."""
    name = "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC"
    text, where = src.env.get(name), f"environment {name}"
    if text is None and src.parser.has_option("scheduler", "scheduler_heartbeat_sec"):
        text, where = src.airflow_value("scheduler", "scheduler_heartbeat_sec"), f"{src.path} [scheduler]"
    if text is None:
        return AIRFLOW_SCHEDULER_HEARTBEAT_SEC
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{where}: scheduler_heartbeat_sec = {text.strip()!r}: not a number") from None


def check_job_heartbeat(
    values: dict[str, Any], nodes: tuple[str, ...], src: Sources
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The keys of the Airflow job heartbeat check: (Airflow's database URL, node -> hostname)."""
    key = "scheduler_job_heartbeat_timeout"
    timeout = values[key]
    heartbeat = scheduler_heartbeat_sec(src)
    if not timeout > heartbeat:
        raise src.fail(
            key,
            f"{timeout:g}s must be larger than Airflow's [scheduler] scheduler_heartbeat_sec ({heartbeat:g}s), how "
            "often a scheduler writes its heartbeat (Airflow's scheduler_health_check_threshold, 30s, is a good value)",
        )
    return job_database(values, nodes, src)


def job_database(
    values: dict[str, Any], nodes: tuple[str, ...], src: Sources
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Airflow's database URL and each node's hostname in its job table (heartbeat check, job fencing)."""
    url_key = "scheduler_job_sql_conn"
    url = values[url_key] or airflow_db_url(src) or f"sqlite:///{airflow_home(src.env) / 'airflow.db'}"
    check_job_db(url, url_key, src.fail)
    return url, _job_hostnames(values["scheduler_job_hostnames"], nodes, src)


def _job_hostnames(entries: tuple[str, ...], nodes: tuple[str, ...], src: Sources) -> tuple[tuple[str, str], ...]:
    """``scheduler_job_hostnames``: each ``node:hostname`` of a listed node, once."""
    key = "scheduler_job_hostnames"
    hostnames: dict[str, str] = {}
    for entry in entries:
        node, sep, hostname = entry.rpartition(":")
        node, hostname = node.strip(), hostname.strip()
        if not sep or not node or not hostname:
            raise src.fail(key, f"{entry[:60]!r} is not node:hostname")
        if node not in nodes:
            raise src.fail(key, f"{node[:40]!r} is not in scheduler_nodes_in_cluster")
        if node in hostnames:
            raise src.fail(key, f"{node} is named twice")
        if len(hostname) > MAX_AIRFLOW_HOSTNAME or any(c.isspace() for c in hostname):
            raise src.fail(key, f"{hostname[:40]!r} is not a host name as Airflow records it")
        hostnames[node] = hostname
    return tuple(hostnames.items())


def smtp(src: Sources) -> SmtpConfig:
    """Airflow's ``[smtp]`` section, with ``AIRFLOW__SMTP__*`` overrides.

    ``smtp_password`` may also come from ``smtp_password_cmd`` (as Airflow reads it) or
    ``smtp_password_file`` (see :mod:`.indirect`); Airflow's ``smtp_password_secret`` names its
    own secrets backend and is not read.
    """
    found: dict[str, Any] = {}
    for key, parse in SMTP_KEYS.items():
        if key == "smtp_password":
            text, where = _smtp_password(src)
        else:
            text, where = _smtp_value(src, key)
        if text is None:
            continue
        try:
            found[key[len("smtp_") :]] = parse(text)
        except ValueError as exc:
            reason = str(exc) if "must" in str(exc) else "not a valid value"
            shown = "***" if key == "smtp_password" else repr(text.strip())
            raise ConfigError(f"{where}: {key} = {shown}: {reason}") from None
    return SmtpConfig(**found)


def _smtp_value(src: Sources, key: str) -> tuple[str | None, str]:
    """An ``[smtp]`` key's text and where it came from: the environment, else the file."""
    env_name = "AIRFLOW__SMTP__" + key.upper()
    if src.env.get(env_name) is not None:
        return src.env[env_name], f"environment {env_name}"
    if src.parser.has_option("smtp", key):
        return src.airflow_value("smtp", key), f"{src.path} [smtp]"
    return None, ""


def _smtp_password(src: Sources) -> tuple[str | None, str]:
    """``smtp_password`` in its first form: environment, then file; plain, ``_cmd``, ``_file``."""
    key = "smtp_password"
    for in_env in (True, False):
        for suffix in ("", CMD, FILE):
            name = key + suffix
            if in_env and src.env.get("AIRFLOW__SMTP__" + name.upper()) is not None:
                text, where = src.env["AIRFLOW__SMTP__" + name.upper()], "environment AIRFLOW__SMTP__" + name.upper()
            elif not in_env and src.parser.has_option("smtp", name):
                text, where = src.airflow_value("smtp", name), f"{src.path} [smtp]"
            else:
                continue
            return resolve(key, suffix, text, where), where
    return None, ""
