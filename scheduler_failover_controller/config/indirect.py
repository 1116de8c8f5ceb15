"""Secrets read from a command or a file instead of the config file or the environment.

As in Airflow, a secret key ``KEY`` may be given as ``KEY_cmd``: a command (split into words as a
shell would, run without one) whose output, stripped, is the value. ``KEY_file`` names a file
holding it, which must be a regular file of this user's that nobody else may write (read
without following a link). Airflow's ``KEY_secret`` (a path in Airflow's secrets backend) is not
read: the controller has no secrets backend, and its command line serves through ``KEY_cmd``.

Precedence, as Airflow's: the environment before the file; in each, ``KEY`` before ``KEY_cmd``
before ``KEY_file``. A command that fails, hangs or prints nothing is one ConfigError line.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path

from ..exceptions import ConfigError
from ..trust import UntrustedFile, read_private
from .keys import KEYS

CMD, FILE, SECRET = "_cmd", "_file", "_secret"
# The keys that hold secrets (each has a ``redact``): the only ones read indirectly.
SECRET_KEYS = frozenset(name for name, key in KEYS.items() if key.redact is not None)
COMMAND_TIMEOUT = 30.0  # seconds a secret's command may take
MAX_SECRET = 65536  # bytes of a secret's file or a command's output

Raw = Mapping[str, "tuple[str, str]"]  # key -> (text, where it came from)


def split_indirect(name: str) -> tuple[str, str] | None:
    """``(KEY, suffix)`` when ``name`` is ``KEY_cmd``, ``KEY_file`` or ``KEY_secret`` of a secret key."""
    for suffix in (CMD, FILE, SECRET):
        if name.endswith(suffix) and name[: -len(suffix)] in SECRET_KEYS:
            return name[: -len(suffix)], suffix
    return None


def choose_secrets(file_raw: Raw, env_raw: Raw, timeout: float = COMMAND_TIMEOUT) -> dict[str, tuple[str, str]]:
    """The merged raw values: the environment over the file, each secret key from its first form."""
    merged = {k: v for k, v in file_raw.items() if split_indirect(k) is None}
    merged.update({k: v for k, v in env_raw.items() if split_indirect(k) is None})
    for key in SECRET_KEYS:
        merged.pop(key, None)
        found = first_form(key, [env_raw, file_raw], timeout)
        if found is not None:
            merged[key] = found
    return merged


def first_form(key: str, sources: list[Raw], timeout: float = COMMAND_TIMEOUT) -> tuple[str, str] | None:
    """``key``'s (value, where) from the first source that gives it in any form, else None."""
    for raw in sources:
        for suffix in ("", CMD, FILE, SECRET):
            if key + suffix in raw:
                text, where = raw[key + suffix]
                return resolve(key, suffix, text, where, timeout), where
    return None


def resolve(key: str, suffix: str, text: str, where: str, timeout: float = COMMAND_TIMEOUT) -> str:
    """The value that ``KEY<suffix> = text`` stands for (``text`` itself without a suffix)."""
    label = f"{where}: {key}{suffix}"
    if suffix == CMD:
        return run_secret_command(text, label, timeout)
    if suffix == FILE:
        return read_secret_file(text, label)
    if suffix == SECRET:
        raise ConfigError(
            f"{label}: the controller reads no secrets backend; use {key}{CMD} (your backend's "
            f"command line) or {key}{FILE}"
        )
    return text


def run_secret_command(command: str, label: str, timeout: float = COMMAND_TIMEOUT) -> str:
    """The stripped output of ``command`` (no shell); ConfigError naming ``label`` if it fails."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ConfigError(f"{label}: cannot be split into words: {exc}") from None
    if not argv:
        raise ConfigError(f"{label}: empty command")
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{label}: {argv[0]} did not finish within {timeout:g}s") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot run {argv[0]}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        said = f": {lines[-1][:120]}" if lines else ""
        raise ConfigError(f"{label}: {argv[0]} exited with {done.returncode}{said}")
    if len(done.stdout) > MAX_SECRET:
        raise ConfigError(f"{label}: {argv[0]} printed more than {MAX_SECRET} bytes")
    value = done.stdout.decode("utf-8", errors="replace").strip()
    if not value:
        raise ConfigError(f"{label}: {argv[0]} printed nothing")
    return value


def read_secret_file(name: str, label: str) -> str:
    """The stripped text of the file ``name``: a regular file of this user's nobody else may write."""
    path = Path(name.strip()).expanduser()
    if not path.is_absolute():
        raise ConfigError(f"{label}: {name.strip()!r} must be an absolute path")
    try:
        data = read_private(path, MAX_SECRET + 1)
    except UntrustedFile as exc:
        raise ConfigError(f"{label}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_SECRET:
        raise ConfigError(f"{label}: {path} is larger than {MAX_SECRET} bytes")
    value = data.strip()
    if not value:
        raise ConfigError(f"{label}: {path} is empty")
    return value
