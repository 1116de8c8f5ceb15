"""``event_command``: an operator's command, run once for every event a controller records.

Like Pacemaker's alert agents, the command gets the event in its environment (``SFC_EVENT``, the
history's kind, ``SFC_NODE``, ``SFC_FROM_NODE``, ``SFC_EPOCH``, ``SFC_CONTROLLER``, ``SFC_MESSAGE``,
``SFC_TIME``, ``SFC_SERVICE``). The environment is built from nothing: a few harmless variables of the controller's
(``PATH``, ``HOME``, the locale, ...) and the event; no setting, URL or password of the controller
reaches it, and secrets the config holds are masked in the message.

In the daemon the commands run on a thread of their own, one at a time in the order the events
came, each bounded by ``event_command_timeout`` (then its whole process group is killed). Recording
an event only queues it: a slow, failing or hanging command never delays a cycle, a renewal or a
start. The queue is bounded; a full one drops events and says how many. A failure, a timeout or a
command that cannot be run costs one log line. The CLI, whose events (pause, switchover request,
...) have no daemon to run them, runs the command at once, bounded the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from .config import Config
from .config.services import SCHEDULER
from .controller.fencing import run_command
from .redaction import config_secrets, mask

log = logging.getLogger(__name__)

QUEUE_SIZE = 64  # events waiting for the command; more are dropped (and counted) until it catches up
#: Variables passed on from the controller's own environment: none of them holds a secret.
PASSED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

#: Runs ``argv`` with exactly ``env`` within ``timeout`` seconds: (exit status, or None when it was
#: killed at the timeout; the last line of its output).
Runner = Callable[[list[str], Mapping[str, str], float], "tuple[int | None, str]"]


@dataclass(frozen=True)
class HookEvent:
    """One recorded event, as the command sees it."""

    kind: str
    message: str
    controller: str  # the host of the controller (or CLI) that recorded it
    at: float  # wall clock (seconds since the epoch)
    node: str = ""  # the node it is about ('' when none: an alert, a pause); several comma separated
    from_node: str = ""  # where the scheduler came from (a move, a switchover), else ''
    epoch: int = 0  # the recorder's leadership epoch (0: none, e.g. the CLI)
    service: str = SCHEDULER  # the service it is of


def timestamp(at: float) -> str:
    """``at`` as ISO 8601 in UTC, to the millisecond: ``2026-12-07T13:50:01.123+00:00``."""
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds")


def hook_environment(event: HookEvent, secrets: list[str], base: Mapping[str, str]) -> dict[str, str]:
    """The command's whole environment: the harmless variables of ``base`` and the event's."""
    env = {name: base[name] for name in PASSED if name in base}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(
        {
            "SFC_EVENT": event.kind,
            "SFC_NODE": event.node,
            "SFC_FROM_NODE": event.from_node,
            "SFC_EPOCH": str(event.epoch),
            "SFC_CONTROLLER": event.controller,
            "SFC_MESSAGE": mask(event.message, secrets),
            "SFC_TIME": timestamp(event.at),
            "SFC_SERVICE": event.service,
        }
    )
    return env


def run_hook(command: str, timeout: float, event: HookEvent, secrets: list[str], runner: Runner) -> str | None:
    """Run ``command`` for ``event`` and wait (at most ``timeout``): None if it exited 0, else
    the one line that says what went wrong."""
    env = hook_environment(event, secrets, os.environ)
    what = f"event_command for the {event.kind} event"
    try:
        status, said = runner(["/bin/sh", "-c", command], env, timeout)
    except OSError as exc:
        return f"{what} could not be run: {exc.strerror or exc}"
    except Exception as exc:  # noqa: BLE001 - a runner's surprise is one line too, never the worker's end
        return f"{what} could not be run: {type(exc).__name__}: {exc}"
    if status is None:
        return f"{what} timed out after {timeout:g}s; its process group was killed"
    if status < 0:
        return f"{what} was killed by signal {-status}"
    if status != 0:
        tail = f": {mask(said, secrets)}" if said else ""
        return f"{what} failed (exit {status}){tail}"
    return None


class EventHook:
    """Queues each recorded event for ``event_command`` (when one is set) and counts the events.

    ``emit`` never blocks: it takes a lock only to count, and puts the event in a bounded queue
    read by one worker thread, started with the first event.
    """

    def __init__(
        self,
        config: Config,
        runner: Runner | None = None,
        clock: Callable[[], float] = time.time,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.command = config.event_command
        self.timeout = config.event_command_timeout
        self.host = config.current_host
        self.service = config.service
        self.runner = runner or self._run
        self._group = 0  # the process group of the command running now (0: none)
        self._closed = False  # set at exit: nothing more is started
        self.clock = clock
        self.secrets = config_secrets(config)
        self._queue: queue.Queue[HookEvent] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0  # events queued or running: 0 when the worker has nothing left
        self._worker: threading.Thread | None = None
        self.counts: dict[str, int] = {}  # events recorded by kind, since the controller started
        self.self_fences = 0  # fence events about this controller's own node
        self.dropped = 0  # dropped in the current spell of a full queue
        self.dropped_total = 0
        self.failures = 0  # runs that failed, timed out or could not start

    def emit(self, kind: str, message: str, node: str = "", from_node: str = "", epoch: int = 0) -> None:
        """Count the event and queue it for the command; returns at once, whatever the command does."""
        kind = str(kind)
        event = HookEvent(kind, message, self.host, self.clock(), node, from_node, epoch, self.service)
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if kind == "fence" and node == self.host:
                self.self_fences += 1
            if not self.command:
                return
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self.dropped += 1
                self.dropped_total += 1
                if self.dropped == 1:
                    log.error(
                        "event_command is %d event(s) behind; dropping new events until it catches up",
                        self._queue.qsize(),
                    )
                return
            self._busy += 1
            if self.dropped:
                log.warning("event_command caught up; %d event(s) were dropped", self.dropped)
                self.dropped = 0
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="event-command", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while True:
            event = self._queue.get()
            try:
                with self._lock:
                    if self._closed:
                        continue
                failure = run_hook(self.command, self.timeout, event, self.secrets, self.runner)
                if failure is not None:
                    with self._lock:
                        self.failures += 1
                    log.warning("%s", failure)
            finally:
                with self._lock:
                    self._busy -= 1
                    self._idle.notify_all()

    def _run(self, argv: list[str], env: Mapping[str, str], timeout: float) -> tuple[int | None, str]:
        """Run as :func:`run_command` does, keeping the process group for :meth:`close`."""

        def started(group: int) -> None:
            with self._lock:
                self._group = group
                if self._closed:  # closed as it started: it ends at once
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(group, signal.SIGKILL)

        try:
            return run_command(argv, timeout, env, started)
        finally:
            with self._lock:
                self._group = 0

    def close(self, timeout: float) -> None:
        """At exit: let the queued commands run for at most ``timeout`` seconds, then end the one
        still running (its whole process group) and drop the rest, saying so in one line."""
        if self.wait_idle(timeout):
            return
        with self._lock:
            self._closed = True
            group, left = self._group, self._queue.qsize()
            if group:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
        log.warning("exiting: ended the running event_command and dropped %d queued event(s)", left)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued event's command has run, at most ``timeout`` seconds; True if so."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return True


def run_now(config: Config, kind: str, message: str, node: str = "", runner: Runner | None = None) -> str | None:
    """Run ``event_command`` (if set) for an event the CLI recorded, and wait for it (bounded):
    None if it ran well or there is none, else the one line that says what went wrong."""
    if not config.event_command:
        return None
    event = HookEvent(str(kind), message, config.current_host, time.time(), node)
    run = runner or (lambda argv, env, timeout: run_command(argv, timeout, env))
    return run_hook(config.event_command, config.event_command_timeout, event, config_secrets(config), run)
