"""What this controller knows of each node's scheduler: its last look, and its checks' streaks.

One ``NodeHealth`` per node holds the last probe that could see the node (the leash rule for an
unreachable node needs it), the node's last row in Airflow's job table, and one ``Streak`` per
configured check of its running scheduler (``health``: ``scheduler_health_url``; ``job``:
``scheduler_job_heartbeat_timeout``).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Optional

from ..airflow_job import HostMatch, JobCheck, SchedulerJob, SchedulerJobReader, judge
from ..config import Config
from ..exceptions import MetastoreError
from ..http_client import check_health, describe
from ..metastore.base import Metastore
from ..nodes.base import NodeRunner
from ..probe_pool import ProbePool
from ..probe_result import ProbeResult, SchedulerState

log = logging.getLogger(__name__)

#: a check of a running scheduler: a look giving (problem or None, whether it could not look)
Check = Callable[[], tuple[Optional[str], bool]]  # evaluated at import: no `X | None` before Python 3.10


def seen_running(probe: ProbeResult) -> bool:
    """The probe could look, and a scheduler process may run there (running, unhealthy)."""
    return probe.state.maybe_running and probe.state is not SchedulerState.UNKNOWN


@dataclass
class Streak:
    """One check of one node's scheduler processes: since when they are watched, whether they
    have passed it since, and its failures in a row."""

    pids: tuple[int, ...]
    since: float
    passed: bool = False
    in_a_row: int = 0


@dataclass
class NodeHealth:
    """One node, as this controller last knew it."""

    last_seen: ProbeResult | None = None  # its last probe that could see it
    last_job: SchedulerJob | None = None  # its scheduler's last row in Airflow's job table
    streaks: dict[str, Streak] = field(default_factory=dict)  # check name -> its streak
    unreachable: int = 0  # looks in a row that had no answer from it at all (ProbeResult.unreachable)


class Health:
    """Every node's ``NodeHealth``, and the checks that turn a running scheduler UNHEALTHY.

    The cycle's alone, but its probes run in a pool, one per node at a time: a node's streaks and
    job row are that node's probe's; ``nodes`` itself and ``_jobs_unreadable`` are kept behind
    ``_lock`` (never held across a probe or a check). The renewal thread does not use it.
    """

    def __init__(self, config: Config, jobs: SchedulerJobReader | None, monotonic: Callable[[], float]) -> None:
        self.config = config
        self.jobs = jobs
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self.nodes: dict[str, NodeHealth] = {}
        self._jobs_unreadable = False

    def node(self, node: str) -> NodeHealth:
        with self._lock:
            return self.nodes.setdefault(node, NodeHealth())

    def last_seen(self, node: str) -> ProbeResult | None:
        with self._lock:
            known = self.nodes.get(node)
        return known.last_seen if known else None

    def remember(self, probes: dict[str, ProbeResult]) -> None:
        """Keep the last look at each node that could see it (for the leash rule), and count the
        looks in a row that had no answer from it (for fence_command: one is not enough)."""
        for node, probe in probes.items():
            known = self.node(node)
            known.unreachable = known.unreachable + 1 if probe.unreachable else 0
            if probe.state is not SchedulerState.UNKNOWN:
                known.last_seen = probe

    def unreachable_looks(self, node: str) -> int:
        """The looks in a row, up to the last, that had no answer from ``node`` at all."""
        with self._lock:
            known = self.nodes.get(node)
        return known.unreachable if known else 0

    def seed(self, store: Metastore) -> None:
        """A new term: start from what the previous active controller recorded."""
        try:
            observations = store.observations()
        except MetastoreError as exc:
            log.warning("could not read the last observations: %s", exc)
            return
        for o in observations:
            try:
                state = SchedulerState(o.state)
            except ValueError:
                continue
            if state is not SchedulerState.UNKNOWN and self.last_seen(o.node) is None:
                self.node(o.node).last_seen = ProbeResult(o.node, state, o.pids, o.detail, leashed=o.leashed)

    def probe_all(self, runners: dict[str, NodeRunner], pool: ProbePool) -> dict[str, ProbeResult]:
        """Probe every node in parallel (and remember what was seen). A probe that raises, misses
        its deadline, or whose previous probe still hangs counts as UNKNOWN; none is waited for
        past the deadline."""
        # A probe, then the checks of a running scheduler, each with its own timeout.
        budget = self.config.ssh_timeout + 1
        if self.config.scheduler_health_url:
            budget += min(5.0, self.config.ssh_timeout)
        if self.jobs is not None:
            budget += self.config.metastore_timeout
        calls = {node: functools.partial(self.probe, runner) for node, runner in runners.items()}
        results: dict[str, ProbeResult] = {}
        for node, outcome in pool.run_all(calls, budget).items():
            if outcome.value is not None:
                results[node] = outcome.value
                continue
            # A node that kept a probe waiting gave no answer; one read through its report did not
            # keep it waiting (the metastore did), and an error is ours, not the node's silence.
            silent = outcome.error is None and not getattr(runners[node], "by_report", False)
            if outcome.error is not None:
                why = f"probe failed: {describe(outcome.error)}"
            elif outcome.busy:
                why = f"its previous probe still hangs after {outcome.running_for or 0:.0f}s"
            else:
                why = f"probe timed out after {budget:g}s"
            results[node] = ProbeResult(node, SchedulerState.UNKNOWN, detail=why, unreachable=silent)
        self.remember(results)
        return results

    def probe(self, runner: NodeRunner) -> ProbeResult:
        """The runner's probe, plus the checks configured for a running scheduler: Airflow's
        health check (``scheduler_health_url``) and its job heartbeat (``scheduler_job_heartbeat_timeout``).

        Only ``scheduler_health_failures`` failures of one check in a row make it UNHEALTHY: one
        slow answer is not a restart. A new scheduler process is given until it first passes a
        check, or ``scheduler_start_timeout``, to bring its health server up or stamp its first
        heartbeat. A check that could not look (Airflow's database unreadable) counts for nothing.
        """
        result = runner.probe()
        known = self.node(runner.node)
        checks = self._checks(runner.node)
        if result.state is not SchedulerState.RUNNING or not checks:
            known.streaks.clear()
            known.last_job = None
            return result
        notes, failed = [], []
        limit = self.config.scheduler_health_failures
        for name, check in checks.items():
            streak = known.streaks.get(name)
            if streak is None or streak.pids != result.pids:
                streak = known.streaks[name] = Streak(result.pids, self.monotonic())
            problem, unknown = check()
            if problem is None:
                streak.passed, streak.in_a_row = True, 0
            elif unknown:
                notes.append(problem)
            elif not streak.passed and self.monotonic() - streak.since < self.config.scheduler_start_timeout:
                notes.append(f"starting: {problem}")
            else:
                streak.in_a_row += 1
                if streak.in_a_row < limit:
                    notes.append(f"{problem} ({streak.in_a_row}/{limit})")
                else:
                    failed.append(f"{problem} {streak.in_a_row} times in a row")
        if failed:
            return replace(result, state=SchedulerState.UNHEALTHY, detail="; ".join(failed))
        return replace(result, detail="; ".join(notes)) if notes else result

    def _checks(self, node: str) -> dict[str, Check]:
        """The checks of ``node``'s running scheduler, by name."""
        checks: dict[str, Check] = {}
        url = self.config.health_url(node)
        if url:
            checks["health"] = lambda: (check_health(url, timeout=min(5.0, self.config.ssh_timeout)), False)
        if self.jobs is not None:

            def job() -> tuple[str | None, bool]:
                look = self._job_check(node)
                return look.problem, look.unknown

            checks["job"] = job
        return checks

    def _job_check(self, node: str) -> JobCheck:
        """Look at ``node``'s scheduler job row in Airflow's database (UNKNOWN when it cannot be read)."""
        jobs = self.jobs
        if jobs is None:
            return JobCheck()
        host = HostMatch(*self.config.job_hostname(node))
        try:
            job = jobs.newest(host)
        except MetastoreError as exc:
            with self._lock:
                was, self._jobs_unreadable = self._jobs_unreadable, True
            if not was:  # once until it can be read again: not every cycle
                log.warning("cannot read Airflow's job table (%s): scheduler heartbeats are not judged", exc)
            return JobCheck(f"job heartbeat unknown: {exc}", unknown=True)
        with self._lock:
            was, self._jobs_unreadable = self._jobs_unreadable, False
        if was:
            log.info("Airflow's job table can be read again")
        known = self.node(node)
        previous = known.last_job
        if job is not None:
            known.last_job = job
        return JobCheck(judge(job, host, self.config.scheduler_job_heartbeat_timeout, previous), job=job)
