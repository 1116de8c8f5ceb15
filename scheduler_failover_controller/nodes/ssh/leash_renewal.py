"""Renewing a node's leash over SSH, through the node's ``leash --serve`` helper.

A mixin of :class:`~.runner.SSHNodeRunner` (its methods use the runner's connection and helper as
they are).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from .serve import LeashHelper, LeashNotReady
from .transport import LOG_NAME, Connection, Deadline, SSHFailure

log = logging.getLogger(LOG_NAME)

T = TypeVar("T")


class LeashRenewal:
    """``renew_leash`` and the round trip that turns a deadline into the node's clock."""

    node: str
    remote_words: list[str]
    timeout: float
    _leash: LeashHelper
    _renew_failing: bool

    def _session(self, deadline: Deadline, action: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    def renew_leash(self, deadline: float) -> bool:
        """Renew the node's leash to ``deadline`` (our monotonic clock), through ``leash --serve``.

        The deadline is turned into the node's clock by a round trip (:meth:`_remote_deadline`)
        and sent as an absolute value, so a late answer or a late write is still safe. Bounded by
        ``ssh_timeout``; never raises; a failure logs one warning until a renewal succeeds again.
        Nothing to do where this project is not installed (no leash there). False when the leash
        may not have the deadline (see :meth:`NodeRunner.renew_leash`).
        """
        if not self.remote_words:
            return True
        budget = Deadline(self.timeout)

        def renew(conn: Connection) -> str | None:
            remote = self._remote_deadline(conn, budget, deadline)
            if remote is None:
                return None
            answer = self._leash.request(conn, budget, f"set {remote!r}")
            if answer != "ok":
                raise SSHFailure("channel", f"the leash helper answered {(answer or '')[:200]!r}")
            return answer

        try:
            done = self._session(budget, renew)
        except LeashNotReady:
            log.debug("%s: the leash helper is still starting there; renewal skipped", self.node)
            return False
        except SSHFailure as exc:
            self._leash_failed(str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 - renew_leash never raises (NodeRunner contract)
            self._leash_failed(f"unexpected {exc!r}")
            return False
        if done is not None and self._renew_failing:
            self._renew_failing = False
            log.info("%s: leash renewed again", self.node)
        return True

    def _leash_failed(self, why: str) -> None:
        if self._renew_failing:
            log.debug("%s: leash renewal failed again: %s", self.node, why)
            return
        self._renew_failing = True
        log.warning("%s: could not renew the leash over SSH: %s", self.node, why)

    def _remote_deadline(
        self, conn: Connection, budget: Deadline, deadline: float, patience: Deadline | None = None
    ) -> float | None:
        """``deadline`` (our monotonic clock) on the node's monotonic clock; None without the project.

        At t0 we ask for the node's reading m1 and get it at t1: m1 was read at a real time >= t0,
        at most t1 - t0 before t1, so ``m1 + (deadline - t1)`` is never later than ``deadline``
        whatever the delays (the round trip only costs margin). ``patience``: how long to wait
        for a helper still starting (default: the budget); then LeashNotReady.
        """
        if not self.remote_words:
            return None
        answer = self._leash.request(conn, budget, "clock", patience)
        if answer is None:
            return None
        t1 = time.monotonic()
        words = answer.split()
        try:
            if len(words) != 2 or words[0] != "clock":
                raise ValueError(answer)
            m1 = float(words[1])
        except ValueError:
            raise SSHFailure("channel", f"the leash helper answered {answer[:200]!r} to clock") from None
        return m1 + (deadline - t1)
