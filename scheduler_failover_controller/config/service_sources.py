"""The raw values of the services' sections: ``[scheduler_failover_service_NAME]`` in the config
file, then the ``AIRFLOW__SCHEDULER_FAILOVER_SERVICE_NAME__KEY`` variables over it (NAME and KEY
upper-cased, as Airflow's own variables), each remembered with where it came from.

Which names are services (the ``services`` key) is checked by :mod:`.service_load`.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping
from pathlib import Path

from ..exceptions import ConfigError
from .service_keys import SERVICE_COMMAND_KEYS, SERVICE_ENV_PREFIX, SERVICE_KEYS
from .services import SERVICE_SECTION_PREFIX

Raw = dict[str, tuple[str, str]]  # key -> (raw text, where it came from)


def service_raw(parser: configparser.ConfigParser, path: Path, env: Mapping[str, str]) -> dict[str, Raw]:
    """Each service name -> its raw keys: the file's section, the environment over it."""
    merged = _from_file(parser, path)
    for name, raw in _from_env(env).items():
        merged.setdefault(name, {}).update(raw)
    for raw in merged.values():
        for key, (value, where) in raw.items():
            check_text(key, value, where, key in SERVICE_COMMAND_KEYS)
    return merged


def check_text(key: str, value: str, where: str, command: bool) -> None:
    """One line (a command may continue on more) and no control character."""
    if "\n" in value.strip() and not command:
        raise ConfigError(f"{where}: {key} must be one line (an indented line joins the previous key's value)")
    allowed = "\t\n" if command else "\t"
    if any((ord(c) < 32 and c not in allowed) or c == "\x7f" for c in value):
        raise ConfigError(f"{where}: {key} contains a control character")


def _from_file(parser: configparser.ConfigParser, path: Path) -> dict[str, Raw]:
    out: dict[str, Raw] = {}
    for section in parser.sections():
        if not section.startswith(SERVICE_SECTION_PREFIX):
            if section.strip().lower().replace("-", "_").startswith(SERVICE_SECTION_PREFIX):
                wanted = SERVICE_SECTION_PREFIX + "NAME"
                raise ConfigError(f"{path}: [{section}]: section names are case-sensitive; name it [{wanted}]")
            continue
        name = section[len(SERVICE_SECTION_PREFIX) :]
        raw: Raw = {}
        for key, value in parser.items(section, raw=True):
            if key not in SERVICE_KEYS:
                raise ConfigError(f"{path} [{section}]: {key}: unknown key (known: {', '.join(SERVICE_KEYS)})")
            raw[key] = (value, f"{path} [{section}]")
        out[name] = raw
    return out


def _from_env(env: Mapping[str, str]) -> dict[str, Raw]:
    out: dict[str, Raw] = {}
    for variable, value in env.items():
        if not variable.startswith(SERVICE_ENV_PREFIX):
            continue
        rest = variable[len(SERVICE_ENV_PREFIX) :]
        # The longest key that ends the name: ANTI_COLOCATE_WITH before COLOCATE_WITH.
        keys = sorted(SERVICE_KEYS, key=len, reverse=True)
        key = next((k for k in keys if rest.endswith("__" + k.upper()) and len(rest) > len(k) + 2), None)
        if key is None:
            known = ", ".join(k.upper() for k in SERVICE_KEYS)
            raise ConfigError(
                f"environment {variable}: not {SERVICE_ENV_PREFIX}<NAME>__<KEY> with a KEY of a service ({known})"
            )
        name = rest[: -len(key) - 2].lower()
        out.setdefault(name, {})[key] = (value, f"environment {variable}")
    return out
