"""Value parsers: each takes a key's raw text and returns its value, or raises ValueError.

A ValueError whose text says "must ..." is shown to the user as the reason; any other becomes
"not a valid value". The bounds here are what the daemon can run with for a week.
"""

from __future__ import annotations

import configparser
import shlex
from collections.abc import Callable

SQL_SERVICE = "SQLMetadataService"
ZOOKEEPER_SERVICE = "ZookeeperMetadataService"
_SERVICE_ALIASES = {
    "sqlmetadataservice": SQL_SERVICE,
    "sql": SQL_SERVICE,
    "zookeepermetadataservice": ZOOKEEPER_SERVICE,
    "zookeeper": ZOOKEEPER_SERVICE,
}

# Bounds of every number (README, Configuration): what the daemon can run with for a week, so no
# value ever overflows a timer, a socket timeout or a driver's integer later (a wait of a day is
# already far beyond any useful lease or timeout).
MAX_SECONDS = 86400.0
MIN_SECONDS = 0.01
MIN_POLL_FREQUENCY = 0.1  # each cycle probes and logs a line: below this it only burns CPU
MIN_LEASE_TTL = 1.0
MAX_COUNT = 1_000_000

Parser = Callable[[str], object]


def text(raw: str) -> str:
    """A string, stripped."""
    return raw.strip()


def command(raw: str) -> str:
    """A shell command, in the 2016 controller's conventions."""
    # 2016's conventions: ";;" separated its start commands, and "\\;" kept a ";" from being
    # read as the start of an inline comment in its stop command; both mean ";" to the shell.
    return raw.strip().replace(";;", ";").replace("\\;", ";")


def user(raw: str) -> str:
    """A user name or uid of this machine (empty: none); ValueError naming an unknown user."""
    from ..ownership import resolve_user

    value = raw.strip()
    if value:
        resolve_user(value)
    return value


def comma_list(raw: str) -> tuple[str, ...]:
    """Comma separated items, stripped, empty ones dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def seconds(minimum: float) -> Callable[[str], float]:
    """A number of seconds from ``minimum`` to MAX_SECONDS (not NaN, not inf)."""

    def parse(raw: str) -> float:
        value = float(raw)
        if not minimum <= value <= MAX_SECONDS:  # also NaN and inf
            raise ValueError(f"must be a positive number of seconds, from {minimum:g} to {MAX_SECONDS:g}")
        return value

    return parse


positive = seconds(MIN_SECONDS)


def count(raw: str) -> int:
    """A whole number from 0 to MAX_COUNT."""
    value = int(raw.strip())
    if not 0 <= value <= MAX_COUNT:
        raise ValueError(f"must be between 0 and {MAX_COUNT}")
    return value


def off_or_seconds(raw: str) -> float:
    """Seconds, or 0 (also empty) for "off"."""
    if raw.strip() in ("", "0"):
        return 0.0
    return positive(raw)


def port_range(low: int) -> Callable[[str], int]:
    """A port number from ``low`` to 65535."""

    def parse(raw: str) -> int:
        value = int(raw.strip())
        if not low <= value <= 65535:
            raise ValueError(f"must be a port number between {low} and 65535")
        return value

    return parse


port_or_off = port_range(0)  # metrics_port: 0 is "off"
tcp_port = port_range(1)  # a port to connect to


def boolean(raw: str) -> bool:
    """A boolean in the words configparser (and so Airflow) accepts: 1/0, yes/no, true/false, on/off."""
    try:
        return configparser.ConfigParser.BOOLEAN_STATES[raw.strip().lower()]
    except KeyError:
        raise ValueError("must be true or false") from None


def choice(*choices: str) -> Callable[[str], str]:
    """One of ``choices`` (case-insensitive), lowercased."""

    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return value

    return parse


def command_words(raw: str) -> str:
    """A command that shlex can split into words (checked here, split where it is run)."""
    value = raw.strip()
    try:
        shlex.split(value)
    except ValueError:
        raise ValueError("must be a command that can be split into words (check its quotes)") from None
    return value


def service(raw: str) -> str:
    """A metastore type, by its 2016 class name or its short alias."""
    try:
        return _SERVICE_ALIASES[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"must be {SQL_SERVICE} (sql) or {ZOOKEEPER_SERVICE} (zookeeper)") from None


def level(raw: str) -> str:
    """A logging level name, uppercased."""
    value = raw.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return value


def rotate_when(raw: str) -> str:
    """A TimedRotatingFileHandler ``when``, lowercased."""
    value = raw.strip().lower()
    if value not in ("s", "m", "h", "d", "midnight") and not (
        len(value) == 2 and value[0] == "w" and value[1] in "0123456"
    ):
        raise ValueError("must be S, M, H, D, midnight or W0-W6")
    return value
