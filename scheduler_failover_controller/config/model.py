"""The validated configuration: frozen dataclasses, and the timing rules derived from it."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..redaction import MASK
from .keys import KEYS
from .services import SCHEDULER, ServiceSpec

# Node names that mean "this host", as the 2016 controller read them.
LOCAL_NAMES = ("localhost", "127.0.0.1")


def airflow_home(env: Mapping[str, str]) -> Path:
    """Airflow's home directory, as Airflow itself resolves it."""
    return Path(env.get("AIRFLOW_HOME") or "~/airflow").expanduser()


def safety_margin(lease_ttl: float) -> float:
    """Seconds kept in hand before any lease deadline (clock drift, scheduling delay)."""
    return max(0.2, lease_ttl * 0.1)


def renew_interval(poll_frequency: float, lease_ttl: float) -> float:
    """How often leases are renewed: every poll, but at least four times per lease."""
    return min(poll_frequency, lease_ttl / 4)


@dataclass(frozen=True)
class SmtpConfig:
    """Airflow's ``[smtp]`` settings, used for alert email."""

    host: str = "localhost"
    port: int = 25
    starttls: bool = True
    ssl: bool = False
    user: str = ""
    password: str = field(default="", repr=False)  # never shown in logs or reprs
    mail_from: str = "airflow@example.com"
    timeout: float = 30.0


@dataclass(frozen=True)
class Config:
    """The validated configuration of one controller.

    One typed attribute per key of :data:`.keys.KEYS` (``Key.attribute``; a unit test checks that
    they agree), plus ``source`` (the file read) and ``smtp`` (Airflow's ``[smtp]`` section).
    """

    source: str
    current_host: str
    nodes: tuple[str, ...]
    local_nodes: tuple[str, ...]
    node_control: str
    metadata_service_type: str
    metadata_service_sql_conn: str = field(repr=False)  # may hold a password
    metadata_service_zookeeper_nodes: str
    metadata_service_zookeeper_root: str
    metadata_service_zookeeper_auth: str = field(repr=False)  # digest "user:password"
    metadata_service_zookeeper_use_ssl: bool
    metadata_service_zookeeper_ca: str
    metadata_service_zookeeper_certfile: str
    metadata_service_zookeeper_keyfile: str
    metadata_service_zookeeper_verify_certs: bool
    state_dir: Path
    poll_frequency: float
    lease_ttl: float
    metastore_timeout: float
    scheduler_process_match: str
    scheduler_user: str
    airflow_scheduler_start_command: str
    airflow_scheduler_stop_command: str
    scheduler_start_timeout: float
    scheduler_stop_timeout: float
    max_restart_attempts: int
    retry_count_before_alerting: int
    move_backoff: float
    fence_command: str
    failback: bool
    failback_delay: float
    failure_timeout: float  # 0: never
    alert_to_email: tuple[str, ...]
    alert_email_subject: str
    alert_webhook_url: str
    event_command: str
    event_command_timeout: float
    smtp: SmtpConfig
    logging_level: str
    logging_dir: str
    logging_file_name: str
    logs_rotate_when: str
    logs_rotate_backup_count: int
    log_summary_interval: float
    ssh_user: str
    ssh_port: int
    ssh_key_file: str
    ssh_host_key_policy: str
    ssh_timeout: float
    ssh_known_hosts_file: str
    ssh_remote_command: str
    http_port: int
    metrics_port: int
    http_host: str
    scheduler_health_url: str
    scheduler_health_failures: int
    scheduler_job_heartbeat_timeout: float = 0.0  # 0: off
    scheduler_job_sql_conn: str = field(default="", repr=False)  # Airflow's database; may hold a password
    scheduler_job_hostnames: tuple[tuple[str, str], ...] = ()  # (node, hostname in Airflow's job table)
    airflow_job_fencing: bool = False  # end a proven-empty node's SchedulerJob and sessions (writes Airflow's db)
    http_token: str = field(default="", repr=False)  # a secret: never logged, never given to the scheduler
    metadata_service_sql_table_prefix: str = "sfc_"
    service_names: tuple[str, ...] = ()  # the ``services`` key: the services beside the scheduler
    service_specs: tuple[ServiceSpec, ...] = ()  # their sections, in the order of ``services``
    service: str = SCHEDULER  # the service this config is the view of (see for_service)

    @property
    def safety_margin(self) -> float:
        """Seconds kept in hand before any lease deadline (clock drift, scheduling delay)."""
        return safety_margin(self.lease_ttl)

    @property
    def renew_interval(self) -> float:
        """Seconds between lease and placement renewals, which run apart from the cycle."""
        return renew_interval(self.poll_frequency, self.lease_ttl)

    def process_match(self, node: str) -> str:
        """The process match for ``node`` (``{node}`` is replaced by the node name)."""
        return self.scheduler_process_match.replace("{node}", node)

    def scheduler_uid(self) -> int:
        """The uid whose processes count as the scheduler on this machine (see :mod:`..ownership`)."""
        from ..ownership import expected_uid

        return expected_uid(self.scheduler_user)

    def health_url(self, node: str) -> str:
        """The scheduler's health URL on ``node`` (``{node}`` replaced, URL-quoted); empty: off."""
        from urllib.parse import quote

        return self.scheduler_health_url.replace("{node}", quote(node, safe=":"))

    def job_hostname(self, node: str) -> tuple[str, bool]:
        """How ``node``'s scheduler is named in Airflow's ``job`` table: (name, exact).

        Not exact (the default, the node name): that name or any fully qualified name that
        starts with it and a dot (Airflow records ``socket.getfqdn()`` by default).
        """
        for name, hostname in self.scheduler_job_hostnames:
            if name == node:
                return hostname, True
        return node, False

    def start_command(self, node: str) -> str:
        """The start command for ``node``; the node name is shell-quoted."""
        return self.airflow_scheduler_start_command.replace("{node}", shlex.quote(node))

    def stop_command(self, node: str) -> str:
        """The stop command for ``node``; the node name is shell-quoted."""
        return self.airflow_scheduler_stop_command.replace("{node}", shlex.quote(node))

    def for_service(self, name: str) -> Config:
        """The config ``name``'s controller runs on: this one for the scheduler; for another service,
        the scheduler's commands, match, timeouts, health URL and nodes replaced by the service's,
        its own state directory, and nothing that is the scheduler's alone (Airflow's job table)."""
        if name == self.service:
            return self
        if name == SCHEDULER:
            raise ValueError("the scheduler's config is the fleet's config, not a view of a service's")
        spec = next((s for s in self.service_specs if s.name == name), None)
        if spec is None:
            raise KeyError(f"no service {name!r} in services")
        return replace(
            self,
            service=name,
            service_specs=(),
            nodes=spec.nodes,
            local_nodes=tuple(n for n in self.local_nodes if n in spec.nodes),
            airflow_scheduler_start_command=spec.start_command,
            airflow_scheduler_stop_command=spec.stop_command,
            scheduler_process_match=spec.process_match,
            scheduler_start_timeout=spec.start_timeout,
            scheduler_stop_timeout=spec.stop_timeout,
            scheduler_health_url=spec.health_url,
            scheduler_job_heartbeat_timeout=0.0,
            scheduler_job_sql_conn="",
            scheduler_job_hostnames=(),
            airflow_job_fencing=False,
            http_port=0,
            metrics_port=0,
            state_dir=self.state_dir / f"service-{name}",
        )

    def redacted(self) -> dict[str, Any]:
        """The settings as plain values with secrets masked (each secret key's ``redact``), for display."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            redact = _REDACT.get(name)
            if redact is not None:
                value = redact(value)
            elif name == "smtp":
                value = {k: (MASK if k == "password" and v else v) for k, v in vars(value).items()}
            elif name == "service_specs":
                value = [{k: list(v) if isinstance(v, tuple) else v for k, v in vars(s).items()} for s in value]
            elif isinstance(value, (tuple, Path)):
                value = list(value) if isinstance(value, tuple) else str(value)
            out[name] = value
        return out


_REDACT = {key.attribute: key.redact for key in KEYS.values() if key.redact is not None}
