"""Stopping a node's scheduler over SSH: the configured stop command, then the kill.

A mixin of :class:`~.runner.SSHNodeRunner` (its methods use the runner's connection and looks as
they are).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ...exceptions import NodeUnreachable
from ...ownership import SCHEDULER_USER_ENV
from ...probe import MATCH_ENV, STATE_DIR_ENV
from ...probe_result import ProbeResult, SchedulerState
from . import scripts
from .looking import Looking
from .ps_table import table_descendants
from .scripts import Marker, marked
from .transport import LOG_NAME, Connection, Deadline, SSHFailure

log = logging.getLogger(LOG_NAME)

T = TypeVar("T")


class Stopping(Looking):
    """``stop`` and the kill it falls back to."""

    timeout: float
    remote_words: list[str]
    session_path: Path

    def _session(self, deadline: Deadline, action: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    def _settle_pending(self, conn: Connection, deadline: Deadline) -> bool:
        raise NotImplementedError

    def stop(self, grace: float | None = None) -> ProbeResult:
        """The configured stop command first (if any, ``scheduler_stop_timeout`` for it), then kill.

        Kill: this project's ``kill_local`` on the node when installed there (psutil, identity
        checked, SIGTERM then SIGKILL after ``scheduler_stop_timeout``, whole trees); otherwise
        the roots and every descendant found in the ``ps`` listing get
        :func:`~.scripts.kill_script`. Returns a fresh probe; NodeUnreachable when the node
        cannot be commanded.
        """
        stop_timeout = self.config.scheduler_stop_timeout if grace is None else grace
        command = self.config.stop_command(self.node) if grace is None else ""
        budget = 2 * self.timeout + stop_timeout * (2 if command else 1) + 2

        deadline = Deadline(budget)

        def run(conn: Connection) -> ProbeResult:
            self._settle_pending(conn, deadline)
            if command:
                try:
                    self._exec(conn, scripts.stop_command_script(command), deadline, budget=stop_timeout + self.timeout)
                except SSHFailure as exc:
                    if exc.kind != "timeout" or deadline.left() < self.timeout:
                        raise
                    log.warning("%s: stop command did not finish within %.1fs", self.node, stop_timeout)
                result, _table = self._look(conn, deadline)
                if result.state is SchedulerState.STOPPED:
                    return result
                log.warning("%s: scheduler still there after the stop command; killing it", self.node)
            return self._kill(conn, deadline, stop_timeout)

        try:
            return self._session(deadline, run)
        except SSHFailure as exc:
            raise NodeUnreachable(f"{self.node}: stop over SSH: {exc}") from None

    def _kill(self, conn: Connection, deadline: Deadline, stop_timeout: float) -> ProbeResult:
        """SIGTERM every scheduler tree, SIGKILL what is left after ``stop_timeout``; a fresh probe."""
        listing = scripts.listing_lines(self.config.state_dir, self.node, self.config.scheduler_user)
        lines = []
        if self.remote_words:
            argv = ["kill_local", "--json", "--node", self.node, "--timeout", f"{stop_timeout:g}"]
            argv += ["--session-file", str(self.session_path)]
            env = {MATCH_ENV: self.match, STATE_DIR_ENV: self.config.state_dir}
            if self.config.scheduler_user:
                env[SCHEDULER_USER_ENV] = self.config.scheduler_user
            lines = scripts.kill_local_lines(self.remote_words, scripts.project_command(self.remote_words, argv, env))
        wait = stop_timeout + self.timeout + 2
        _status, out, err = self._exec(conn, "\n".join(lines + listing) + "\n", deadline, budget=wait)
        table = self._parse_listing(out)
        if table is None:
            result = scripts.parse_probe_json(self.node, out)
            if result is not None:
                self.remote_project = True
                return result
            rc = marked(out, Marker.EXIT)
            log.warning(
                "%s: `%s kill_local` gave no answer%s; using the shell fallback",
                self.node,
                " ".join(self.remote_words),
                f" (exit status {rc[0]})" if rc else "",
            )
            _status, out, err = self._exec(conn, self._probe_script(), deadline)
            table = self._parse_listing(out)
            if table is None:
                raise SSHFailure("channel", f"unreadable process listing from {self.node}: {err.strip()}")
        roots = self._owned_listed(out, table)
        targets = table_descendants(table, [r.pid for r in roots]) + roots if roots else []
        script = (
            (scripts.kill_script(targets, stop_timeout) if targets else "")
            + scripts.end_session_script(self.session_path)
            + self._probe_script()
        )
        _status, out, err = self._exec(conn, script, deadline, budget=wait)
        after = self._parse_listing(out)
        if after is None:
            raise SSHFailure("channel", f"unreadable process listing from {self.node} after the kill: {err.strip()}")
        return self._probe_listed(out, after)
