"""The leash's watcher: a child that outlives the leash and ends the tree it last reported, and the
tree's cgroup (where there is one: nothing in it escapes by ``setsid``)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from .cgroup import Cgroup
from .procs import PR_SET_NAME, PR_SET_PDEATHSIG, prctl, proc_stat, proc_table, signal_if_same
from .spec import Spec, child_environment

BACKSTOP = 1.0  # seconds after the deadline when the watcher kills if the leash has not
WATCHER_NAME = b"sfc-leash-w"


class _LeashGone(Exception):
    pass


def _leash_gone(_signum: int, _frame: object) -> None:
    raise _LeashGone


class Watcher:
    """The leash's child that outlives it: kills what the leash last reported when it dies."""

    def __init__(self, read_end: int, leash: int, spec: Spec, record_path: Path, cgroup: Path | None = None) -> None:
        self.fd = read_end
        self.cgroup = Cgroup(cgroup) if cgroup is not None else None
        self.leash = leash
        self.spec = spec
        self.record_path = record_path
        self.deadline: float | None = None
        self.mode = "tree"
        self.procs: list[tuple[int, int]] = []

    def run(self) -> int:
        prctl(PR_SET_NAME, WATCHER_NAME)
        for signum in (signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, _leash_gone)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        prctl(PR_SET_PDEATHSIG, signal.SIGUSR1)
        buffer = b""
        try:
            while os.getppid() == self.leash:
                timeout = 1.0  # past the backstop: kill again once a second
                if self.deadline is not None and self.deadline + BACKSTOP > time.monotonic():
                    timeout = min(timeout, self.deadline + BACKSTOP - time.monotonic())
                ready, _w, _x = select.select([self.fd], [], [], timeout)
                if ready:
                    data = os.read(self.fd, 65536)
                    if not data:
                        break  # every write end is closed: the leash is gone
                    buffer += data
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line == b"B":
                            return 0
                        self._take(line)
                if self.deadline is not None and time.monotonic() >= self.deadline + BACKSTOP:
                    self._kill(spare_leash=True)  # the leash should have acted by now (frozen?)
        except _LeashGone:
            pass
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        self._gone()
        return 0

    def _take(self, line: bytes) -> None:
        parts = line.decode(errors="replace").split()
        if len(parts) < 3 or parts[0] != "S":
            return
        try:
            self.deadline = float(parts[1])
            self.mode = parts[2]
            self.procs = [(int(p), int(s)) for p, s in (item.split(":") for item in parts[3:])]
        except ValueError:
            return

    def _kill(self, spare_leash: bool) -> None:
        if self.cgroup is not None:  # the leash and this watcher are not in it
            self.cgroup.kill(wait=0)
        for pid, start in self.procs:
            signal_if_same(pid, start, signal.SIGKILL)
        me, sid = os.getpid(), os.getsid(0)
        for pid, info in proc_table().items():
            if info.session == sid and pid != me and not (spare_leash and pid == self.leash):
                signal_if_same(pid, info.start, signal.SIGKILL)

    def _gone(self) -> None:
        alive = [(p, s) for p, s in self.procs if (i := proc_stat(p)) is not None and i.start == s]
        if self.mode == "watch" and self.spec.stop_command and alive:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["/bin/sh", "-c", self.spec.stop_command],
                    stdin=subprocess.DEVNULL,
                    env=child_environment(os.environ),
                    timeout=self.spec.stop_timeout,
                    check=False,
                )
        self._kill(spare_leash=False)
        with contextlib.suppress(OSError):
            self.record_path.unlink()
        if self.cgroup is not None:
            self.cgroup.end()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(
                f"{stamp} sfc-leash-watcher[{os.getpid()}] {self.spec.node}: the leash (pid {self.leash}) died; "
                f"killed {len(alive)} process(es) it had reported and its session\n"
            )
            sys.stderr.flush()
