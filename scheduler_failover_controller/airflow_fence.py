"""Telling Airflow what the controller knows: a node proven empty runs no scheduler (``airflow_job_fencing``).

A new Airflow scheduler adopts (or resets) the queued and running task instances of another
scheduler only once that scheduler's ``SchedulerJob`` is no longer ``running``; Airflow itself
marks it ``failed`` only when its heartbeat is older than ``[scheduler]
scheduler_health_check_threshold`` (30 s), and looks again every ``orphaned_tasks_check_interval``
(300 s). A scheduler restarted or moved sooner than that leaves its predecessor's tasks orphaned for
up to five minutes (docs/design.md, "Airflow's work resumes with the scheduler").

The controller knows sooner. Right before it starts a scheduler, every node it has proven to run
none (seen or reported empty, fenced, or its placement expired with everything under a leash) is
fenced in Airflow's database too:

- its newest ``SchedulerJob`` row (by the hostname Airflow records for the node) is set to
  ``failed``, as Airflow does for a dead one, only when it is ``running`` and its heartbeat stood
  still between two reads ``settle`` seconds apart; the ``UPDATE`` names the row by id, state and
  that heartbeat, so a row that moved meanwhile is left alone. A heartbeat seen to move contradicts
  the proof (a scheduler the controller cannot see, e.g. under a wrong ``scheduler_job_hostnames``):
  that node is left alone, sessions included;
- a node that could not be seen (it may be cut off, its sessions holding locks) and whose scheduler
  is so ended also has its database sessions ended (:mod:`.airflow_sessions`), just before: they
  may hold the row written next. A node without such a job is left alone: an unseen node whose
  scheduler ended cleanly, or that never ran one (a controller not started yet), may well run
  Airflow's other components (api-server, dag-processor, triggerer) in good health.

Nothing here ever blocks a start: a database that cannot be reached or refuses is logged, once per
outage, and the start goes on. Every call is held to ``metastore_timeout``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .airflow_job import JOB_TYPE, HostMatch
from .airflow_sessions import Resolver, end_sessions, node_addresses, resolve
from .exceptions import MetastoreError
from .probe_result import ProbeResult, SchedulerState

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .config import Config
    from .metastore.sql_engine import SQLDatabase

log = logging.getLogger(__name__)

SETTLE = 1.0  # seconds between the two reads of a heartbeat that must stand still
FAILED = "failed"  # Airflow's JobState.FAILED: what its own scheduler writes for a dead one


@dataclass(frozen=True)
class JobRow:
    """A node's newest ``SchedulerJob`` row, with its heartbeat as stored (to name it in the ``UPDATE``)."""

    id: int
    hostname: str
    state: str
    heartbeat: Any


def proven_empty(target: str, probes: dict[str, ProbeResult]) -> dict[str, bool]:
    """The nodes a start on ``target`` has proven to run no scheduler: node -> whether it was unseen.

    Called once nothing blocks the start: every other node is then STOPPED, or UNKNOWN and fenced or
    expired with everything under a leash. ``target`` counts only when it was seen STOPPED.
    """
    proven = {}
    for node, probe in probes.items():
        if probe.state is SchedulerState.STOPPED:
            proven[node] = False
        elif probe.state is SchedulerState.UNKNOWN and node != target:
            proven[node] = True
    return proven


class AirflowFence:
    """Ends proven-empty nodes' scheduler jobs and unseen nodes' sessions in Airflow's database."""

    def __init__(
        self,
        config: Config,
        db: SQLDatabase,
        sleep: Callable[[float], None] = time.sleep,
        resolver: Resolver = resolve,
        settle: float = SETTLE,
    ) -> None:
        self.config = config
        self.db = db
        self.sleep = sleep
        self.resolver = resolver
        self.settle = settle
        self._failing = False  # an outage is logged once

    def host(self, node: str) -> HostMatch:
        name, exact = self.config.job_hostname(node)
        return HostMatch(name, exact)

    def newest(self, conn: Connection, node: str) -> JobRow | None:
        """``node``'s newest SchedulerJob row (by heartbeat, then id), or None."""
        from sqlalchemy import column, func, or_, select, table

        host = self.host(node)
        job = table(
            "job", column("id"), column("job_type"), column("state"), column("hostname"), column("latest_heartbeat")
        )
        name = func.lower(job.c.hostname)
        match: Any = name == host.name.lower()
        if not host.exact:
            pattern = host.name.lower().replace("/", "//").replace("%", "/%").replace("_", "/_") + ".%"
            match = or_(match, name.like(pattern, escape="/"))
        query = (
            select(job.c.id, job.c.hostname, job.c.state, job.c.latest_heartbeat)
            .where(job.c.job_type == JOB_TYPE, job.c.latest_heartbeat.is_not(None), match)
            .order_by(job.c.latest_heartbeat.desc(), job.c.id.desc())
            .limit(1)
        )
        row = conn.execute(query).first()
        return None if row is None else JobRow(int(row[0]), str(row[1] or ""), str(row[2] or ""), row[3])

    def _running(self, nodes: list[str]) -> dict[str, JobRow]:
        def go(conn: Connection) -> dict[str, JobRow]:
            rows = {node: self.newest(conn, node) for node in nodes}
            return {node: row for node, row in rows.items() if row is not None and row.state == "running"}

        return self.db.read(go)

    def _end_job(self, row: JobRow) -> bool:
        from sqlalchemy import column, table, update

        job = table("job", column("id"), column("state"), column("latest_heartbeat"))
        statement = (
            update(job)
            .where(job.c.id == row.id, job.c.state == "running", job.c.latest_heartbeat == row.heartbeat)
            .values(state=FAILED)
        )

        def go(conn: Connection) -> bool:
            done = conn.execute(statement).rowcount == 1
            conn.commit()
            return done

        return self.db.read(go)

    def _end_sessions(self, node: str) -> list[int]:
        others: set[str] = set()
        for other in self.config.nodes:
            if other != node:
                others |= node_addresses((other, self.config.job_hostname(other)[0]), self.resolver)
        mine = node_addresses((node, self.config.job_hostname(node)[0]), self.resolver)

        def go(conn: Connection) -> list[int]:
            ended = end_sessions(conn, self.db.backend, mine, others)
            conn.commit()
            return ended

        return self.db.read(go)

    def before_start(self, target: str, probes: dict[str, ProbeResult]) -> list[str]:
        """Fence every node proven empty for a start on ``target`` in Airflow's database; what was done."""
        proven = proven_empty(target, probes)
        if not proven:
            return []
        done: list[str] = []
        try:
            first = self._running(sorted(proven))
            second: dict[str, JobRow] = {}
            if first:
                self.sleep(self.settle)
                second = self._running(sorted(first))
            still: list[tuple[str, JobRow]] = []
            for node, row in sorted(first.items()):
                again = second.get(node)
                if again is None:
                    continue  # ended meanwhile (by Airflow itself): nothing of ours to end
                if again.id != row.id or again.heartbeat != row.heartbeat:
                    log.warning(
                        "Airflow's SchedulerJob %d on %s still heartbeats although %s runs no scheduler the "
                        "controller can see; leaving it and its sessions alone (check scheduler_job_hostnames)",
                        again.id,
                        again.hostname,
                        node,
                    )
                    continue
                still.append((node, again))
            # Sessions first: a cut-off scheduler's open transaction may hold the very row ended next.
            for node, _row in still:
                if proven[node] and node != self.config.current_host:
                    ended = self._end_sessions(node)
                    if ended:
                        done.append(f"ended {len(ended)} session(s) of {node} in Airflow's database")
            for node, row in still:
                if self._end_job(row):
                    done.append(f"ended Airflow's SchedulerJob {row.id} of {node}")
        except MetastoreError as exc:
            if not self._failing:
                log.warning("airflow_job_fencing: Airflow's database: %s; starting without it", exc)
            self._failing = True
            return done
        if self._failing:
            log.info("airflow_job_fencing: Airflow's database answers again")
        self._failing = False
        for line in done:
            log.info("%s before the start on %s (airflow_job_fencing)", line, target)
        return done

    def close(self) -> None:
        self.db.close()


def open_airflow_fence(config: Config) -> AirflowFence | None:
    """The fence the config asks for (``airflow_job_fencing``), else None."""
    if not config.airflow_job_fencing:
        return None
    from .metastore.sql_engine import SQLDatabase

    url, timeout = config.scheduler_job_sql_conn, config.metastore_timeout
    db = SQLDatabase(url, timeout, key="scheduler_job_sql_conn", foreign=True, writable=True)
    return AirflowFence(config, db)
