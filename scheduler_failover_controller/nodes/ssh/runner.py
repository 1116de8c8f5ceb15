"""SSHNodeRunner: probe, start, stop and leash a scheduler on another master over SSH.

The steps are orchestrated here; the connection is :mod:`.transport`'s, the shell scripts and the
reading of their output :mod:`.scripts`', the long-lived helpers on the node :mod:`.serve`'s; a look
is :mod:`.looking`'s, a stop :mod:`.stopping`'s.

Probing: with this project on the node (``ssh_remote_command`` found there), its ``probe --serve``
answers; otherwise, or while it starts, the node lists its processes with ``ps`` and the same
matching and root rules are applied here (:func:`.ps_table.probe_table`).
Whatever goes wrong (resolution, connection, host key, authentication, timeout, unreadable answer)
makes the probe UNKNOWN, never running or stopped.
"""

from __future__ import annotations

import getpass
import logging
import secrets
import shlex
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ...config import Config
from ...exceptions import CommandFailed, NodeUnreachable
from ...leash.spec import CLI_SUBCOMMAND
from ...probe_result import ProbeResult, SchedulerState
from ..base import NodeRunner
from ..local import launch_command, leash_spec, node_lock_path, session_file
from . import remote_dirs, scripts
from .check import SSHCheck, connection_failed
from .leash_renewal import LeashRenewal
from .scripts import Marker, marked
from .serve import LeashHelper, LeashNotReady, ProbeServer
from .start_lock import LOCK_WAIT, start_lock
from .stopping import Stopping
from .transport import LOG_NAME, Connection, Connector, Deadline, Endpoint, SSHFailure, run_script

#: the SSHFailure kinds of a node that did not answer (what fence_command may act on)
SILENT = frozenset({"connect", "timeout", "handshake"})

log = logging.getLogger(LOG_NAME)

T = TypeVar("T")

_UNREACHABLE_REPEAT = 60.0  # seconds between warnings while a node stays unreachable
_LEASH_WAIT = 2.0  # seconds more a start may take: the leash's helper and the leash start there
_VISIBLE_WAIT = 1.0  # seconds a start waits, holding the lock, for the new process to show


class SSHNodeRunner(Stopping, LeashRenewal, NodeRunner):
    """A master node reached over SSH: ``node`` is its host name or address."""

    def __init__(self, node: str, config: Config) -> None:
        super().__init__(node)
        self.config = config
        self.match = config.process_match(node)
        self.port = config.ssh_port
        self.user = config.ssh_user or getpass.getuser()
        self.timeout = config.ssh_timeout
        self.remote_words = shlex.split(config.ssh_remote_command)
        self.lock_path = node_lock_path(config, node)
        self.session_path = session_file(config, node)  # on the node: the same path as there
        self._unreachable_since: float | None = None  # monotonic time its probes began to fail
        self._unreachable_warned: float | None = None
        self._renew_failing = False
        #: whether the last look found this project on the node (None: not known yet)
        self.remote_project: bool | None = None
        self._pending: set[str] = set()  # tokens of starts that timed out, not yet settled
        self._pending_lock = threading.Lock()
        self._link = Connector(
            Endpoint(
                node,
                self.port,
                self.user,
                self.timeout,
                key_file=config.ssh_key_file,
                known_hosts_file=config.ssh_known_hosts_file,
                host_key_policy=config.ssh_host_key_policy,
            )
        )
        self._prober = ProbeServer(node, self.remote_words, self.match, config.state_dir, config.scheduler_user)
        self._leash = LeashHelper(node, self.remote_words, config.state_dir)

    @property
    def target(self) -> str:
        """``user@node:port``."""
        return self._link.endpoint.target

    @property
    def connections_opened(self) -> int:
        """How many SSH connections this runner has opened (for tests and metrics)."""
        return self._link.connections_opened

    def close(self) -> None:
        self._link.close()

    def _session(self, deadline: Deadline, action: Callable[[Connection], T]) -> T:
        """``action`` on the node's connection under the deadline (:meth:`.Connector.session`)."""
        return self._link.session(deadline, action)

    def _exec(
        self, conn: Connection, script: str, deadline: Deadline, budget: float | None = None
    ) -> tuple[int, str, str]:
        """Run ``script`` with ``/bin/sh -s`` on the node; (exit status, stdout, stderr)."""
        return run_script(conn, script, deadline, budget)

    # --- starts that timed out ----------------------------------------------------------------

    def _settle_pending(self, conn: Connection, deadline: Deadline) -> bool:
        """Make sure no earlier start that timed out can still launch; True if one already did.

        Each start creates its token directory (mkdir is atomic) before launching and gives up if
        it exists; settling creates it first, so the start can no longer happen, or finds it
        created, so the start has launched.
        """
        with self._pending_lock:
            tokens = sorted(self._pending)
        if not tokens:
            return False
        lock_dir = self.lock_path.parent
        script = scripts.settle_script(lock_dir, [scripts.token_dir(lock_dir, self.node, t) for t in tokens])
        status, out, err = self._exec(conn, script, deadline)
        if status != 0:
            raise SSHFailure("channel", f"cannot settle an earlier start: {err.strip() or status}")
        with self._pending_lock:
            self._pending.difference_update(tokens)
        ran = bool(marked(out, Marker.RAN))
        how = "one had run" if ran else "cancelled"
        log.info("%s: settled %d start(s) that had timed out (%s)", self.node, len(tokens), how)
        return ran

    # --- NodeRunner ---------------------------------------------------------------------------

    def probe(self) -> ProbeResult:
        deadline = Deadline(self.timeout)

        def look(conn: Connection) -> ProbeResult:
            ran = self._settle_pending(conn, deadline)
            result, _table = self._look(conn, deadline)
            if ran and result.state is SchedulerState.STOPPED and deadline.left() > _VISIBLE_WAIT:
                time.sleep(_VISIBLE_WAIT)  # a late start just launched: give it a moment to show
                result, _table = self._look(conn, deadline)
            return result

        try:
            result = self._session(deadline, look)
        except SSHFailure as exc:
            self._note_unreachable(str(exc))
            silent = exc.kind in SILENT  # no answer at all, not a refusal by a node that did answer
            return ProbeResult(self.node, SchedulerState.UNKNOWN, detail=f"ssh: {exc}", unreachable=silent)
        except Exception as exc:  # noqa: BLE001 - probe never raises (NodeRunner contract)
            log.warning("%s: probe failed unexpectedly: %r", self.node, exc)
            return ProbeResult(self.node, SchedulerState.UNKNOWN, detail=f"ssh: probe failed: {exc}")
        if self._unreachable_since is not None:
            log.info("%s: reachable over SSH again after %.1fs", self.node, time.monotonic() - self._unreachable_since)
            self._unreachable_since = self._unreachable_warned = None
        return result

    def _note_unreachable(self, why: str) -> None:
        """A warning when the node turns unreachable and once a minute while it stays so; DEBUG between."""
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = self._unreachable_warned = now
            log.warning("%s: unreachable over SSH (%s); it counts as unknown until it answers", self.node, why)
        elif self._unreachable_warned is None or now - self._unreachable_warned >= _UNREACHABLE_REPEAT:
            self._unreachable_warned = now
            log.warning(
                "%s: still unreachable over SSH after %.0fs (%s)", self.node, now - self._unreachable_since, why
            )
        else:
            log.debug("%s: probe failed: %s", self.node, why)

    def start(self, deadline: float) -> None:
        """Launch the scheduler on the node as the local runner does, under the node's start lock.

        The lock is ``flock`` on ``state_dir/locks/NODE.lock`` there (the file the node's own
        controller locks), held over a channel while this probes, launches (``setsid``, detached,
        output appended to ``state_dir/scheduler.log`` there) and waits to see it: up to 1s, or
        until its leash has launched the start command and 1s more.

        The leash: with this project on the node, the launch runs ``ssh_remote_command leash``,
        which runs the start command and stops it at ``deadline`` (our monotonic clock) turned
        into the node's clock by :meth:`_remote_deadline`. Without it (the POSIX fallback) the
        start command runs unleashed, as its probes then say.

        A launch whose answer does not come back may still happen later. Each launch first
        creates a token directory with ``mkdir`` and gives up if it exists; until this runner has
        settled such a start on the node (by creating its token first, so it can never launch, or
        by finding it created, so it did), every probe says UNKNOWN at best, never STOPPED.
        """
        budget = Deadline(self.timeout + LOCK_WAIT + _VISIBLE_WAIT + _LEASH_WAIT)
        token = ""

        def launch(conn: Connection) -> None:
            nonlocal token
            if self._settle_pending(conn, budget):
                # An earlier start whose answer was lost did launch: its scheduler may not show
                # yet (its leash's Python is still starting), and a second launch would be a
                # second scheduler. The caller's wait sees it come up, or gives up and stops it.
                log.info("%s: an earlier start had launched; not starting another", self.node)
                return
            token = secrets.token_hex(8)  # new on a retry: settling cancels the last one
            if self.remote_words:
                self._leash.warm_up(conn, budget)  # its Python starts there while we take the lock and look
            with start_lock(conn, budget, self.node, self.lock_path, self.timeout):
                self._launch_locked(conn, budget, deadline, token)

        try:
            self._session(budget, launch)
        except SSHFailure as exc:
            with self._pending_lock:
                doubt = token in self._pending
            later = "; the scheduler may still come up there, so the node counts as running until seen" if doubt else ""
            raise NodeUnreachable(f"{self.node}: start over SSH: {exc}{later}") from None

    def _launch_locked(self, conn: Connection, budget: Deadline, deadline: float, token: str) -> None:
        """The part of a start under the node's lock: look, launch, wait to see it."""
        current, _table = self._look(conn, budget)
        if current.state is SchedulerState.UNKNOWN:
            raise CommandFailed(f"{self.node}: cannot tell whether a scheduler runs: {current.detail}")
        if current.state.maybe_running:
            log.info("%s: a scheduler is already there; not starting another", self.node)
            return
        # what is left once the launch and the wait to see it have their share
        patience = Deadline(max(0.0, budget.left() - self.timeout - _VISIBLE_WAIT))
        try:
            remote_deadline = self._remote_deadline(conn, budget, deadline, patience)
        except LeashNotReady:
            raise CommandFailed(f"{self.node}: the leash helper did not start there in time") from None
        if remote_deadline is None:
            log.info("%s: this project is not there: starting the scheduler without a leash", self.node)
        else:
            # The file holds this deadline before the leash starts (one of an earlier leash or boot
            # counts for none); if it cannot be written there, no renewal could be either.
            answer = self._leash.request(conn, budget, f"set {remote_deadline!r}")
            if answer != "ok":
                raise CommandFailed(f"{self.node}: not starting: cannot write its leash deadline there: {answer}")
        with self._pending_lock:
            self._pending.add(token)  # from here until it answers, the start may still happen
        status, out, err = self._exec(conn, self._launch_script(token, remote_deadline), budget)
        with self._pending_lock:
            self._pending.discard(token)
        if marked(out, Marker.CANCELLED):
            raise CommandFailed(f"{self.node}: start over SSH failed: its token was taken (settled as cancelled)")
        if status != 0 or not marked(out, Marker.LAUNCHED):
            why = (err.strip().splitlines() or [f"exit status {status}"])[-1]
            raise CommandFailed(f"{self.node}: start over SSH failed: {why}")
        # Hold the lock until the new process is visible, so a concurrent starter sees it.
        self._wait_visible(conn, budget, token if remote_deadline is not None else "")

    def _wait_visible(self, conn: Connection, budget: Deadline, token: str) -> None:
        """Until the scheduler shows; at most 1s, or (leashed) 1s after its leash registered."""
        began = time.monotonic()
        spawned = 0.0
        while budget.left() > 0.2:
            if not token:
                if self._look(conn, budget)[0].state.maybe_running:
                    return
            else:  # the listing shows both the scheduler and the leash's registration
                _status, out, _err = self._exec(conn, self._probe_script(), budget)
                table = self._parse_listing(out)
                if table is not None and self._probe_listed(out, table).state.maybe_running:
                    return
                if not spawned and any(r.token == token for r in scripts.parse_listing_head(out)[0]):
                    spawned = time.monotonic()
            now = time.monotonic()
            if (spawned or not token) and now - (spawned or began) >= _VISIBLE_WAIT:
                return
            time.sleep(0.05)

    def _launch_script(self, token: str, remote_deadline: float | None = None) -> str:
        """The start script; with ``remote_deadline`` (the node's clock) it starts a leash."""
        if remote_deadline is None:
            launch = launch_command(self.config, self.node)
        else:
            spec = leash_spec(self.config, self.node, remote_deadline, token)
            launch = launch_command(self.config, self.node, [*self.remote_words, CLI_SUBCOMMAND], spec.environment())
        return scripts.launch_script(
            launch,
            node=self.node,
            token=token,
            state_dir=self.config.state_dir,
            lock_dir=self.lock_path.parent,
            session_path=self.session_path,
        )

    # --- test_connection ------------------------------------------------------------------------

    def check(self) -> SSHCheck:
        """Reachability, host key, authentication, this project and the tools on the node."""
        report = SSHCheck(self.target)
        deadline = Deadline(self.timeout)
        try:
            conn, _fresh = self._link.connection(deadline)
        except SSHFailure as exc:
            connection_failed(report, exc)
            return report
        report.reachable = True
        report.host_key = f"{conn.host_key} ({conn.fingerprint})"
        report.host_key_ok = True
        report.auth, report.auth_ok = "ok", True
        script = scripts.check_script(self.remote_words, self.config.state_dir)
        try:
            _status, out, _err = self._session(deadline, lambda c: self._exec(c, script, deadline))
        except SSHFailure as exc:
            report.error = str(exc)
            return report
        version = marked(out, Marker.VERSION)
        if version:
            report.project = f"installed ({self.config.ssh_remote_command} version {version[0]})"
        elif self.remote_words:
            report.project = f"not installed ({self.remote_words[0]} not found): probing with ps"
        else:
            report.project = "not used (ssh_remote_command is empty): probing with ps"
        report.tools_missing = tuple(marked(out, Marker.LACKS))
        report.state_dir_problem = remote_dirs.refused(out)
        report.probe = self.probe()
        return report
