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
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..boot import boot_id
from ..trust import directory_problem
from .procs import PR_SET_NAME, prctl
from .records import leash_dir
from .spec import ENV_NODE, ENV_STATE_DIR, SERVE_BANNER

log = logging.getLogger(__name__)

SERVE_NAME = b"sfc-leash-s"

# --- the deadline channel -----------------------------------------------------------------------


def deadline_path(state_dir: Path, node: str) -> Path:
    """The node's deadline file: ``state_dir/leash/NODE.deadline``."""
    return leash_dir(state_dir) / f"{node}.deadline"


@dataclass(frozen=True)
class Renewal:
    """One write of the deadline file: ``DEADLINE BOOT_ID WRITTEN_AT``.

    ``deadline`` and ``written`` are readings of the host's ``time.monotonic()``, which count from
    the boot ``boot`` names: the value first, so that a reader that knows only the number finds it.
    """

    deadline: float
    boot: str
    written: float

    def text(self) -> str:
        return f"{self.deadline!r} {self.boot or '-'} {self.written!r}\n"


_failing: set[str] = set()  # deadline files whose last write failed (one warning per streak)
_failing_lock = threading.Lock()  # the cycle and the renewal thread both write deadlines


def write_deadline(state_dir: Path, node: str, deadline: float) -> bool:
    """Renew ``node``'s leash on this machine: ``deadline`` is a ``time.monotonic()`` value.

    Atomic (a temp file renamed over the old one), 0600 in a 0700 directory, no fsync (the file
    names its boot: after a reboot no leash takes it). Never raises: False when it could not be
    written (full or read-only disk, no file descriptor left), with one warning until a write
    succeeds again. The caller must then not renew the placement beyond what the leash holds.
    """
    path = deadline_path(state_dir, node)
    error = _write_deadline(path, deadline)
    key = str(path)
    with _failing_lock:
        was = key in _failing
        if error is None:
            _failing.discard(key)
        else:
            _failing.add(key)
    if error is None:
        if was:
            log.info("%s: leash deadline written again (%s)", node, path)
        return True
    if was:
        log.debug("%s: leash deadline still not written to %s: %s", node, path, error)
        return False
    log.warning("%s: cannot renew the leash: writing %s failed: %s", node, path, error)
    return False


def _write_deadline(path: Path, deadline: float) -> str | None:
    """Write the deadline file; None, or why it could not be written."""
    if not math.isfinite(deadline):
        return f"not a deadline: {deadline!r}"
    return write_atomically(path, Renewal(deadline, boot_id(), time.monotonic()).text())


def ensure_private_dir(directory: Path) -> None:
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
        ensure_private_dir(path.parent)
        problem = directory_problem(path.parent)  # another user could replace what is written
        if problem:
            return problem
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


def read_renewal(path: Path) -> Renewal | None:
    """The renewal in ``path``; None when absent, unreadable, not a regular file of this user, or
    not a finite deadline with its boot and the time it was written."""
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
        words = data.decode("ascii").split()
        value, boot, written = float(words[0]), words[1], float(words[2])
    except (UnicodeDecodeError, ValueError, IndexError):
        return None
    if not (math.isfinite(value) and math.isfinite(written)):
        return None
    return Renewal(value, "" if boot == "-" else boot, written)


def read_deadline_file(path: Path) -> float | None:
    """The deadline in ``path`` (see :func:`read_renewal`), whatever boot it names."""
    renewal = read_renewal(path)
    return None if renewal is None else renewal.deadline


class DeadlineFile:
    """The leash's end of the channel: what the file may give a leash started at ``started``.

    A leash's deadline is the one its starter gave it until the file holds a renewal that was
    written on this boot at or after ``started`` (this host's monotonic clock, as the file's
    writers read it); then at most ``written + ttl`` of it. A file left by an earlier leash, an
    earlier boot or a starter that wrote before the launch never counts: it cannot extend a
    deadline its starter did not give.
    """

    def __init__(self, path: Path, ttl: float, started: float) -> None:
        self.path = path
        self.ttl = ttl
        self.started = started
        self.seen: tuple[int, int, int, int] | None = None

    def take(self) -> tuple[float | None, str]:
        """A new deadline the file gives (or None), and a complaint to log (or "")."""
        try:
            info = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return None, ""
        seen = (info.st_ino, info.st_mtime_ns, info.st_size, info.st_uid)
        if seen == self.seen:
            return None, ""
        self.seen = seen
        renewal = read_renewal(self.path)
        if renewal is None:
            return None, f"ignored {self.path}: not a regular file of uid {os.geteuid()} holding a renewal"
        if renewal.boot != boot_id():
            return None, f"ignored {self.path}: written during another boot ({renewal.boot or 'unknown'})"
        if renewal.written < self.started or renewal.written > time.monotonic():
            return None, ""  # written before this leash started: its starter's deadline stands
        return min(renewal.deadline, renewal.written + self.ttl), ""


# --- the renewal end over SSH ----------------------------------------------------------------------


#: the longest request line ``serve`` reads (``set`` with any float fits many times over)
LINE_MAX = 4096


def bounded_lines(stream: BinaryIO, limit: int = LINE_MAX) -> Iterator[bytes | None]:
    """The lines of ``stream``, each read at most ``limit`` bytes at a time: a longer one is
    read on to its newline and given as None, so no input can grow this process's memory."""
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        while line and not line.endswith(b"\n"):  # discard the rest of the line
            line = stream.readline(limit + 1)
        yield None


def serve(env: Mapping[str, str]) -> int:
    """Answer renewals on stdin/stdout until end of input: ``clock`` -> ``clock MONOTONIC``;
    ``set DEADLINE`` -> ``ok`` or ``error WHY`` (DEADLINE on this host's monotonic clock); a line
    over ``LINE_MAX`` bytes -> ``error line too long``."""
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
    for raw in bounded_lines(sys.stdin.buffer):
        words = [] if raw is None else raw.decode(errors="replace").split()
        if raw is None:
            out.write("error line too long\n")
        elif words == ["clock"]:
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
