"""The leash process: ``python -m scheduler_failover_controller.leash [--serve]``.

It names itself, becomes a child subreaper, blocks the signals it waits for, and drives its
:class:`.supervisor.Supervisor` with the real clock, /proc and children, sleeping in
``sigtimedwait`` between steps. It is single-threaded, as PR_SET_PDEATHSIG (tied to the forking
thread) needs.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

from ..boot import started_monotonic
from ..exit_channel import send_exit
from .children import LiveChildren
from .deadline import DeadlineFile, deadline_path, serve
from .procs import PR_SET_CHILD_SUBREAPER, PR_SET_NAME, LiveProcesses, prctl
from .spec import Spec
from .states import State
from .supervisor import Supervisor
from .voice import Voice

LEASH_NAME = b"sfc-leash"

_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def run(spec: Spec) -> int:
    """Supervise one scheduler (see :mod:`scheduler_failover_controller.leash`); the exit code."""
    pid = os.getpid()
    say = Voice(pid, spec.node)
    prctl(PR_SET_NAME, LEASH_NAME)
    if not prctl(PR_SET_CHILD_SUBREAPER, 1):
        say("PR_SET_CHILD_SUBREAPER failed; processes that detach escape the leash", logging.WARNING)
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    now = time.monotonic()
    renewals = DeadlineFile(deadline_path(spec.state_dir, spec.node), spec.ttl, started_monotonic(pid, now))
    children = LiveChildren(spec, pid, say)
    supervisor = Supervisor(spec, pid, time.monotonic, LiveProcesses(), children, renewals, say)
    supervisor.start()
    if supervisor.state is State.DONE:
        return supervisor.exit_code
    try:
        wake = supervisor.step()
        while wake is not None:
            _wait(supervisor, wake)
            wake = supervisor.step()
        return supervisor.exit_code
    finally:
        # Before unregistering: the controller takes the message only from a live leash.
        if supervisor.exited and send_exit(spec.state_dir, spec.node):
            say("told the controller that the scheduler exited")
        children.close()


def _wait(supervisor: Supervisor, until: float) -> None:
    """Sleep until ``until`` or a signal: SIGCHLD wakes it, SIGTERM and SIGINT ask for a stop."""
    timeout = max(0.0, until - time.monotonic())
    info = signal.sigtimedwait(_SIGNALS, timeout)
    while info is not None:
        if info.si_signo in (signal.SIGTERM, signal.SIGINT):
            supervisor.request_stop(info.si_signo)
        info = signal.sigtimedwait(_SIGNALS, 0)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m scheduler_failover_controller.leash [--serve]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--serve"]:
        return serve(os.environ)
    if args:
        sys.stderr.write(
            "usage: python -m scheduler_failover_controller.leash [--serve] (instructions in SFC_LEASH_*)\n"
        )
        return 2
    try:
        spec = Spec.from_env(os.environ)
    except ValueError as exc:
        sys.stderr.write(f"sfc-leash: {exc}\n")
        return 2
    return run(spec)
