"""Control of a scheduler on this machine with psutil and subprocess."""

from __future__ import annotations

import fcntl
import logging
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from ..config import Config
from ..exceptions import CommandFailed
from ..probe import ProbeResult, SchedulerState, find_schedulers, probe_local
from .base import NodeRunner

log = logging.getLogger(__name__)


def node_lock_path(config: Config, node: str) -> Path:
    """The per-node start lock (flock), the same path for the local and the SSH runner."""
    return config.state_dir / "locks" / f"{node}.lock"


def launch_command(config: Config, node: str) -> str:
    """The ``/bin/sh`` command line that starts ``node``'s scheduler detached and returns at once.

    Shared by the local and the SSH runner. The scheduler's output is appended to
    ``state_dir/scheduler.log`` (on the node that runs it).
    """
    log_file = shlex.quote(str(config.state_dir / "scheduler.log"))
    command = config.start_command(node) or "exec airflow scheduler"
    # Run in a background subshell so that sh exits at once and the scheduler is
    # re-parented (no zombie of ours), in its own session, detached from our stdio.
    return f"( {command} ) >> {log_file} 2>&1 < /dev/null &"


class LocalNodeRunner(NodeRunner):
    """A node whose processes this machine can see and signal."""

    def __init__(self, node: str, config: Config) -> None:
        super().__init__(node)
        self.config = config
        self.match = config.process_match(node)
        self.lock_path = node_lock_path(config, node)

    def probe(self) -> ProbeResult:
        return probe_local(self.node, self.match)

    @contextmanager
    def _node_lock(self, timeout: float) -> Iterator[None]:
        """An exclusive lock per node, shared by every controller on this machine."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise CommandFailed(f"{self.node}: another controller is starting the scheduler") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    def _launch_command(self) -> str:
        return launch_command(self.config, self.node)

    def start(self) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        with self._node_lock(timeout=2.0):
            if self.probe().state.maybe_running:
                log.info("%s: a scheduler is already there; not starting another", self.node)
                return
            shell = subprocess.Popen(
                ["/bin/sh", "-c", self._launch_command()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
            try:
                code = shell.wait(timeout=10)
            except subprocess.TimeoutExpired:
                shell.kill()
                shell.wait()
                raise CommandFailed(f"{self.node}: start command did not detach within 10s") from None
            if code != 0:
                raise CommandFailed(f"{self.node}: start shell exited with {code}")
            # Hold the lock until the new process is visible, so a concurrent starter sees it.
            until = time.monotonic() + 1.0
            while time.monotonic() < until and not self.probe().state.maybe_running:
                time.sleep(0.05)

    def stop(self, grace: float | None = None) -> ProbeResult:
        timeout = self.config.scheduler_stop_timeout if grace is None else grace
        command = self.config.stop_command(self.node) if grace is None else ""
        if command:
            try:
                subprocess.run(
                    ["/bin/sh", "-c", command],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                log.warning("%s: stop command did not finish within %.1fs", self.node, timeout)
            result = self.probe()
            if result.state is SchedulerState.STOPPED:
                return result
            log.warning("%s: scheduler still there after the stop command; killing it", self.node)
        kill_trees(find_schedulers(self.match), timeout)
        return self.probe()


def kill_trees(roots: list[psutil.Process], timeout: float) -> None:
    """SIGTERM each process tree (children first collected), SIGKILL what is left after ``timeout``.

    Identity is checked by psutil (pid plus create time), so a recycled pid is never signalled.
    """
    procs: list[psutil.Process] = []
    for root in roots:
        try:
            if not root.is_running():
                continue
            procs.extend(root.children(recursive=True))
            procs.append(root)
        except psutil.NoSuchProcess:
            continue
    if not procs:
        return
    for proc in procs:
        try:
            proc.terminate()
            if proc.status() == psutil.STATUS_STOPPED:
                proc.resume()  # a stopped process cannot act on SIGTERM
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=max(1.0, timeout))
