"""Load and validate the configuration into frozen dataclasses.

Sources, later ones winning: built-in defaults, the ``[scheduler_failover]`` section of the
config file, then ``AIRFLOW__SCHEDULER_FAILOVER__<KEY>`` environment variables. The file is
``--config``, else ``$SCHEDULER_FAILOVER_CONTROLLER_CONFIG``, else ``$AIRFLOW_HOME/airflow.cfg``.
Every problem becomes one :class:`ConfigError` line naming the key and where it came from.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import socket
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exceptions import ConfigError
from .redaction import MASK, redact_url, redact_webhook

SECTION = "scheduler_failover"
ENV_PREFIX = "AIRFLOW__SCHEDULER_FAILOVER__"
CONFIG_ENV = "SCHEDULER_FAILOVER_CONTROLLER_CONFIG"

SQL_SERVICE = "SQLMetadataService"
ZOOKEEPER_SERVICE = "ZookeeperMetadataService"
_SERVICE_ALIASES = {
    "sqlmetadataservice": SQL_SERVICE,
    "sql": SQL_SERVICE,
    "zookeepermetadataservice": ZOOKEEPER_SERVICE,
    "zookeeper": ZOOKEEPER_SERVICE,
}


def airflow_home(env: Mapping[str, str]) -> Path:
    """Airflow's home directory, as Airflow itself resolves it."""
    return Path(env.get("AIRFLOW_HOME") or "~/airflow").expanduser()


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
    """The validated configuration of one controller."""

    source: str
    current_host: str
    nodes: tuple[str, ...]
    local_nodes: tuple[str, ...]
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
    airflow_scheduler_start_command: str
    airflow_scheduler_stop_command: str
    scheduler_start_timeout: float
    scheduler_stop_timeout: float
    max_restart_attempts: int
    retry_count_before_alerting: int
    move_backoff: float
    fence_command: str
    alert_to_email: tuple[str, ...]
    alert_email_subject: str
    alert_webhook_url: str
    smtp: SmtpConfig
    logging_level: str
    logging_dir: str
    logging_file_name: str
    logs_rotate_when: str
    logs_rotate_backup_count: int
    ssh_user: str
    ssh_port: int
    ssh_key_file: str
    ssh_host_key_policy: str
    ssh_timeout: float
    ssh_known_hosts_file: str
    ssh_remote_command: str
    metrics_port: int
    scheduler_health_url: str
    scheduler_health_failures: int
    scheduler_job_heartbeat_timeout: float = 0.0  # 0: off
    scheduler_job_sql_conn: str = field(default="", repr=False)  # Airflow's database; may hold a password
    scheduler_job_hostnames: tuple[tuple[str, str], ...] = ()  # (node, hostname in Airflow's job table)

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

    def redacted(self) -> dict[str, Any]:
        """The settings as plain values with secrets masked, for display."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name in ("metadata_service_sql_conn", "scheduler_job_sql_conn"):
                value = redact_url(value)
            elif name == "metadata_service_zookeeper_auth" and value:
                value = value.split(":", 1)[0] + ":" + MASK
            elif name == "alert_webhook_url" and value:
                value = redact_webhook(value)
            elif name == "smtp":
                value = {k: (MASK if k == "password" and v else v) for k, v in vars(value).items()}
            elif isinstance(value, (tuple, Path)):
                value = list(value) if isinstance(value, tuple) else str(value)
            out[name] = value
        return out


# Node names that mean "this host", as the 2016 controller read them.
LOCAL_NAMES = ("localhost", "127.0.0.1")


def safety_margin(lease_ttl: float) -> float:
    """Seconds kept in hand before any lease deadline (clock drift, scheduling delay)."""
    return max(0.2, lease_ttl * 0.1)


def renew_interval(poll_frequency: float, lease_ttl: float) -> float:
    """How often leases are renewed: every poll, but at least four times per lease."""
    return min(poll_frequency, lease_ttl / 4)


# --- value parsers: each takes the raw string and returns the value or raises ValueError ---


def _str(raw: str) -> str:
    return raw.strip()


def _command(raw: str) -> str:
    # 2016's conventions: ";;" separated its start commands, and "\\;" kept a ";" from being
    # read as the start of an inline comment in its stop command; both mean ";" to the shell.
    # The 2016 controller separated commands with ";;"; keep that meaning.
    return raw.strip().replace(";;", ";").replace("\\;", ";")


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


# Bounds of every number (README, Configuration): what the daemon can run with for a week, so no
# value ever overflows a timer, a socket timeout or a driver's integer later (a wait of a day is
# already far beyond any useful lease or timeout).
MAX_SECONDS = 86400.0
MIN_SECONDS = 0.01
MIN_POLL_FREQUENCY = 0.1  # each cycle probes and logs a line: below this it only burns CPU
MIN_LEASE_TTL = 1.0
MAX_COUNT = 1_000_000
# Node names become file names (state_dir/locks/NODE.lock, leash/.NODE.deadline.PID.RANDOM.tmp, ...):
# this leaves room for the longest suffix within a file system's 255-byte name limit.
MAX_NODE_NAME = 200
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # airflow.cfg is ~100 KB; anything bigger is not a config
# Keys whose value is a shell command: an indented continuation line is a second command there.
COMMAND_KEYS = frozenset({"airflow_scheduler_start_command", "airflow_scheduler_stop_command", "fence_command"})


def _seconds(minimum: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not minimum <= value <= MAX_SECONDS:  # also NaN and inf
            raise ValueError(f"must be a positive number of seconds, from {minimum:g} to {MAX_SECONDS:g}")
        return value

    return parse


_positive = _seconds(MIN_SECONDS)


def _count(raw: str) -> int:
    value = int(raw.strip())
    if not 0 <= value <= MAX_COUNT:
        raise ValueError(f"must be between 0 and {MAX_COUNT}")
    return value


def _off_or_seconds(raw: str) -> float:
    """Seconds, or 0 (also empty) for "off"."""
    if raw.strip() in ("", "0"):
        return 0.0
    return _positive(raw)


def _port_range(low: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw.strip())
        if not low <= value <= 65535:
            raise ValueError(f"must be a port number between {low} and 65535")
        return value

    return parse


_port = _port_range(0)  # metrics_port: 0 is "off"
_tcp_port = _port_range(1)  # a port to connect to


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return value

    return parse


def _command_words(raw: str) -> str:
    value = raw.strip()
    try:
        shlex.split(value)
    except ValueError:
        raise ValueError("must be a command that can be split into words (check its quotes)") from None
    return value


def _service(raw: str) -> str:
    try:
        return _SERVICE_ALIASES[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"must be {SQL_SERVICE} (sql) or {ZOOKEEPER_SERVICE} (zookeeper)") from None


def _level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return value


def _rotate_when(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("s", "m", "h", "d", "midnight") and not (
        len(value) == 2 and value[0] == "w" and value[1] in "0123456"
    ):
        raise ValueError("must be S, M, H, D, midnight or W0-W6")
    return value


# key -> (parser, default). A default of None means "derived" (see load_config).
KEYS: dict[str, tuple[Callable[[str], Any], str | None]] = {
    "scheduler_nodes_in_cluster": (_list, None),
    "current_host": (_str, None),
    "local_nodes": (_list, None),
    "metadata_service_type": (_service, SQL_SERVICE),
    "metadata_service_sql_conn": (_str, None),
    "metadata_service_zookeeper_nodes": (_str, "localhost:2181"),
    "metadata_service_zookeeper_root": (_str, "/scheduler_failover_controller"),
    "metadata_service_zookeeper_auth": (_str, ""),
    "metadata_service_zookeeper_use_ssl": (_bool, "false"),
    "metadata_service_zookeeper_ca": (_str, ""),
    "metadata_service_zookeeper_certfile": (_str, ""),
    "metadata_service_zookeeper_keyfile": (_str, ""),
    "metadata_service_zookeeper_verify_certs": (_bool, "true"),
    "state_dir": (_str, None),
    "poll_frequency": (_seconds(MIN_POLL_FREQUENCY), "10"),
    "lease_ttl": (_seconds(MIN_LEASE_TTL), "40"),
    "metastore_timeout": (_positive, None),
    "scheduler_process_match": (_str, "airflow scheduler"),
    "airflow_scheduler_start_command": (_command, ""),
    "airflow_scheduler_stop_command": (_command, ""),
    "scheduler_start_timeout": (_positive, "60"),
    "scheduler_stop_timeout": (_positive, None),
    "max_restart_attempts": (_count, "3"),
    "retry_count_before_alerting": (_count, "5"),
    "move_backoff": (_positive, None),
    "fence_command": (_command, ""),
    "alert_to_email": (_list, ""),
    "alert_email_subject": (
        _str,
        "Airflow Alert - Scheduler Failover Controller",
    ),
    "alert_webhook_url": (_str, ""),
    "logging_level": (_level, "INFO"),
    "logging_dir": (_str, ""),
    "logging_file_name": (_str, "scheduler_failover_controller.log"),
    "logs_rotate_when": (_rotate_when, "midnight"),
    "logs_rotate_backup_count": (_count, "7"),
    "ssh_user": (_str, ""),
    "ssh_port": (_tcp_port, "22"),
    "ssh_key_file": (_str, ""),
    "ssh_host_key_policy": (_choice("reject", "warn", "auto_add"), "reject"),
    "ssh_timeout": (_positive, None),
    "ssh_known_hosts_file": (_str, ""),
    "ssh_remote_command": (_command_words, "scheduler_failover_controller"),
    "metrics_port": (_port, "0"),
    "scheduler_health_url": (_str, ""),
    "scheduler_health_failures": (_count, "3"),
    "scheduler_job_heartbeat_timeout": (_off_or_seconds, "0"),
    "scheduler_job_sql_conn": (_str, None),
    "scheduler_job_hostnames": (_list, ""),
}

SMTP_KEYS: dict[str, Callable[[str], Any]] = {
    "smtp_host": _str,
    "smtp_port": _tcp_port,
    "smtp_starttls": _bool,
    "smtp_ssl": _bool,
    "smtp_user": _str,
    "smtp_password": _str,
    "smtp_mail_from": _str,
    "smtp_timeout": _positive,
}


def config_path(explicit: str | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read, and whether the user named it (then it must exist)."""
    if explicit:
        return Path(explicit).expanduser(), True
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser(), True
    return airflow_home(env) / "airflow.cfg", False


def _read_file(path: Path, required: bool) -> tuple[configparser.ConfigParser, str]:
    """The parsed file and its text; ("", empty parser) when an optional file is absent."""
    # No [DEFAULT] inheritance: its keys would leak into our section as unknown keys.
    # Airflow reads airflow.cfg with interpolation ("%%" is "%"): so are its sections here. Our
    # own section is read raw, as the 2016 controller read it (see _airflow_value).
    parser = configparser.ConfigParser(
        interpolation=configparser.BasicInterpolation(), strict=True, default_section="\0none"
    )
    parser.optionxform = str.lower  # type: ignore[assignment,method-assign]
    try:
        exists = path.exists()
    except OSError as exc:  # e.g. a name too long, a symlink loop
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    if not exists:
        if required:
            raise ConfigError(f"{path}: config file does not exist")
        return parser, ""
    text = _read_text(path)
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: not a valid INI file: {first}") from None
    return parser, text


def _read_text(path: Path) -> str:
    """The file's text: a regular file only (a FIFO would block, /dev/zero never end), bounded."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"{path}: cannot read config file: not a regular file")
        os.set_blocking(fd, True)
        data = os.read(fd, MAX_CONFIG_BYTES + 1)
        while len(data) <= MAX_CONFIG_BYTES:  # bounded: stops at the end or past the limit
            more = os.read(fd, MAX_CONFIG_BYTES + 1 - len(data))
            if not more:
                break
            data += more
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB: not a config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a valid INI file: not UTF-8 (byte {exc.start})") from None
    if text.startswith("\ufeff"):  # a BOM, as some editors write it
        text = text[1:]
    # Universal newlines, as a file opened in text mode reads them (the line numbers of messages).
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_config_text(path: Path) -> str:
    """A config file's text as the loader reads it (a regular file only, bounded); ConfigError if not."""
    return _read_text(path)


def node_name_problem(node: str) -> str | None:
    """Why ``node`` cannot be a node name (it reaches shells, ssh and file names), or None."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._:-]*", node):
        return f"{node[:40]!r} is not a valid host name"
    if len(node) > MAX_NODE_NAME:
        return f"{node[:20]}...: a node name is at most {MAX_NODE_NAME} characters"
    return None


def _key_line(text: str, key: str) -> tuple[int, int] | None:
    """The line of ``key`` in our section of ``text`` and of its first indented continuation."""
    section = None
    found = None
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.lstrip()[:1] in "#;":
            continue
        if line[0].isspace():
            if found is not None:
                return found, number
            continue
        found = None
        stripped = line.strip()
        if stripped.startswith("[") and "]" in stripped:
            section = stripped[1 : stripped.index("]")]
            continue
        name = re.split(r"[=:]", line, maxsplit=1)[0].strip().lower()
        if section == SECTION and name == key:
            found = number
    return None


def _same_section(name: str) -> bool:
    """Whether a section header is ours spelled differently ([SCHEDULER_FAILOVER], [scheduler-failover])."""
    return name != SECTION and name.strip().lower().replace("-", "_") == SECTION


def load_config(
    explicit_path: str | None = None,
    env: Mapping[str, str] | None = None,
    hostname: Callable[[], str] = socket.gethostname,
) -> Config:
    """Read, merge and validate the configuration; raise ConfigError with one clear line."""
    env = os.environ if env is None else env
    path, required = config_path(explicit_path, env)
    parser, text = _read_file(path, required)
    for name in parser.sections():
        if _same_section(name):
            raise ConfigError(f"{path}: [{name}]: section names are case-sensitive; name it [{SECTION}]")
    if required and not parser.has_section(SECTION):
        raise ConfigError(f"{path}: no [{SECTION}] section (a file named by --config or ${CONFIG_ENV} must have one)")

    raw: dict[str, tuple[str, str]] = {}  # key -> (value, where it came from)
    if parser.has_section(SECTION):
        for key, value in parser.items(SECTION, raw=True):
            if key not in KEYS:
                raise ConfigError(f"{path}: [{SECTION}] {key}: unknown key")
            raw[key] = (value, f"{path} [{SECTION}]")
            if "\n" in value.strip() and key not in COMMAND_KEYS:
                lines = _key_line(text, key)
                at = f"line {lines[1]} (indented) continues {key} of line {lines[0]}" if lines else f"{key} continues"
                raise ConfigError(
                    f"{path}: {at}: {key} must be one line (an indented line joins the previous key's value)"
                )
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            key = name[len(ENV_PREFIX) :].lower()
            if key not in KEYS:
                raise ConfigError(f"environment {name}: unknown key {key}")
            raw[key] = (value, f"environment {name}")

    for key, (value, where) in raw.items():
        allowed = "\t\n" if key in COMMAND_KEYS else "\t"
        if "\n" in value.strip() and key not in COMMAND_KEYS:
            raise ConfigError(f"{where}: {key} must be one line")
        if any((ord(c) < 32 and c not in allowed) or c == "\x7f" for c in value):
            raise ConfigError(f"{where}: {key} contains a control character")

    values: dict[str, Any] = {}
    for key, (parse, default) in KEYS.items():
        if key in raw:
            text, where = raw[key]
            try:
                values[key] = parse(text)
            except ValueError as exc:
                reason = str(exc) if "must" in str(exc) else "not a valid value"
                raise ConfigError(f"{where}: {key} = {text.strip()!r}: {reason}") from None
        elif default is not None:
            values[key] = parse(default)
        else:
            values[key] = None

    def origin(key: str) -> str:
        return raw[key][1] if key in raw else f"{path} [{SECTION}] (default)"

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{origin(key)}: {key}: {message}")

    current = values["current_host"] or hostname()
    if "scheduler_nodes_in_cluster" in raw:
        nodes = values["scheduler_nodes_in_cluster"]
        if not nodes:
            raise fail("scheduler_nodes_in_cluster", "the node list is empty")
        loopback = [n for n in nodes if n in LOCAL_NAMES]
        if not values["current_host"] and current not in nodes and loopback:
            current = loopback[0]  # as in 2016: "localhost" in the list is this host
    else:
        nodes = (current,)
    seen: dict[str, str] = {}
    for node in nodes:
        # Host names are case-insensitive: "vm" and "VM" are one host, and would be two nodes
        # whose controllers each run a scheduler there.
        if node.lower() in seen:
            twice = node if seen[node.lower()] == node else f"{seen[node.lower()]} and {node} (host names ignore case)"
            raise fail("scheduler_nodes_in_cluster", f"a node is listed twice: {twice}")
        seen[node.lower()] = node
    for node in nodes:
        # An allow-list: node names reach shells and ssh, so nothing that could be an option
        # (a leading "-") or a metacharacter.
        # Not too long either: it names files in state_dir (lock, session, leash).
        problem = node_name_problem(node)
        if problem:
            raise fail("scheduler_nodes_in_cluster", problem)
    if current not in nodes:
        raise fail("current_host", f"{current!r} is not in scheduler_nodes_in_cluster ({', '.join(nodes)})")
    local_nodes = values["local_nodes"] if values["local_nodes"] is not None else (current,)
    if "local_nodes" in raw and not local_nodes:
        local_nodes = (current,)
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

    state_dir = _directory(values["state_dir"] or str(airflow_home(env) / "scheduler_failover"), "state_dir", fail)
    sql_conn = (
        values["metadata_service_sql_conn"]
        or _airflow_sql_conn(parser, env, path)
        or (f"sqlite:///{state_dir / 'metastore.db'}")
    )
    if values["metadata_service_type"] == SQL_SERVICE:
        _check_sql(sql_conn, nodes, local_nodes, fail)
    if values["logging_dir"]:
        _directory(values["logging_dir"], "logging_dir", fail)
    name = values["logging_file_name"]
    if not name or "/" in name or name in (".", "..") or len(name) > MAX_NODE_NAME:
        raise fail("logging_file_name", f"{name!r} must be a file name (no '/', at most {MAX_NODE_NAME} characters)")
    if values["alert_webhook_url"]:
        _check_url(values["alert_webhook_url"], "alert_webhook_url", fail, show=False)
    for address in values["alert_to_email"]:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", address):
            raise fail("alert_to_email", f"{address!r} is not an email address")
    if values["metadata_service_type"] == ZOOKEEPER_SERVICE:
        _check_zookeeper(values, fail)

    poll = values["poll_frequency"]
    ttl = values["lease_ttl"]
    # Renewals run on their own clock (see renewal.py), every renew_interval(poll, ttl) seconds:
    # poll_frequency is only how often the scheduler is probed, so it may exceed the lease (2016's
    # default poll of 60 s with a 40 s lease). What runs in sequence with a renewal is the renewal's
    # own metastore calls; the leash starts stopping the scheduler scheduler_stop_timeout before the
    # placement deadline (expiry less the safety margin).
    renew = renew_interval(poll, ttl)
    slack = ttl - renew
    if values["metastore_timeout"] is None:
        # A quarter of the slack: a renewal that hangs on the store twice still lands in time.
        values["metastore_timeout"] = min(5.0, slack / 4)
    timeout = values["metastore_timeout"]
    if renew + 2 * timeout > ttl:
        raise fail(
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
            raise fail(key, f"{values[key]:g}s must be < lease_ttl - renewal interval ({slack:g}s)")
    leash_budget = renew + 2 * timeout + values["scheduler_stop_timeout"] + margin
    if leash_budget > ttl:
        key = "scheduler_stop_timeout" if "scheduler_stop_timeout" in raw else "lease_ttl"
        raise fail(
            key,
            f"a renewal must land before the leash starts stopping the scheduler: renewal interval + "
            f"2 x metastore_timeout + scheduler_stop_timeout + safety margin ({renew:g} + 2 x {timeout:g} + "
            f"{values['scheduler_stop_timeout']:g} + {margin:g}) must be <= lease_ttl ({ttl:g})",
        )
    if values["scheduler_health_url"]:
        for node in nodes:
            url = values["scheduler_health_url"].replace("{node}", node)
            _check_url(url, "scheduler_health_url", fail, show=True)
    job_conn = ""
    job_hostnames: tuple[tuple[str, str], ...] = ()
    if values["scheduler_job_heartbeat_timeout"]:
        job_conn, job_hostnames = _check_job_heartbeat(values, nodes, parser, env, path, fail)
    if values["move_backoff"] is None:
        values["move_backoff"] = max(poll * 3, 5.0)
    if not values["scheduler_process_match"]:
        raise fail("scheduler_process_match", "must not be empty")
    try:
        words = shlex.split(values["scheduler_process_match"])
    except ValueError as exc:  # e.g. an unbalanced quote: the probe would crash on it later
        raise fail("scheduler_process_match", f"cannot be split into words: {exc}") from None
    if not any(word.strip() for word in words):
        raise fail("scheduler_process_match", "must name the scheduler's program")

    smtp = _smtp(parser, env, path)
    return Config(
        source=str(path),
        current_host=current,
        nodes=nodes,
        local_nodes=local_nodes,
        metadata_service_type=values["metadata_service_type"],
        metadata_service_sql_conn=sql_conn,
        metadata_service_zookeeper_nodes=values["metadata_service_zookeeper_nodes"],
        metadata_service_zookeeper_root=values["metadata_service_zookeeper_root"],
        metadata_service_zookeeper_auth=values["metadata_service_zookeeper_auth"],
        metadata_service_zookeeper_use_ssl=values["metadata_service_zookeeper_use_ssl"],
        metadata_service_zookeeper_ca=values["metadata_service_zookeeper_ca"],
        metadata_service_zookeeper_certfile=values["metadata_service_zookeeper_certfile"],
        metadata_service_zookeeper_keyfile=values["metadata_service_zookeeper_keyfile"],
        metadata_service_zookeeper_verify_certs=values["metadata_service_zookeeper_verify_certs"],
        state_dir=state_dir,
        poll_frequency=poll,
        lease_ttl=ttl,
        metastore_timeout=timeout,
        scheduler_process_match=values["scheduler_process_match"],
        airflow_scheduler_start_command=values["airflow_scheduler_start_command"],
        airflow_scheduler_stop_command=values["airflow_scheduler_stop_command"],
        scheduler_start_timeout=values["scheduler_start_timeout"],
        scheduler_stop_timeout=values["scheduler_stop_timeout"],
        max_restart_attempts=values["max_restart_attempts"],
        retry_count_before_alerting=values["retry_count_before_alerting"],
        move_backoff=values["move_backoff"],
        fence_command=values["fence_command"],
        alert_to_email=values["alert_to_email"],
        alert_email_subject=values["alert_email_subject"].strip("\"'"),
        alert_webhook_url=values["alert_webhook_url"],
        smtp=smtp,
        logging_level=values["logging_level"],
        logging_dir=values["logging_dir"],
        logging_file_name=values["logging_file_name"],
        logs_rotate_when=values["logs_rotate_when"],
        logs_rotate_backup_count=values["logs_rotate_backup_count"],
        ssh_user=values["ssh_user"],
        ssh_port=values["ssh_port"],
        ssh_key_file=values["ssh_key_file"],
        ssh_host_key_policy=values["ssh_host_key_policy"],
        ssh_timeout=values["ssh_timeout"],
        ssh_known_hosts_file=values["ssh_known_hosts_file"],
        ssh_remote_command=values["ssh_remote_command"],
        metrics_port=values["metrics_port"],
        scheduler_health_url=values["scheduler_health_url"],
        scheduler_health_failures=max(1, values["scheduler_health_failures"]),
        scheduler_job_heartbeat_timeout=values["scheduler_job_heartbeat_timeout"],
        scheduler_job_sql_conn=job_conn,
        scheduler_job_hostnames=job_hostnames,
    )


def _check_sql(
    sql_conn: str, nodes: tuple[str, ...], local_nodes: tuple[str, ...], fail: Callable[[str, str], ConfigError]
) -> None:
    """The SQL metastore URL: parseable, shared when nodes live on other hosts, SQLite only in a file."""
    key = "metadata_service_sql_conn"
    if sql_conn.startswith("sqlite") and set(nodes) - set(local_nodes):
        # Each host would have its own file and elect itself: two schedulers.
        raise fail(
            key,
            "an SQLite metastore is local to one host; nodes on other hosts need a shared MySQL/MariaDB/PostgreSQL URL",
        )
    if "://" not in sql_conn:
        raise fail(key, "not a SQLAlchemy URL (dialect+driver://...)")
    authority = re.split(r"[/?#]", sql_conn.split("://", 1)[1], maxsplit=1)[0]
    if authority.count("@") > 1:
        # SQLAlchemy would read what follows the first "@" as the host: part of the password
        # would then be shown in every connection error.
        raise fail(key, "the user or password holds an unescaped '@': write it as %40 (URL-encode the password)")
    from sqlalchemy.engine import make_url  # here: a ZooKeeper controller never loads SQLAlchemy
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(sql_conn)
        backend = url.get_backend_name()
    except (ArgumentError, ValueError):  # e.g. a port that is not a number; never show the URL (password)
        raise fail(key, "not a valid SQLAlchemy URL (dialect+driver://...)") from None
    if backend != "sqlite":
        return
    database = url.database or ""
    query = " ".join(f"{k}={v}" for k, v in url.query.items())
    if not database or ":memory:" in database or "mode=memory" in f"{database} {query}":
        # Each process would have a store of its own: every controller elects itself.
        raise fail(
            key, "an in-memory SQLite metastore is private to one process; name a file (sqlite:////path/file.db)"
        )
    if database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    db = _expand(database, key, fail)
    if not db.is_absolute():
        # Relative to each process's working directory: two commands could use two stores.
        raise fail(key, f"the SQLite file {database!r} must be an absolute path (sqlite:////path/file.db)")
    _directory(str(db.parent), key, fail)
    if os.path.isdir(db):
        raise fail(key, f"the SQLite file {db} is a directory")


def _expand(raw: str, key: str, fail: Callable[[str, str], ConfigError]) -> Path:
    """``raw`` as a path with ``~`` expanded."""
    try:
        return Path(raw).expanduser()
    except RuntimeError:  # "~" with no home directory, "~user" of no such user
        raise fail(key, f"{raw!r}: cannot expand '~' (no such home directory)") from None


def _directory(raw: str, key: str, fail: Callable[[str, str], ConfigError]) -> Path:
    """An absolute directory that exists or could be created: nothing on its path is a file.

    Whether this user may create it is found out where it is created (``start``), with one line.
    """
    path = _expand(raw, key, fail)
    if not path.is_absolute():
        raise fail(key, f"{raw!r} must be an absolute path")
    probe = path
    for _ in range(len(path.parts) + 1):  # up to the root, which exists
        try:
            info = probe.stat()
        except (FileNotFoundError, NotADirectoryError):
            probe = probe.parent
            continue
        except (OSError, ValueError) as exc:  # a name too long, a symlink loop, no permission
            raise fail(key, f"{path}: cannot be used: {getattr(exc, 'strerror', None) or exc}") from None
        if stat.S_ISDIR(info.st_mode):
            return path
        if probe == path:
            raise fail(key, f"{path} exists and is not a directory")
        raise fail(key, f"{path} cannot be created: {probe} is not a directory")
    return path


def _check_url(url: str, key: str, fail: Callable[[str, str], ConfigError], show: bool) -> None:
    """An http(s) URL that urllib can use: ASCII, no whitespace, a host (``show``: may appear in messages)."""
    shown = f"{url!r} " if show else ""  # a webhook URL often carries a token: never shown
    if not url.isascii() or any(c.isspace() or ord(c) < 32 or c == "\x7f" for c in url):
        raise fail(key, f"{shown}must be ASCII without spaces (percent-encode them)")
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
    except ValueError:
        raise fail(key, f"{shown}is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise fail(key, f"{shown}must be an http:// or https:// URL")
    if not parts.hostname:
        raise fail(key, f"{shown}names no host")


def _check_zookeeper(values: dict[str, Any], fail: Callable[[str, str], ConfigError]) -> None:
    """The ZooKeeper keys: hosts with optional chroot, root path, digest auth, TLS files."""
    servers, _, chroot = values["metadata_service_zookeeper_nodes"].partition("/")
    if not servers.strip():
        raise fail("metadata_service_zookeeper_nodes", "no ZooKeeper server given")
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise fail("metadata_service_zookeeper_nodes", f"{server.strip()!r} is not host:port")
    if chroot and (chroot.endswith("/") or "//" in chroot):
        raise fail("metadata_service_zookeeper_nodes", f"chroot '/{chroot}' is not a valid ZooKeeper path")
    root = values["metadata_service_zookeeper_root"]
    if not root.startswith("/") or root == "/" or root.endswith("/") or "//" in root:
        raise fail("metadata_service_zookeeper_root", f"{root!r} must be an absolute ZooKeeper path like /sfc")
    auth = values["metadata_service_zookeeper_auth"]
    if auth and (":" not in auth or not auth.split(":", 1)[0] or not auth.split(":", 1)[1]):
        raise fail("metadata_service_zookeeper_auth", "must be user:password (digest)")
    for key in (
        "metadata_service_zookeeper_ca",
        "metadata_service_zookeeper_certfile",
        "metadata_service_zookeeper_keyfile",
    ):
        if values[key] and not Path(values[key]).expanduser().is_file():
            raise fail(key, f"{values[key]!r} is not a readable file")
    if (values["metadata_service_zookeeper_certfile"] == "") != (values["metadata_service_zookeeper_keyfile"] == ""):
        raise fail("metadata_service_zookeeper_keyfile", "certfile and keyfile must be given together")


def _airflow_sql_conn(parser: configparser.ConfigParser, env: Mapping[str, str], path: Path) -> str:
    """Airflow's own metadata DB URL, if this config or the environment names a shared one.

    Airflow's SQLite file is not used: our WAL mode and write locks would change how Airflow's
    own database behaves, so that case falls back to our own embedded file.
    """
    found = _airflow_db_url(parser, env, path)
    return "" if found.startswith("sqlite") else found


def _airflow_db_url(parser: configparser.ConfigParser, env: Mapping[str, str], path: Path) -> str:
    """Airflow's ``sql_alchemy_conn`` as this config file (``[database]``, else ``[core]``) or the
    environment (``AIRFLOW__DATABASE__``/``AIRFLOW__CORE__SQL_ALCHEMY_CONN``, which win) names it; ""."""
    found = ""
    for name in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__SQL_ALCHEMY_CONN"):
        if env.get(name):
            found = found or env[name].strip()
    for section in ("database", "core"):
        if parser.has_option(section, "sql_alchemy_conn"):
            found = found or _airflow_value(parser, section, "sql_alchemy_conn", path).strip()
    return found


# Airflow's default [scheduler] scheduler_heartbeat_sec: how often a scheduler stamps its job row.
AIRFLOW_SCHEDULER_HEARTBEAT_SEC = 5.0
# The drivers Airflow's database may be read with (each held to the deadline; mysqldb URLs run on pymysql).
_JOB_DRIVERS = {
    "sqlite": ("pysqlite",),
    "mysql": ("pymysql", "mysqldb"),
    "mariadb": ("pymysql", "mysqldb"),
    "postgresql": ("psycopg2", "psycopg"),
}
MAX_AIRFLOW_HOSTNAME = 500  # Airflow's job.hostname is a VARCHAR(500)


def _check_job_heartbeat(
    values: dict[str, Any],
    nodes: tuple[str, ...],
    parser: configparser.ConfigParser,
    env: Mapping[str, str],
    path: Path,
    fail: Callable[[str, str], ConfigError],
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The keys of the Airflow job heartbeat check: (Airflow's database URL, node -> hostname)."""
    key = "scheduler_job_heartbeat_timeout"
    timeout = values[key]
    text, where = (
        env.get("AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC"),
        "environment AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC",
    )
    if text is None and parser.has_option("scheduler", "scheduler_heartbeat_sec"):
        text, where = _airflow_value(parser, "scheduler", "scheduler_heartbeat_sec", path), f"{path} [scheduler]"
    heartbeat = AIRFLOW_SCHEDULER_HEARTBEAT_SEC
    if text is not None:
        try:
            heartbeat = float(text)
        except ValueError:
            raise ConfigError(f"{where}: scheduler_heartbeat_sec = {text.strip()!r}: not a number") from None
    if not timeout > heartbeat:
        raise fail(
            key,
            f"{timeout:g}s must be larger than Airflow's [scheduler] scheduler_heartbeat_sec ({heartbeat:g}s), how "
            "often a scheduler writes its heartbeat (Airflow's scheduler_health_check_threshold, 30s, is a good value)",
        )
    url_key = "scheduler_job_sql_conn"
    url = values[url_key] or _airflow_db_url(parser, env, path) or f"sqlite:///{airflow_home(env) / 'airflow.db'}"
    _check_job_db(url, url_key, fail)
    hostnames: dict[str, str] = {}
    for entry in values["scheduler_job_hostnames"]:
        node, sep, hostname = entry.rpartition(":")
        node, hostname = node.strip(), hostname.strip()
        if not sep or not node or not hostname:
            raise fail("scheduler_job_hostnames", f"{entry[:60]!r} is not node:hostname")
        if node not in nodes:
            raise fail("scheduler_job_hostnames", f"{node[:40]!r} is not in scheduler_nodes_in_cluster")
        if node in hostnames:
            raise fail("scheduler_job_hostnames", f"{node} is named twice")
        if len(hostname) > MAX_AIRFLOW_HOSTNAME or any(c.isspace() for c in hostname):
            raise fail("scheduler_job_hostnames", f"{hostname[:40]!r} is not a host name as Airflow records it")
        hostnames[node] = hostname
    return url, tuple(hostnames.items())


def _check_job_db(url: str, key: str, fail: Callable[[str, str], ConfigError]) -> None:
    """Airflow's database URL: one we can read, held to a deadline; never shown (it may hold a password)."""
    if "://" not in url:
        raise fail(key, "not a SQLAlchemy URL (dialect+driver://...)")
    authority = re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0]
    if authority.count("@") > 1:
        raise fail(key, "the user or password holds an unescaped '@': write it as %40 (URL-encode the password)")
    from sqlalchemy.engine import make_url  # here: only a controller with this check on loads SQLAlchemy for it
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
    except (ArgumentError, ValueError):
        raise fail(key, "not a valid SQLAlchemy URL (dialect+driver://...)") from None
    if backend not in _JOB_DRIVERS:
        raise fail(key, f"database {backend[:40]!r} is not supported (sqlite, mysql, mariadb, postgresql)")
    if "+" in parsed.drivername and parsed.drivername.split("+", 1)[1] not in _JOB_DRIVERS[backend]:
        names = ", ".join(f"{backend}+{d}://" for d in _JOB_DRIVERS[backend])
        raise fail(key, f"driver {parsed.drivername.split('+', 1)[1][:40]!r} cannot be held to a deadline; use {names}")
    database = parsed.database or ""
    if backend == "sqlite" and (not database or ":memory:" in database or "mode=memory" in url):
        raise fail(key, "an in-memory SQLite database is private to one process; name Airflow's file")


def _airflow_value(parser: configparser.ConfigParser, section: str, key: str, path: Path) -> str:
    """A value of one of Airflow's own sections, interpolated as Airflow reads it ("%%" is "%")."""
    try:
        return parser.get(section, key)
    except configparser.InterpolationError:
        raise ConfigError(
            f"{path} [{section}] {key}: a '%' that Airflow would not accept either (write a literal '%' as '%%')"
        ) from None


def _smtp(parser: configparser.ConfigParser, env: Mapping[str, str], path: Path) -> SmtpConfig:
    """Airflow's ``[smtp]`` section, with ``AIRFLOW__SMTP__*`` overrides."""
    found: dict[str, Any] = {}
    for key, parse in SMTP_KEYS.items():
        text, where = None, ""
        if parser.has_option("smtp", key):
            text, where = _airflow_value(parser, "smtp", key, path), f"{path} [smtp]"
        env_name = "AIRFLOW__SMTP__" + key.upper()
        if env.get(env_name) is not None:
            text, where = env[env_name], f"environment {env_name}"
        if text is None:
            continue
        try:
            found[key[len("smtp_") :]] = parse(text)
        except ValueError as exc:
            reason = str(exc) if "must" in str(exc) else "not a valid value"
            shown = "***" if key == "smtp_password" else repr(text.strip())
            raise ConfigError(f"{where}: {key} = {shown}: {reason}") from None
    return SmtpConfig(**found)


DEFAULT_CONFIG_TEMPLATE = """\
[scheduler_failover]
# Every master node that may run the scheduler, comma separated. Each runs a controller.
scheduler_nodes_in_cluster = {nodes}

# This node's name as it appears in scheduler_nodes_in_cluster (default: the hostname).
# current_host = {current}

# Nodes whose scheduler processes are visible from this machine (same host / PID namespace).
# The controller's own node is always local. Other nodes are reached over SSH.
# local_nodes =

# Where the lease and the cluster state live.
#   SQLMetadataService (alias: sql)  - SQLAlchemy: embedded SQLite, MySQL/MariaDB, PostgreSQL
#   ZookeeperMetadataService (alias: zookeeper)
metadata_service_type = SQLMetadataService

# SQLAlchemy URL of the metastore. Default: Airflow's own sql_alchemy_conn from this file's
# [database] or [core] section, else an embedded SQLite file in state_dir (one host only).
# Example: mysql+pymysql://sfc:secret@db.example.com:3306/airflow
# metadata_service_sql_conn =

# ZooKeeper servers, comma separated, with an optional chroot (used with ZookeeperMetadataService):
#   zk1:2181,zk2:2181,zk3:2181/airflow
metadata_service_zookeeper_nodes = localhost:2181
# Root znode of the controller's records (under the chroot). Its session timeout is lease_ttl:
# the servers' minSessionTimeout/maxSessionTimeout must allow it.
metadata_service_zookeeper_root = /scheduler_failover_controller
# Digest authentication "user:password"; the controller's znodes then get an ACL for that user only.
metadata_service_zookeeper_auth =
# TLS to the ensemble (ZooKeeper's secureClientPort): CA bundle, client certificate and key.
metadata_service_zookeeper_use_ssl = false
metadata_service_zookeeper_ca =
metadata_service_zookeeper_certfile =
metadata_service_zookeeper_keyfile =
metadata_service_zookeeper_verify_certs = true

# Directory for the embedded SQLite metastore, the scheduler log and lock files.
# Default: $AIRFLOW_HOME/scheduler_failover
# state_dir =

# Seconds between two controller cycles: how often the scheduler is probed (as in 2016). It may
# be longer than the lease: leases are renewed on their own clock, every
# min(poll_frequency, lease_ttl / 4) seconds (the "renewal interval").
poll_frequency = 10

# Seconds a lease (leadership, scheduler placement) lasts without renewal. Rules:
# renewal interval + 2 x metastore_timeout <= lease_ttl, and
# renewal interval + 2 x metastore_timeout + scheduler_stop_timeout + safety margin
# (10% of lease_ttl, at least 0.2s) <= lease_ttl.
lease_ttl = 40

# Seconds a metastore call may take, as a hard deadline (connect, each statement).
# Default: min(5, (lease_ttl - renewal interval) / 4).
# metastore_timeout =

# Words of a scheduler's command line, matched against each process's arguments.
# {{node}} is replaced by the node name.
scheduler_process_match = airflow scheduler

# Command that starts the scheduler (run by /bin/sh, detached). Empty: run `airflow scheduler`
# detached, its output appended to state_dir/scheduler.log. ";;" separates commands as in 2016.
airflow_scheduler_start_command =

# Command that stops the scheduler. Empty: SIGTERM to every scheduler process tree,
# SIGKILL after scheduler_stop_timeout.
airflow_scheduler_stop_command =

# Seconds to wait for a started scheduler to show up before the start counts as failed.
scheduler_start_timeout = 60

# Seconds between SIGTERM and SIGKILL when stopping. Must be < lease_ttl - renewal interval.
# The leash beside each scheduler starts stopping it this long before its placement deadline.
# Default: min(10, (lease_ttl - renewal interval) / 4).
# scheduler_stop_timeout =

# Failed restarts in place before the scheduler is moved to another node.
max_restart_attempts = 3

# Failed start attempts before an alert is sent (once per incident). Every move alerts too.
retry_count_before_alerting = 5

# Seconds a node that failed to start the scheduler is avoided as a move target (doubles on
# every further failure, up to 8x). Default: max(3 x poll_frequency, 5).
# move_backoff =

# Command run locally with the node name as its last argument to power off / isolate a node
# that cannot be reached and runs no controller of its own (STONITH). Empty: none.
fence_command =

# Alerts: comma separated recipients; SMTP settings come from Airflow's [smtp] section.
alert_to_email =
alert_email_subject = Airflow Alert - Scheduler Failover Controller
# Optional URL that receives each alert as a JSON POST.
alert_webhook_url =

# Logging. Logs always go to stderr (journald). With logging_dir set they also go to a
# rotating file there.
logging_level = INFO
logging_dir =
logging_file_name = scheduler_failover_controller.log
logs_rotate_when = midnight
logs_rotate_backup_count = 7

# SSH to other master nodes (see README).
ssh_user =
ssh_port = 22
ssh_key_file =
# reject (default): unknown host keys are refused; warn: accepted with a warning;
# auto_add: accepted and saved. A changed host key is always refused.
ssh_host_key_policy = reject
# Seconds an SSH step may take: connecting (TCP, banner, key exchange, authentication), opening
# a channel, a remote command; a whole probe fits in it. A node that does not answer in time is
# "unknown". Must be < lease_ttl - renewal interval. Default: min(10, (lease_ttl - renewal interval) / 4).
# ssh_timeout =
# known_hosts file to check host keys against (auto_add appends to it).
# Empty: ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts.
ssh_known_hosts_file =
# This project's command on the other masters, used to probe and kill there with psutil
# (an absolute path when its virtualenv is not on the SSH session's PATH). When it is not
# found there, or this is empty, a POSIX shell fallback (ps, kill) is used instead.
ssh_remote_command = scheduler_failover_controller

# Port of a Prometheus text endpoint on 127.0.0.1; 0 disables it.
metrics_port = 0

# Airflow's scheduler health check (Airflow: [scheduler] enable_health_check = True, port 8974),
# {{node}} replaced by the node name, e.g. http://{{node}}:8974/health. A running scheduler that
# fails it scheduler_health_failures times in a row counts as unhealthy and is restarted.
# Empty: only the process is checked.
scheduler_health_url =
scheduler_health_failures = 3

# Airflow's own record of the scheduler, without its health server: the heartbeat of the node's
# newest SchedulerJob row in Airflow's job table. A running scheduler whose heartbeat is older than
# this many seconds (by the database server's clock) scheduler_health_failures times in a row counts
# as unhealthy and is restarted; a new scheduler gets until its first fresh heartbeat or
# scheduler_start_timeout. Must be larger than Airflow's [scheduler] scheduler_heartbeat_sec (5);
# Airflow's scheduler_health_check_threshold (30) is a good value. A database that cannot be read
# (within metastore_timeout) is logged and restarts nothing. 0 or empty: off.
scheduler_job_heartbeat_timeout = 0
# SQLAlchemy URL of Airflow's database, only read (SQLite read-only). Default: Airflow's
# sql_alchemy_conn from this file's [database] or [core] section or AIRFLOW__DATABASE__SQL_ALCHEMY_CONN,
# else $AIRFLOW_HOME/airflow.db. mysql:// and mysql+mysqldb:// are read with pymysql.
# scheduler_job_sql_conn =
# The host name Airflow records for each node's scheduler ([core] hostname_callable, by default the
# fully qualified name), as node:hostname, comma separated. Default: the node name, or any name
# that starts with it and a dot (node1 matches node1.example.com).
# scheduler_job_hostnames = node1:node1.example.com, node2:ip-10-0-0-2.ec2.internal
"""


def default_config_text(current_host: str) -> str:
    """A fully commented config with every key, for ``init``."""
    return DEFAULT_CONFIG_TEMPLATE.format(nodes=current_host, current=current_host)
