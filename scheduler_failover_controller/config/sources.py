"""Where the raw values come from: the config file's section, then the environment.

:func:`merge` reads the file (``--config``, else ``$SCHEDULER_FAILOVER_CONTROLLER_CONFIG``, else
``$AIRFLOW_HOME/airflow.cfg``), takes our section raw and the ``AIRFLOW__SCHEDULER_FAILOVER__<KEY>``
variables over it (the services' sections likewise: :mod:`.service_sources`), and remembers where
each value came from for the error messages. A secret key may also be given as ``KEY_cmd`` or
``KEY_file`` (see :mod:`.indirect`).
"""

from __future__ import annotations

import configparser
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..exceptions import ConfigError
from ..trust import command_source_problem
from .indirect import choose_secrets, split_indirect
from .keys import COMMAND_KEYS, KEYS, SECTION
from .model import airflow_home
from .service_sources import Raw, service_raw
from .services import SERVICE_SECTION_PREFIX

ENV_PREFIX = "AIRFLOW__SCHEDULER_FAILOVER__"
CONFIG_ENV = "SCHEDULER_FAILOVER_CONTROLLER_CONFIG"
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # airflow.cfg is ~100 KB; anything bigger is not a config


@dataclass(frozen=True)
class Sources:
    """The merged raw values, with the file they were read from (and its other sections)."""

    path: Path
    parser: configparser.ConfigParser  # the whole file: Airflow's own sections are read from it too
    env: Mapping[str, str]
    raw: dict[str, tuple[str, str]]  # key -> (raw text, where it came from)
    services: dict[str, Raw] = field(default_factory=dict)  # service name -> its section's raw keys

    def origin(self, key: str) -> str:
        """Where ``key``'s value came from (the file's section for a default)."""
        return self.raw[key][1] if key in self.raw else f"{self.path} [{SECTION}] (default)"

    def fail(self, key: str, message: str) -> ConfigError:
        """The one-line error about ``key``, naming where its value came from."""
        return ConfigError(f"{self.origin(key)}: {key}: {message}")

    def service_origin(self, name: str, key: str) -> str:
        """Where ``key`` of service ``name`` came from (its section, for a default)."""
        raw = self.services.get(name, {})
        return raw[key][1] if key in raw else f"{self.path} [{SERVICE_SECTION_PREFIX}{name}] (default)"

    def service_fail(self, name: str, key: str, message: str) -> ConfigError:
        """The one-line error about ``key`` of service ``name``, naming where its value came from."""
        return ConfigError(f"{self.service_origin(name, key)}: {key}: {message}")

    def airflow_value(self, section: str, key: str) -> str:
        """A value of one of Airflow's own sections, interpolated as Airflow reads it ("%%" is "%")."""
        try:
            return self.parser.get(section, key)
        except configparser.InterpolationError:
            problem = "a '%' that Airflow would not accept either (write a literal '%' as '%%')"
            raise ConfigError(f"{self.path} [{section}] {key}: {problem}") from None


def config_path(explicit: str | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read, and whether the user named it (then it must exist)."""
    if explicit:
        return Path(explicit).expanduser(), True
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser(), True
    return airflow_home(env) / "airflow.cfg", False


def merge(explicit_path: str | None, env: Mapping[str, str]) -> Sources:
    """The raw values of our keys: the file's section, then the environment over it."""
    path, required = config_path(explicit_path, env)
    parser, text = _read_file(path, required)
    for name in parser.sections():
        if _same_section(name):
            raise ConfigError(f"{path}: [{name}]: section names are case-sensitive; name it [{SECTION}]")
    if required and not parser.has_section(SECTION):
        raise ConfigError(f"{path}: no [{SECTION}] section (a file named by --config or ${CONFIG_ENV} must have one)")
    raw = choose_secrets(_from_file(parser, text, path), _from_env(env))
    for key, (value, where) in raw.items():
        allowed = "\t\n" if key in COMMAND_KEYS else "\t"
        if "\n" in value.strip() and key not in COMMAND_KEYS:
            raise ConfigError(f"{where}: {key} must be one line")
        if any((ord(c) < 32 and c not in allowed) or c == "\x7f" for c in value):
            raise ConfigError(f"{where}: {key} contains a control character")
    return Sources(path, parser, env, raw, service_raw(parser, path, env))


def _from_file(parser: configparser.ConfigParser, text: str, path: Path) -> dict[str, tuple[str, str]]:
    """Our section's keys, raw (no interpolation) as the 2016 controller read them."""
    raw: dict[str, tuple[str, str]] = {}
    if not parser.has_section(SECTION):
        return raw
    for key, value in parser.items(SECTION, raw=True):
        if key not in KEYS and split_indirect(key) is None:
            raise ConfigError(f"{path}: [{SECTION}] {key}: unknown key")
        raw[key] = (value, f"{path} [{SECTION}]")
        if "\n" in value.strip() and key not in COMMAND_KEYS:
            lines = _key_line(text, key)
            at = f"line {lines[1]} (indented) continues {key} of line {lines[0]}" if lines else f"{key} continues"
            raise ConfigError(f"{path}: {at}: {key} must be one line (an indented line joins the previous key's value)")
    return raw


def _from_env(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """The ``AIRFLOW__SCHEDULER_FAILOVER__<KEY>`` variables."""
    raw: dict[str, tuple[str, str]] = {}
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            key = name[len(ENV_PREFIX) :].lower()
            if key not in KEYS and split_indirect(key) is None:
                raise ConfigError(f"environment {name}: unknown key {key}")
            raw[key] = (value, f"environment {name}")
    return raw


def _read_file(path: Path, required: bool) -> tuple[configparser.ConfigParser, str]:
    """The parsed file and its text; ("", empty parser) when an optional file is absent."""
    # No [DEFAULT] inheritance: its keys would leak into our section as unknown keys.
    # Airflow reads airflow.cfg with interpolation ("%%" is "%"): so are its sections here. Our
    # own section is read raw, as the 2016 controller read it (see Sources.airflow_value).
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
    text = read_config_text(path)
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: not a valid INI file: {first}") from None
    return parser, text


def read_config_text(path: Path) -> str:
    """A config file's text: a regular file only (a FIFO would block, /dev/zero never end), bounded,
    of this user's or root's and writable by nobody else (it names commands this user runs)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: cannot read config file: not a regular file")
        problem = command_source_problem(path, st)  # checked on the file read, links followed
        if problem:
            raise ConfigError(f"{path}: not trusted: {problem}")
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
