"""The leash's own processes and files: the children it starts (in the tree's cgroup, where there
is one), the watcher it feeds, and its registration.

:class:`Children` is what the supervisor asks of them; :class:`LiveChildren` does it for real
(forks, pipes, cgroups, files), and a test gives the supervisor a fake.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from typing import Protocol

from .cgroup import Cgroup, sweep
from .deadline import write_atomically
from .procs import PR_SET_PDEATHSIG, prctl, proc_stat
from .records import leash_alive, leash_dir, leash_record_prefix, own_leash_record, read_leash_records
from .spec import Spec, child_environment
from .tree import Procs
from .voice import Say
from .watcher import Watcher


class Children(Protocol):
    """The supervisor's children and registration."""

    watcher: int  # the watcher's pid (0: none yet)

    def prepare(self) -> None:
        """Before the start command: contain the tree, prune dead registrations, start the watcher."""

    def spawn(self, argv: list[str], contain: bool = False) -> int:
        """Start ``argv`` as a child (``contain``: in the tree's cgroup); its pid."""

    def reap(self) -> None:
        """Reap the children that have exited (replacing a watcher that died)."""

    def exit_status(self, pid: int) -> int | None:
        """The exit code of child ``pid`` once reaped, else None."""

    def register(self, mode: str, shown: bool) -> None:
        """(Re)write the registration: ``mode`` tree, watch or denied; ``shown``: a scheduler has shown."""

    def send(self, deadline: float, mode: str, procs: Procs) -> None:
        """Tell the watcher the deadline, the mode and what to kill should the leash die."""

    def kill_cgroup(self, wait: float) -> None:
        """SIGKILL the tree's cgroup, if there is one."""

    def close(self) -> None:
        """The leash is done: reap, unregister, end the cgroup, release the watcher."""


class LiveChildren:
    """:class:`Children` for real (see the module docstring)."""

    def __init__(self, spec: Spec, pid: int, say: Say) -> None:
        self.spec = spec
        self.pid = pid
        self.say = say
        self.record_path = leash_dir(spec.state_dir) / f"{leash_record_prefix(spec.node)}{pid}"
        self.statuses: dict[int, int] = {}  # exit codes of the children it started
        self.started: set[int] = set()
        self.cgroup: Cgroup | None = None
        self.watcher = 0
        self.watcher_fd = -1
        self.sent = ""
        self.registered = ("tree", False)

    def prepare(self) -> None:
        self._contain()
        self._prune_records()
        self._spawn_watcher()  # first: from here on, a killed leash leaves nothing (the cgroup neither)

    def reap(self) -> None:
        self._collect()
        if self.watcher and self.statuses.pop(self.watcher, None) is not None:
            self.say("the watcher died; starting another")
            self._spawn_watcher()

    def _collect(self) -> None:
        """Reap every child (as a subreaper, orphans of the tree are ours too)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self.started:
                self.statuses[pid] = os.waitstatus_to_exitcode(status)

    def exit_status(self, pid: int) -> int | None:
        return self.statuses.get(pid)

    def spawn(self, argv: list[str], contain: bool = False) -> int:
        """Fork and exec ``argv`` with PR_SET_PDEATHSIG=SIGKILL and the scheduler's environment;
        ``contain``: in the tree's cgroup, moved there before it execs (it waits for that)."""
        env = child_environment(os.environ)
        leash = self.pid
        gate = os.pipe() if contain and self.cgroup is not None else None
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                for signum in (signal.SIGPIPE, signal.SIGXFSZ):
                    signal.signal(signum, signal.SIG_DFL)
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                if gate is not None:
                    os.close(gate[1])
                    os.read(gate[0], 1)  # the leash has moved us (or died: end of file)
                if os.getppid() == leash:  # not already orphaned before the prctl took effect
                    os.execve(argv[0], argv, env)
            except BaseException:  # noqa: BLE001 - exec failed: exit 127 as a shell does
                pass
            os._exit(127)
        self.started.add(pid)
        if gate is not None and self.cgroup is not None:
            os.close(gate[0])
            try:
                self.cgroup.add(pid)
            except OSError as exc:
                self.say(f"containment: process scan only (cannot move pid {pid} into {self.cgroup.path}: {exc})")
                self.cgroup.remove()
                self.cgroup = None
            os.close(gate[1])
        return pid

    def _contain(self) -> None:
        """Put the scheduler's tree in a cgroup of its own where it can (see :mod:`.cgroup`); say which."""
        me = proc_stat(self.pid)
        made = Cgroup.create(self.pid, me.start if me else 0)
        if isinstance(made, str):
            self.say(f"containment: process scan only ({made}); a process that calls setsid may outlive a killed leash")
            return
        self.cgroup = made
        self.say(f"containment: cgroup {made.path}")
        for path in sweep(made.path.parent):
            self.say(f"ended the leftover cgroup {path} of a leash that is gone")

    def kill_cgroup(self, wait: float) -> None:
        if self.cgroup is not None:
            self.cgroup.kill(wait=wait)

    def _spawn_watcher(self) -> None:
        if self.watcher_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.watcher_fd)
        read_end, write_end = os.pipe()  # close-on-exec: no scheduler holds them
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(write_end)
                cgroup = self.cgroup.path if self.cgroup is not None else None
                code = Watcher(read_end, self.pid, self.spec, self.record_path, cgroup).run()
            finally:
                os._exit(code)
        os.close(read_end)
        os.set_blocking(write_end, False)
        self.started.add(pid)
        self.watcher, self.watcher_fd = pid, write_end
        self.sent = ""
        self.register(*self.registered)  # the registration names the watcher

    def send(self, deadline: float, mode: str, procs: Procs) -> None:
        message = f"S {deadline!r} {mode} " + " ".join(f"{p}:{s}" for p, s in procs) + "\n"
        if message == self.sent or self.watcher_fd < 0:
            return
        try:
            if os.write(self.watcher_fd, message.encode()) != len(message.encode()):
                raise BlockingIOError
            self.sent = message
        except OSError:  # full pipe (a stopped watcher) or gone: replace it
            self.say("the watcher does not read; replacing it")
            with contextlib.suppress(OSError):
                os.kill(self.watcher, signal.SIGKILL)

    def register(self, mode: str, shown: bool) -> None:
        self.registered = (mode, shown)
        record = own_leash_record(mode, self.spec.token, self.watcher, self.spec.linger, shown)
        error = write_atomically(self.record_path, record.to_json() + "\n")
        if error:
            self.say(f"cannot register in {self.record_path}: {error} (probes see it as not leashed)", logging.WARNING)

    def _prune_records(self) -> None:
        """Remove the registrations of this node's leashes that are gone."""
        for record in read_leash_records(self.spec.state_dir, self.spec.node):
            if record.pid == self.pid:
                continue
            if not leash_alive(record):
                with contextlib.suppress(OSError):
                    (leash_dir(self.spec.state_dir) / f"{leash_record_prefix(self.spec.node)}{record.pid}").unlink()

    def close(self) -> None:
        self._collect()  # leave no zombie of ours to whoever inherits them
        with contextlib.suppress(OSError):
            self.record_path.unlink()
        if self.cgroup is not None:
            self.cgroup.kill()
            self._collect()
            if not self.cgroup.remove():
                self.say(f"cannot remove {self.cgroup.path}", logging.WARNING)
            self.cgroup = None
        if self.watcher_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self.watcher_fd, b"B\n")
            with contextlib.suppress(OSError):
                os.close(self.watcher_fd)
            self.watcher_fd = -1
