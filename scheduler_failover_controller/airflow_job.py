"""Airflow's own record of a scheduler: its newest ``SchedulerJob`` row in Airflow's ``job`` table.

Every Airflow scheduler (2.x and 3.x) keeps one row of the ``job`` table up to date while it runs:
``job_type = 'SchedulerJob'``, ``hostname`` (``[core] hostname_callable``: ``socket.getfqdn()`` by
default), ``state`` (``running``) and ``latest_heartbeat``, stamped by its scheduling loop every
``[scheduler] scheduler_heartbeat_sec``. A scheduler whose process is there but whose loop is stuck
(a deadlock, a hung mount, a database call that never returns, SIGSTOP) stops stamping it while a
look at the process table may still see it running. This reads that row; the controller judges it
(``scheduler_job_heartbeat_timeout``, with the same rules as Airflow's health check: that many
failures in a row, and a new scheduler's start grace).

The table is read through :class:`~.metastore.sql_engine.SQLDatabase`, the metastore's engine: every read
ends within ``timeout`` seconds of this machine's clock whatever the database or the network does
(see :mod:`.metastore.deadline`), SQLite is opened read-only, and nothing is ever written. A read
that fails is *unknown*, never a sign of a dead scheduler (a database blip must not restart it).

The age of a heartbeat is measured by the database server's clock (``now`` there minus the stamp),
so the controller's own clock plays no part; the stamp itself comes from the scheduler host's clock
(Airflow's ``timezone.utcnow()``), which must therefore agree with the database server's, as
Airflow's own health checks already require. A heartbeat seen to change since the previous look is
fresh whatever its age (so a scheduler host whose clock is behind is not restarted for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .exceptions import MetastoreError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .config import Config

__all__ = ["HostMatch", "JobCheck", "SchedulerJob", "SchedulerJobReader", "judge", "open_job_reader"]

JOB_TYPE = "SchedulerJob"

# Seconds from a stamp column to the server's now, per dialect ({col} is the column).
_AGE_SQL = {
    "sqlite": "((julianday('now') - julianday({col})) * 86400.0)",
    "mysql": "(UNIX_TIMESTAMP(NOW(6)) - UNIX_TIMESTAMP({col}))",  # session time_zone '+00:00' (the engine's)
    "mariadb": "(UNIX_TIMESTAMP(NOW(6)) - UNIX_TIMESTAMP({col}))",
    "postgresql": "EXTRACT(EPOCH FROM (statement_timestamp() - {col}))",
}


@dataclass(frozen=True)
class HostMatch:
    """Which ``hostname`` of the job table is a node's: exactly ``name``, or (not ``exact``) also
    any fully qualified name that starts with ``name`` and a dot. Compared ignoring case."""

    name: str
    exact: bool = False

    def describe(self) -> str:
        return repr(self.name) if self.exact else f"{self.name!r} (or {self.name}.*)"


@dataclass(frozen=True)
class SchedulerJob:
    """A scheduler's row of Airflow's ``job`` table."""

    id: int
    hostname: str
    state: str
    heartbeat: str  # latest_heartbeat as stored: tells whether it changed between two looks
    age: float  # seconds since latest_heartbeat, by the database server's clock


@dataclass(frozen=True)
class JobCheck:
    """One look at a scheduler's job row.

    ``problem`` is None when the scheduler heartbeats in time, else one line saying why not.
    ``unknown``: the table could not be read (``problem`` says why); never counted against the scheduler.
    """

    problem: str | None = None
    unknown: bool = False
    job: SchedulerJob | None = None


def judge(
    job: SchedulerJob | None, host: HostMatch, max_age: float, previous: SchedulerJob | None = None
) -> str | None:
    """Why ``job`` (the newest row of ``host``) shows a scheduler that does not heartbeat, or None.

    ``previous`` is the row the last look found: a heartbeat that changed since is fresh.
    """
    if job is None:
        return (
            f"Airflow's job table has no {JOB_TYPE} row for host {host.describe()} "
            "(scheduler_job_hostnames names each node's host as Airflow records it)"
        )
    if job.state != "running":
        return f"Airflow's newest scheduler job on {job.hostname} (id {job.id}) is {job.state or 'without a state'}"
    advanced = previous is not None and previous.id == job.id and previous.heartbeat != job.heartbeat
    if job.age > max_age and not advanced:
        return (
            f"Airflow's scheduler job {job.id} on {job.hostname} last heartbeat {job.age:.0f}s ago "
            f"(scheduler_job_heartbeat_timeout {max_age:g}s)"
        )
    return None


class SchedulerJobReader:
    """Reads the newest scheduler job row of a host from Airflow's database, within ``timeout``."""

    def __init__(self, url: str, timeout: float, key: str = "scheduler_job_sql_conn") -> None:
        from .metastore.sql_engine import SQLDatabase  # SQLAlchemy only where this check is on

        self.timeout = timeout
        self.db = SQLDatabase(url, timeout, key=key, foreign=True)

    def describe(self) -> str:
        return self.db.describe().replace("sql ", "Airflow's database ", 1)

    def newest(self, host: HostMatch) -> SchedulerJob | None:
        """The row of ``host``'s scheduler with the latest heartbeat, or None when it has none.

        Raises MetastoreError, with one line and no secret, when the table cannot be read in time.
        """
        from sqlalchemy import column, func, literal_column, or_, select, table

        from .metastore.deadline import MetastoreTimeout

        job = table(
            "job", column("id"), column("job_type"), column("state"), column("hostname"), column("latest_heartbeat")
        )
        stamp = job.c.latest_heartbeat
        age: Any = literal_column(_AGE_SQL[self.db.backend].format(col="latest_heartbeat"))
        name = func.lower(job.c.hostname)
        match: Any = name == host.name.lower()
        if not host.exact:
            pattern = host.name.lower().replace("/", "//").replace("%", "/%").replace("_", "/_") + ".%"
            match = or_(match, name.like(pattern, escape="/"))
        query = (
            select(job.c.id, job.c.state, job.c.hostname, stamp, age)
            .select_from(job)
            .where(job.c.job_type == JOB_TYPE, stamp.is_not(None), match)
            .order_by(stamp.desc(), job.c.id.desc())
            .limit(1)
        )

        def go(conn: Connection) -> SchedulerJob | None:
            row = conn.execute(query).first()
            if row is None:
                return None
            return SchedulerJob(int(row[0]), str(row[2] or ""), str(row[1] or ""), str(row[3]), float(row[4] or 0.0))

        try:
            return self.db.read(go)
        except MetastoreTimeout as exc:
            raise MetastoreError(f"Airflow's database did not answer within {self.timeout:g}s") from exc
        except MetastoreError as exc:
            raise MetastoreError(str(exc).replace("metastore error: ", "", 1)) from exc
        except (TypeError, ValueError) as exc:  # a row no Airflow writes
            raise MetastoreError(f"unreadable {JOB_TYPE} row: {type(exc).__name__}") from exc

    def close(self) -> None:
        self.db.close()


def open_job_reader(config: Config) -> SchedulerJobReader | None:
    """The reader the config asks for (``scheduler_job_heartbeat_timeout`` set), else None."""
    if not config.scheduler_job_heartbeat_timeout:
        return None
    return SchedulerJobReader(config.scheduler_job_sql_conn, config.metastore_timeout)
