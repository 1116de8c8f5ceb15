"""A cgroup (v2) of its own for the scheduler's tree: a container no process of it leaves by itself.

Why: the leash finds its tree by parentage (it is a subreaper), and that holds only while it
lives. When the leash is SIGKILLed, the tree is re-parented to init, and its watcher knows only
what the leash last reported and the leash's session: a process that called ``setsid`` since
(Airflow's task runner does) would escape. Cgroup membership does not depend on parentage or
session, and an unprivileged process cannot move itself out, so the watcher ends the whole tree
with ``cgroup.kill`` (or a SIGKILL of every member on kernels before 5.14) whatever became of the
leash.

Where: ``sfc-leash-NS-PID-TICKS`` (the leash's PID namespace, pid and start time: a pid means
nothing in another PID namespace, so a sweep ends only its own namespace's), a child of the leash's own cgroup
on the unified hierarchy. It needs write access there: root, or a delegated subtree (systemd's
``Delegate=yes``). Elsewhere (cgroup v1 only, no write access, a ``/sys`` without cgroups as
inside ``ip netns exec``) :func:`create` says why not, and the leash keeps to its process scan.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

from .procs import proc_stat

PREFIX = "sfc-leash-"
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-(\d+)-(\d+)\Z")


def pid_namespace() -> int:
    """This process's PID namespace (the inode of ``/proc/self/ns/pid``; 0 when unknown)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


KILL_WAIT = 2.0  # seconds to wait for a killed cgroup to empty


def _unified_mount() -> tuple[Path, str] | None:
    """The cgroup2 mount point and the cgroup path its root is (from /proc/self/mountinfo)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:
        before, sep, after = line.partition(" - ")
        fields = before.split()
        if sep and after.split()[:1] == ["cgroup2"] and len(fields) >= 5:
            return Path(fields[4].replace("\\040", " ")), fields[3]
    return None


def own_cgroup(pid: int | str = "self") -> str | None:
    """The unified-hierarchy cgroup of ``pid`` (``0::PATH`` in /proc/PID/cgroup), or None."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("0::"):
                    return line[3:].rstrip("\n")
    except OSError:
        pass
    return None


def parent_dir() -> Path | str:
    """This process's own cgroup directory, or why there is none to use."""
    mount = _unified_mount()
    if mount is None:
        return "no cgroup2 hierarchy is mounted"
    point, root = mount
    own = own_cgroup()
    if own is None:
        return "this process is in no cgroup2 group"
    if not (own == root or own.startswith(root.rstrip("/") + "/")):
        return f"its cgroup {own} is outside the mounted hierarchy"
    path = point / own[len(root) :].lstrip("/")
    if own.endswith(" (deleted)") or not (path / "cgroup.procs").is_file():
        return f"its cgroup {path} is not there"
    return path


def _write(path: Path, text: str) -> None:
    """Write a cgroup control file (never creating one: outside cgroupfs that is an error)."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class Cgroup:
    """One scheduler tree's cgroup (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, pid: int, ticks: int) -> Cgroup | str:
        """A new, empty cgroup for leash ``pid`` (started at ``ticks``), or why there cannot be one."""
        parent = parent_dir()
        if isinstance(parent, str):
            return parent
        path = parent / f"{PREFIX}{pid_namespace()}-{pid}-{ticks}"
        try:
            path.mkdir(mode=0o755)
        except OSError as exc:
            return f"cannot create {path}: {exc.strerror or exc}"
        group = cls(path)
        if not os.access(path / "cgroup.procs", os.W_OK):
            group.remove()
            return f"cannot write {path / 'cgroup.procs'}"
        return group

    def add(self, pid: int) -> None:
        """Move ``pid`` into the cgroup; OSError when that is refused."""
        _write(self.path / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        """The members (an empty list once the cgroup is gone)."""
        try:
            text = (self.path / "cgroup.procs").read_text(encoding="ascii")
        except OSError:
            return []
        return [int(word) for word in text.split() if word.isdigit()]

    def kill(self, wait: float = KILL_WAIT) -> bool:
        """SIGKILL every member, also those forked meanwhile; True when the cgroup is empty after."""
        with contextlib.suppress(OSError):  # before 5.14 (no cgroup.kill): member by member, below
            _write(self.path / "cgroup.kill", "1")
        give_up = time.monotonic() + wait
        while True:
            members = self.pids()
            if not members:
                return True
            for pid in members:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() >= give_up:
                return False
            time.sleep(0.02)

    def remove(self) -> bool:
        """Remove the (empty) cgroup; True when it is gone."""
        try:
            self.path.rmdir()
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True

    def end(self, wait: float = KILL_WAIT) -> bool:
        """Kill what is left and remove the cgroup; True when it is gone."""
        return self.kill(wait) and self.remove()


def leash_alive(pid: int, ticks: int) -> bool:
    """Whether the leash ``pid`` that started at ``ticks`` (clock ticks after boot) still runs."""
    info = proc_stat(pid)
    return info is not None and info.start == ticks and info.state not in ("Z", "X", "x")


def sweep(parent: Path | None = None, alive: Callable[[int, int], bool] = leash_alive) -> list[Path]:
    """End and remove the leash cgroups under ``parent`` (default: this process's own cgroup)
    whose leash is gone, e.g. killed together with its watcher; returns those removed."""
    if parent is None:
        found = parent_dir()
        if isinstance(found, str):
            return []
        parent = found
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    for name in names:
        match = _NAME.match(name)
        if match is None or int(match.group(1)) != pid_namespace():
            continue  # not a leash's, or another PID namespace's: its pid says nothing here
        if alive(int(match.group(2)), int(match.group(3))):
            continue
        group = Cgroup(parent / name)
        if group.end(wait=0.5):
            removed.append(group.path)
    return removed
