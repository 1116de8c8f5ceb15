"""Control of a scheduler on this machine with psutil and subprocess."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from ..boot import boot_id, start_ticks
from ..config import Config
from ..exceptions import CommandFailed
from ..leash.cgroup import sweep
from ..leash.deadline import write_deadline
from ..leash.records import read_leash_records
from ..leash.spec import LOCAL_ARGV, Spec, scrubbed_environment
from ..orphans import OrphanWatch
from ..probe import probe_local, stop_targets
from ..probe_result import ProbeResult, SchedulerState
from ..trust import UntrustedFile, directory_problem, read_private, write_private
from .base import NodeRunner

log = logging.getLogger(__name__)


def node_lock_path(config: Config, node: str) -> Path:
    """The per-node start lock (flock), the same path for the local and the SSH runner."""
    return config.state_dir / "locks" / f"{node}.lock"


def session_file(config: Config, node: str) -> Path:
    """Where a start records the session it created: ``SID START_TICKS BOOT_ID`` (both runners
    write it; START_TICKS: the session leader's start in clock ticks since that boot)."""
    return node_lock_path(config, node).with_suffix(".session")


def session_record(sid: int, ticks: int) -> str:
    """The session file's line for a session led by ``sid``, started at ``ticks`` on this boot."""
    return f"{sid} {ticks} {boot_id() or '-'}\n"


def session_leftovers(path: Path) -> list[psutil.Process]:
    """Processes still in the session the last start created (its shell's pid is the sid).

    When a scheduler dies hard (SIGKILL, OOM), its workers live on as orphans that match no
    scheduler pattern (Airflow's ``airflow worker -- LocalExecutor``, ``serve-logs``), and a start
    given up on may still be on its way; they are found by their session instead. Only a record
    of this boot counts, and only processes that started no earlier than its leader (in clock
    ticks since boot, which no step of the wall clock moves), so neither a session id of an
    earlier boot nor a recycled one is mistaken for ours.
    """
    try:
        words = read_private(path).split()
        sid, ticks, boot = int(words[0]), int(words[1]), words[2]
    except UntrustedFile as exc:
        log.warning("not ending the session %s names: %s", path, exc)
        return []
    except (OSError, ValueError, IndexError):
        return []
    if sid <= 1 or boot != (boot_id() or "-"):
        return []
    # The shell that led the session, if it is still there, started when the file says; a
    # session id recycled since (or a file naming another session) has another leader.
    leader = start_ticks(sid)
    if leader is not None and leader != ticks:
        return []
    skip = {os.getpid(), os.getppid()}
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        if proc.pid in skip or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            started = start_ticks(proc.pid)
            if started is not None and started >= ticks and os.getsid(proc.pid) == sid:
                found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


def end_session(path: Path, node: str) -> None:
    """SIGKILL whatever is left in the recorded session (no grace: its scheduler is gone).

    Only from a directory nobody else can write: a record there could name anyone's session."""
    problem = directory_problem(path.parent)
    if problem:
        log.warning("%s: not ending the last session: %s", node, problem)
        return
    leftovers = session_leftovers(path)
    if leftovers:
        log.warning("%s: ending %d leftover process(es) of the previous scheduler", node, len(leftovers))
        kill_trees(leftovers, 0)
        sweep()  # the tree of a leash ended with its watcher: what left the session is in its cgroup
    if not session_leftovers(path):
        with suppress(OSError):
            path.unlink()


_SPAWN_WAIT = 10.0  # seconds a start waits (holding the lock) for its leash to launch the command
_VISIBLE_WAIT = 1.0  # seconds it then waits for the scheduler to show


def leash_spec(config: Config, node: str, deadline: float, token: str = "") -> Spec:
    """What a leash for ``node`` is told (timings, commands and match of the starting side's config).

    ``deadline``: on the monotonic clock of the host the leash runs on.
    """
    return Spec(
        node=node,
        state_dir=config.state_dir,
        command=config.start_command(node) or "exec airflow scheduler",
        stop_command=config.stop_command(node),
        stop_timeout=config.scheduler_stop_timeout,
        ttl=config.lease_ttl,
        deadline=deadline,
        match=config.process_match(node),
        linger=config.scheduler_start_timeout,
        token=token,
        user=config.scheduler_user,
    )


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def launch_command(
    config: Config,
    node: str,
    leash: Sequence[str] | None = None,
    exports: Mapping[str, str] | None = None,
) -> str:
    """The ``/bin/sh`` command line that starts ``node``'s scheduler detached and returns at once.

    Shared by the local and the SSH runner. The scheduler's output (and the leash's) is appended
    to ``state_dir/scheduler.log`` (on the node that runs it). With ``leash`` (its argv) the leash
    is started instead, which runs the start command: its instructions come from the environment,
    plus ``exports`` (quoted into the command: only where it is not a command line, i.e. a script
    read from stdin). Without it, the start command itself (a node without this project).
    """
    log_file = shlex.quote(str(config.state_dir / "scheduler.log"))
    if leash is None:
        command = config.start_command(node) or "exec airflow scheduler"
    else:
        assignments = []
        for name, value in (exports or {}).items():
            if not _NAME.match(name):
                raise ValueError(f"not a variable name: {name!r}")
            assignments.append(f"export {name}={shlex.quote(value)}; ")
        command = "".join(assignments) + "exec " + " ".join(shlex.quote(word) for word in leash)
    # Run in a background subshell so that sh exits at once and the scheduler is
    # re-parented (no zombie of ours), in its own session, detached from our stdio.
    # The log is created private first (a subshell's umask: the scheduler keeps the caller's).
    return f"( umask 077 && : >> {log_file} ); ( {command} ) >> {log_file} 2>&1 < /dev/null &"


class LocalNodeRunner(NodeRunner):
    """A node whose processes this machine can see and signal."""

    def __init__(self, node: str, config: Config) -> None:
        super().__init__(node)
        self.config = config
        self.match = config.process_match(node)
        self.lock_path = node_lock_path(config, node)
        self.orphans = OrphanWatch()
        self.uid = config.scheduler_uid()  # whose processes count (see ..ownership)

    def probe(self) -> ProbeResult:
        return self.orphans.check(probe_local(self.node, self.match, self.config.state_dir, self.uid))

    @contextmanager
    def _node_lock(self, timeout: float) -> Iterator[None]:
        """An exclusive lock per node, shared by every controller on this machine."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
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
        return launch_command(self.config, self.node, LOCAL_ARGV)

    @property
    def _session_file(self) -> Path:
        return session_file(self.config, self.node)

    def _leftovers(self) -> list[psutil.Process]:
        return session_leftovers(self._session_file)

    def _clean_session(self) -> None:
        end_session(self._session_file, self.node)

    def start(self, deadline: float) -> None:
        """Launch the leash (``python -m scheduler_failover_controller.leash``, detached, in a session
        of its own), which runs the start command and stops it at ``deadline`` unless renewed.

        Its instructions go in its environment, never on a command line. The lock is held until
        the scheduler shows, or the leash has launched the command and a second has passed, or
        the launch is gone (at most ``_SPAWN_WAIT``), so a concurrent starter sees it.
        """
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        with self._node_lock(timeout=2.0):
            if self.probe().state.maybe_running:
                log.info("%s: a scheduler is already there; not starting another", self.node)
                return
            self._clean_session()  # orphans of one that died hard
            # The file holds this deadline before the leash starts (a file of an earlier leash or
            # boot counts for no leash; see leash_deadline.DeadlineFile): and if it cannot be
            # written, no renewal could be either: the scheduler would die at its first deadline.
            if not write_deadline(self.config.state_dir, self.node, deadline):
                raise CommandFailed(f"{self.node}: not starting: cannot write its leash deadline (see the log)")
            token = secrets.token_hex(8)
            # Nothing only the controller reads (its secrets) reaches the leash, nor so its scheduler.
            spec = leash_spec(self.config, self.node, deadline, token)
            env = {**scrubbed_environment(os.environ), **spec.environment()}
            shell = subprocess.Popen(
                ["/bin/sh", "-c", self._launch_command()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                env=env,
            )
            leader = start_ticks(shell.pid)  # our child: there until we reap it
            try:
                code = shell.wait(timeout=10)
            except subprocess.TimeoutExpired:
                shell.kill()
                shell.wait()
                raise CommandFailed(f"{self.node}: start command did not detach within 10s") from None
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            if leader is not None:
                write_private(self._session_file, session_record(shell.pid, leader))
            if code != 0:
                raise CommandFailed(f"{self.node}: start shell exited with {code}")
            self._wait_visible(token)

    def _wait_visible(self, token: str) -> None:
        """Until the new scheduler shows and its leash registered having seen it (so the next probe
        sees it leashed, and not as a start under way), or its leash launched it a second ago
        without one showing, or is gone."""
        now = time.monotonic()
        give_up, spawned, last_look = now + _SPAWN_WAIT, 0.0, now
        while True:
            running = self.probe().state is SchedulerState.RUNNING
            now = time.monotonic()
            records = [r for r in read_leash_records(self.config.state_dir, self.node) if r.token == token]
            if not spawned and records:
                spawned = now
            if running and spawned and (any(r.shown for r in records) or now >= give_up):
                return
            if spawned and not running and now - spawned >= _VISIBLE_WAIT:
                return  # slow, or handed to systemd: it shows when it shows (its node reads as starting)
            if not spawned and now - last_look >= 0.5:
                last_look = now
                if not self._leftovers():
                    log.warning(
                        "%s: the leash exited before launching the start command (see scheduler.log)", self.node
                    )
                    return
            if now >= give_up:
                log.warning("%s: the leash did not launch the start command within %gs", self.node, _SPAWN_WAIT)
                return
            time.sleep(0.05)

    def renew_leash(self, deadline: float) -> bool:
        """Write the node's deadline file (this machine's monotonic clock: no conversion)."""
        return write_deadline(self.config.state_dir, self.node, deadline)

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
                    env=scrubbed_environment(os.environ),
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                log.warning("%s: stop command did not finish within %.1fs", self.node, timeout)
            result = self.probe()
            if result.state is SchedulerState.STOPPED:
                self._clean_session()
                return result
            log.warning("%s: scheduler still there after the stop command; killing it", self.node)
        kill_trees(stop_targets(self.node, self.match, self.config.state_dir, self.uid), timeout)
        self._clean_session()
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
    if timeout > 0:
        for proc in procs:
            try:
                proc.terminate()
                if proc.status() == psutil.STATUS_STOPPED:
                    proc.resume()  # a stopped process cannot act on SIGTERM
            except psutil.NoSuchProcess:
                pass
    alive = _wait_gone(procs, timeout)
    for proc in alive:
        with suppress(psutil.NoSuchProcess):
            proc.kill()
    _wait_gone(alive, max(1.0, timeout))


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited; return those still alive after ``timeout``.

    A zombie counts as gone: it runs nothing, and reaping it is its parent's (or init's) job,
    which may come late for processes that are not our children.
    """
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in procs:
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                continue
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)
