"""The leash's deadline channel: ``state_dir/leash/NODE.deadline``, written by controllers (locally,
or over SSH through :func:`serve`) and read by the leash."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import stat
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from .leash_procs import PR_SET_NAME, prctl
from .leash_spec import ENV_NODE, ENV_STATE_DIR, SERVE_BANNER
from .probe import leash_dir

log = logging.getLogger(__name__)

SERVE_NAME = b"sfc-leash-s"

# --- the deadline channel -----------------------------------------------------------------------


def deadline_path(state_dir: Path, node: str) -> Path:
    """The node's deadline file: ``state_dir/leash/NODE.deadline``."""
    return leash_dir(state_dir) / f"{node}.deadline"


_failing: set[str] = set()  # deadline files whose last write failed (one warning per streak)


def write_deadline(state_dir: Path, node: str, deadline: float) -> None:
    """Renew ``node``'s leash on this machine: ``deadline`` is a ``time.monotonic()`` value.

    Atomic (a temp file renamed over the old one), 0600 in a 0700 directory, no fsync (a leash
    never outlives a reboot). Never raises: a failure (full or read-only disk) logs one warning
    until a write succeeds again.
    """
    path = deadline_path(state_dir, node)
    error = _write_deadline(path, deadline)
    key = str(path)
    if error is None:
        if key in _failing:
            _failing.discard(key)
            log.info("%s: leash deadline written again (%s)", node, path)
        return
    if key in _failing:
        log.debug("%s: leash deadline still not written to %s: %s", node, path, error)
        return
    _failing.add(key)
    log.warning("%s: cannot renew the leash: writing %s failed: %s", node, path, error)


def _write_deadline(path: Path, deadline: float) -> str | None:
    """Write the deadline file; None, or why it could not be written."""
    if not math.isfinite(deadline):
        return f"not a deadline: {deadline!r}"
    return write_atomically(path, f"{deadline!r}\n")


def _ensure_dir(directory: Path) -> None:
    """``state_dir/leash``: created 0700; tightened to 0700 if it is ours and wider."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    info = os.stat(directory)
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(directory, 0o700)


def write_atomically(path: Path, text: str) -> str | None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        _ensure_dir(path.parent)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            data = text.encode()
            if os.write(fd, data) != len(data):
                raise OSError("short write")
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return exc.strerror or str(exc)
    return None


def read_deadline_file(path: Path) -> float | None:
    """The deadline in ``path``; None when absent, unreadable, not a regular file of this user,
    or not a finite number."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return None
        data = os.read(fd, 256)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        value = float(data.decode("ascii").split()[0])
    except (UnicodeDecodeError, ValueError, IndexError):
        return None
    return value if math.isfinite(value) else None


# --- the renewal end over SSH ----------------------------------------------------------------------


def serve(env: Mapping[str, str]) -> int:
    """Answer renewals on stdin/stdout until end of input: ``clock`` -> ``clock MONOTONIC``;
    ``set DEADLINE`` -> ``ok`` or ``error WHY`` (DEADLINE on this host's monotonic clock)."""
    prctl(PR_SET_NAME, SERVE_NAME)
    node, state_dir = env.get(ENV_NODE, ""), env.get(ENV_STATE_DIR, "")
    out = sys.stdout
    if not node or not state_dir:
        out.write(f"error {ENV_NODE} and {ENV_STATE_DIR} must be set\n")
        out.flush()
        return 2
    path = deadline_path(Path(state_dir), node)
    out.write(SERVE_BANNER + "\n")
    out.flush()
    for raw in sys.stdin.buffer:
        words = raw.decode(errors="replace").split()
        if words == ["clock"]:
            out.write(f"clock {time.monotonic()!r}\n")
        elif len(words) == 2 and words[0] == "set":
            try:
                value = float(words[1])
            except ValueError:
                out.write("error not a number\n")
            else:
                error = _write_deadline(path, value)
                out.write("ok\n" if error is None else f"error {error}\n")
        elif words:
            out.write("error unknown request\n")
        out.flush()
    return 0
