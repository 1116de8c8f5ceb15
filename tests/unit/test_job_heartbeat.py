"""Airflow's job heartbeat (issue 9, item 3): the reader on real SQLite files and black-holed
ports, the judgement, the config keys, and the controller's use of it on fakes and the injected clock."""

from __future__ import annotations

import datetime
import logging
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler_failover_controller.airflow_job import HostMatch, SchedulerJob, SchedulerJobReader, judge
from scheduler_failover_controller.config import Config, load_config
from scheduler_failover_controller.controller.cycle import Controller
from scheduler_failover_controller.exceptions import ConfigError, MetastoreError
from scheduler_failover_controller.redaction import config_secrets

from .fakes import Cluster

# --- a job table as Airflow keeps it ------------------------------------------------------------

AIRFLOW_JOB_DDL = (
    "CREATE TABLE job (id INTEGER PRIMARY KEY, dag_id VARCHAR(250), state VARCHAR(20), job_type VARCHAR(30),"
    " start_date TIMESTAMP, end_date TIMESTAMP, latest_heartbeat TIMESTAMP, executor_class VARCHAR(500),"
    " hostname VARCHAR(500), unixname VARCHAR(1000))"
)


def stamp(seconds_ago: float, suffix: str = "") -> str:
    """A UTC time as Airflow's SQLite database stores it (``suffix``: a time zone some versions add)."""
    at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds_ago)
    return at.strftime("%Y-%m-%d %H:%M:%S.%f") + suffix


@pytest.fixture
def airflow_db(tmp_path: Path) -> Iterator[tuple[Path, Callable[..., None]]]:
    """An Airflow-like SQLite database and ``add(id, hostname, seconds_ago, state, job_type)``."""
    path = tmp_path / "airflow home" / "airflow.db"  # a space: the read-only URI must quote it
    path.parent.mkdir()
    with sqlite3.connect(path) as conn:
        conn.execute(AIRFLOW_JOB_DDL)

    def add(
        job_id: int, hostname: str, seconds_ago: float, state: str = "running", job_type: str = "SchedulerJob"
    ) -> None:
        with sqlite3.connect(path) as conn:
            conn.execute(
                "INSERT INTO job (id, state, job_type, latest_heartbeat, hostname) VALUES (?, ?, ?, ?, ?)",
                (job_id, state, job_type, stamp(seconds_ago), hostname),
            )

    yield path, add


def test_the_reader_finds_the_newest_scheduler_row_of_a_host(airflow_db: tuple[Path, Callable[..., None]]) -> None:
    path, add = airflow_db
    add(1, "master1.example.com", 300, state="success")  # an older scheduler, stopped
    add(2, "master1.example.com", 2)  # the one that runs
    add(3, "master1.example.com", 0, job_type="LocalTaskJob")  # not a scheduler
    add(4, "master10", 1)  # another host whose name starts with the same letters
    add(5, "Master2", 50)
    reader = SchedulerJobReader(f"sqlite:///{path}", 1.0)
    try:
        job = reader.newest(HostMatch("master1"))  # the default: the node name, or name.*
        assert job is not None and (job.id, job.state, job.hostname) == (2, "running", "master1.example.com")
        assert 1.5 < job.age < 10  # by the database's clock (SQLite: this machine's)
        exact = reader.newest(HostMatch("MASTER1.example.com", exact=True))  # case does not matter
        assert exact is not None and exact.id == 2
        assert reader.newest(HostMatch("master1.example", exact=True)) is None  # exact means exact
        other = reader.newest(HostMatch("master2"))
        assert other is not None and other.id == 5 and 45 < other.age < 60
        assert reader.newest(HostMatch("master")) is None  # a prefix is not a host
        assert reader.newest(HostMatch("master_1")) is None  # "_" is no wildcard
    finally:
        reader.close()


def test_the_reader_never_writes_airflow_s_database(airflow_db: tuple[Path, Callable[..., None]]) -> None:
    path, add = airflow_db
    add(1, "n1", 1)
    before = {p.name for p in path.parent.iterdir()}
    reader = SchedulerJobReader(f"sqlite:///{path}", 1.0)
    try:
        assert reader.newest(HostMatch("n1")) is not None
    finally:
        reader.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
    assert {p.name for p in path.parent.iterdir()} == before
    missing = path.parent / "not-migrated.db"
    reader = SchedulerJobReader(f"sqlite:///{missing}", 1.0)
    try:
        with pytest.raises(MetastoreError) as info:
            reader.newest(HostMatch("n1"))
    finally:
        reader.close()
    assert "unable to open database file" in str(info.value) and "\n" not in str(info.value)
    assert not missing.exists()  # read-only: a missing file is never created


def test_a_table_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.db").close()
    reader = SchedulerJobReader(f"sqlite:///{tmp_path / 'empty.db'}", 1.0)
    try:
        with pytest.raises(MetastoreError, match="no such table: job") as info:
            reader.newest(HostMatch("n1"))
    finally:
        reader.close()
    assert "\n" not in str(info.value) and "SELECT" not in str(info.value)


def test_a_locked_sqlite_database_is_given_up_at_the_deadline(airflow_db: tuple[Path, Callable[..., None]]) -> None:
    path, add = airflow_db
    add(1, "n1", 1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # no reader gets in until it ends
    reader = SchedulerJobReader(f"sqlite:///{path}", 0.5)
    try:
        t0 = time.monotonic()
        with pytest.raises(MetastoreError):
            reader.newest(HostMatch("n1"))
        assert time.monotonic() - t0 < 0.5 + 1.0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        reader.close()


@pytest.mark.parametrize("scheme", ["mysql+pymysql", "mysql+mysqldb", "mysql", "postgresql+psycopg2"])
def test_a_database_that_never_answers_is_given_up_at_the_deadline(scheme: str) -> None:
    """A frozen Airflow database (it accepts the connection, then says nothing) never blocks a cycle."""
    if scheme == "postgresql+psycopg2":
        pytest.importorskip("psycopg2")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever answers
        port = silent.getsockname()[1]
        reader = SchedulerJobReader(f"{scheme}://airflow:secret@127.0.0.1:{port}/airflow", 0.5)
        try:
            t0 = time.monotonic()
            with pytest.raises(MetastoreError) as info:
                reader.newest(HostMatch("n1"))
            took = time.monotonic() - t0
        finally:
            reader.close()
    assert took < 0.5 + 1.0, took
    assert "secret" not in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("Airflow's database did not answer within 0.5s")


# --- judging a row ------------------------------------------------------------------------------


def job(age: float, state: str = "running", job_id: int = 7, heartbeat: str = "t1") -> SchedulerJob:
    return SchedulerJob(job_id, "n1.example.com", state, heartbeat, age)


def test_judge() -> None:
    host = HostMatch("n1")
    assert judge(job(3), host, 30) is None
    assert judge(job(31), host, 30) == (
        "Airflow's scheduler job 7 on n1.example.com last heartbeat 31s ago (scheduler_job_heartbeat_timeout 30s)"
    )
    assert (
        judge(job(2, state="success"), host, 30) == "Airflow's newest scheduler job on n1.example.com (id 7) is success"
    )
    assert judge(job(2, state=""), host, 30) == (
        "Airflow's newest scheduler job on n1.example.com (id 7) is without a state"
    )
    missing = judge(None, host, 30)
    assert missing is not None and "no SchedulerJob row for host 'n1' (or n1.*)" in missing
    assert "scheduler_job_hostnames" in missing
    assert "for host 'n1.example.com'" in (judge(None, HostMatch("n1.example.com", exact=True), 30) or "")
    # A heartbeat seen to change since the last look is fresh whatever its age (a clock behind).
    assert judge(job(90, heartbeat="t2"), host, 30, previous=job(85, heartbeat="t1")) is None
    assert judge(job(90, heartbeat="t1"), host, 30, previous=job(85, heartbeat="t1")) is not None
    assert judge(job(90, job_id=8), host, 30, previous=job(85, job_id=7, heartbeat="t0")) is not None  # a new row


# --- the config keys ----------------------------------------------------------------------------

NODE = "n1"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sfc.cfg"
    base = f"[scheduler_failover]\nscheduler_nodes_in_cluster = {NODE}, n2\ncurrent_host = {NODE}\n"
    base += "metadata_service_sql_conn = mysql+pymysql://sfc@metastore.invalid/sfc\n"
    path.write_text(base + text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **env: str) -> Config:
    return load_config(str(write(tmp_path, text)), env={"AIRFLOW_HOME": str(tmp_path), **env}, hostname=lambda: NODE)


def error(tmp_path: Path, text: str, **env: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, **env)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_the_check_is_off_by_default(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.scheduler_job_heartbeat_timeout == 0 and config.scheduler_job_sql_conn == ""
    for off in ("0", ""):
        assert load(tmp_path, f"scheduler_job_heartbeat_timeout = {off}\n").scheduler_job_heartbeat_timeout == 0
    # Off: a bad value of the other two keys is not looked at more than its parser does.
    assert load(tmp_path, "scheduler_job_sql_conn = nonsense\n").scheduler_job_sql_conn == ""


def test_airflow_s_database_url_defaults_like_airflow(tmp_path: Path) -> None:
    on = "scheduler_job_heartbeat_timeout = 30\n"
    assert load(tmp_path, on).scheduler_job_sql_conn == f"sqlite:///{tmp_path / 'airflow.db'}"  # Airflow's default
    core = "[core]\nsql_alchemy_conn = sqlite:////srv/airflow/airflow.db\n"
    assert load(tmp_path, on + core).scheduler_job_sql_conn == "sqlite:////srv/airflow/airflow.db"  # SQLite too
    database = "[database]\nsql_alchemy_conn = postgresql+psycopg2://a:p%%w@db/airflow\n"
    assert load(tmp_path, on + core + database).scheduler_job_sql_conn == "postgresql+psycopg2://a:p%w@db/airflow"
    from_env = load(tmp_path, on + database, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="mysql+mysqldb://a@h/airflow")
    assert from_env.scheduler_job_sql_conn == "mysql+mysqldb://a@h/airflow"
    mine = load(tmp_path, on + "scheduler_job_sql_conn = postgresql://ro:pw5ecret@replica/airflow\n" + database)
    assert mine.scheduler_job_sql_conn == "postgresql://ro:pw5ecret@replica/airflow"
    assert mine.redacted()["scheduler_job_sql_conn"] == "postgresql://ro:***@replica/airflow"
    assert "pw5ecret" in config_secrets(mine) and "pw5ecret" not in repr(mine)


def test_the_timeout_must_exceed_airflow_s_heartbeat_interval(tmp_path: Path) -> None:
    message = error(tmp_path, "scheduler_job_heartbeat_timeout = 5\n")
    assert "scheduler_job_heartbeat_timeout" in message and "sfc.cfg" in message
    assert "must be larger than Airflow's [scheduler] scheduler_heartbeat_sec (5s" in message
    assert load(tmp_path, "scheduler_job_heartbeat_timeout = 5.5\n").scheduler_job_heartbeat_timeout == 5.5
    faster = "[scheduler]\nscheduler_heartbeat_sec = 1\n"
    assert load(tmp_path, "scheduler_job_heartbeat_timeout = 2\n" + faster).scheduler_job_heartbeat_timeout == 2
    slower = {"AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "60"}
    assert "(60s" in error(tmp_path, "scheduler_job_heartbeat_timeout = 30\n" + faster, **slower)
    bad = error(tmp_path, "scheduler_job_heartbeat_timeout = 30\n[scheduler]\nscheduler_heartbeat_sec = often\n")
    assert "scheduler_heartbeat_sec = 'often': not a number" in bad
    assert "scheduler_job_heartbeat_timeout" in error(tmp_path, "scheduler_job_heartbeat_timeout = soon\n")
    assert "scheduler_job_heartbeat_timeout" in error(tmp_path, "scheduler_job_heartbeat_timeout = -1\n")


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("nonsense", "not a SQLAlchemy URL"),
        ("oracle://u@h/x", "'oracle' is not supported"),
        ("mysql+mysqlconnector://u@h/x", "driver 'mysqlconnector' cannot be held to a deadline"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("postgresql://u:p@ss@db/x", "unescaped '@'"),
    ],
)
def test_bad_airflow_database_urls_are_one_line(tmp_path: Path, url: str, needle: str) -> None:
    message = error(tmp_path, f"scheduler_job_heartbeat_timeout = 30\nscheduler_job_sql_conn = {url}\n")
    assert "scheduler_job_sql_conn" in message and needle in message
    assert "p@ss" not in message


def test_hostnames_map_nodes_to_airflow_s_names(tmp_path: Path) -> None:
    on = "scheduler_job_heartbeat_timeout = 30\n"
    config = load(tmp_path, on + "scheduler_job_hostnames = n2:ip-10-0-0-2.ec2.internal\n")
    assert config.job_hostname("n2") == ("ip-10-0-0-2.ec2.internal", True)
    assert config.job_hostname("n1") == ("n1", False)  # the default: the node name, or n1.*
    for bad, needle in [
        ("n1", "'n1' is not node:hostname"),
        ("n1:", "is not node:hostname"),
        ("n9:h", "'n9' is not in scheduler_nodes_in_cluster"),
        ("n1:a, n1:b", "n1 is named twice"),
        ("n1:" + "h" * 501, "is not a host name as Airflow records it"),
    ]:
        message = error(tmp_path, on + f"scheduler_job_hostnames = {bad}\n")
        assert "scheduler_job_hostnames" in message and needle in message, message


def test_a_missing_driver_stops_the_controller_with_one_line(tmp_path: Path) -> None:
    import sqlalchemy

    config = load(tmp_path, "scheduler_job_heartbeat_timeout = 30\nscheduler_job_sql_conn = postgresql+psycopg://h/a\n")
    if sqlalchemy.__version__.startswith("1."):
        with pytest.raises(ConfigError, match="scheduler_job_sql_conn: the psycopg 3 driver needs SQLAlchemy 2"):
            SchedulerJobReader(config.scheduler_job_sql_conn, 1.0)
    else:
        SchedulerJobReader(config.scheduler_job_sql_conn, 1.0).close()


# --- the controller -----------------------------------------------------------------------------


class FakeJobs(SchedulerJobReader):
    """Airflow's job table in memory: ``rows`` by host name; ``fail`` makes a read raise."""

    def __init__(self) -> None:  # no database
        self.rows: dict[str, SchedulerJob] = {}
        self.fail: str | None = None
        self.asked: list[HostMatch] = []
        self.closed = False

    def newest(self, host: HostMatch) -> SchedulerJob | None:
        self.asked.append(host)
        if self.fail is not None:
            raise MetastoreError(self.fail)
        return self.rows.get(host.name)

    def close(self) -> None:
        self.closed = True

    def beat(self, host: str, age: float = 1.0, job_id: int = 1, state: str = "running") -> None:
        """The scheduler on ``host`` stamped its row ``age`` seconds ago (a new stamp each call)."""
        self.rows[host] = SchedulerJob(job_id, host, state, f"{time.monotonic_ns()}", age)

    def freeze(self, host: str, age: float) -> None:
        """The row of ``host`` as it was, only older."""
        row = self.rows[host]
        self.rows[host] = SchedulerJob(row.id, row.hostname, row.state, row.heartbeat, age)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.close()


def tick(cluster: Cluster, controller: Controller, seconds: float = 1.0) -> str:
    cluster.clock.advance(seconds)
    return controller.run_cycle()


def active(cluster: Cluster, jobs: FakeJobs, **settings: Any) -> Controller:
    """n1's controller, active, its scheduler started and seen heartbeating once."""
    settings = {"scheduler_job_heartbeat_timeout": 10, "scheduler_health_failures": 3, **settings}
    c1 = cluster.controller("n1", job_reader=jobs, **settings)
    assert "placed and started the scheduler on n1" in c1.run_cycle()
    jobs.beat("n1")
    assert "scheduler healthy on n1" in tick(cluster, c1)
    return c1


def test_a_stale_job_heartbeat_restarts_only_after_n_failures_in_a_row(cluster: Cluster) -> None:
    jobs = FakeJobs()
    c1 = active(cluster, jobs)
    jobs.freeze("n1", age=11)  # stuck: the process still runs, its heartbeat is 11 s old
    for count in (1, 2):
        assert "scheduler healthy on n1" in tick(cluster, c1)
        assert c1.last_probes["n1"].detail == (
            f"Airflow's scheduler job 1 on n1 last heartbeat 11s ago (scheduler_job_heartbeat_timeout 10s) ({count}/3)"
        )
    jobs.beat("n1")  # it came back: the count starts over
    assert "scheduler healthy on n1" in tick(cluster, c1)
    assert c1.last_probes["n1"].detail == ""
    jobs.freeze("n1", age=12)
    sentences = [tick(cluster, c1) for _ in range(3)]
    assert all("scheduler healthy on n1" in s for s in sentences[:2])
    assert sentences[2].startswith(
        "active (epoch 1): scheduler was unhealthy on n1 (Airflow's scheduler job 1 on n1 last heartbeat 12s ago"
        " (scheduler_job_heartbeat_timeout 10s) 3 times in a row); restarted it in place (attempt 1/3"
    ), sentences[2]
    assert cluster.actions == [("n1", "start"), ("n1", "stop"), ("n1", "start")]
    restart = cluster.store.events_of("restart")[-1].message
    assert "last heartbeat 12s ago" in restart
    assert jobs.asked[-1] == HostMatch("n1", exact=False)


def test_a_new_scheduler_gets_its_start_timeout_to_stamp_its_first_heartbeat(cluster: Cluster) -> None:
    jobs = FakeJobs()
    c1 = cluster.controller("n1", job_reader=jobs, scheduler_job_heartbeat_timeout=10, scheduler_start_timeout=10)
    jobs.beat("n1", age=500, job_id=1)  # the row of a scheduler that ran here before (killed)
    assert "placed and started the scheduler on n1" in c1.run_cycle()
    for _ in range(10):  # within scheduler_start_timeout, before it ever stamped: not counted
        assert "scheduler healthy on n1" in tick(cluster, c1)
        assert c1.last_probes["n1"].detail.startswith("starting: Airflow's scheduler job 1 on n1 last heartbeat 500s")
    jobs.beat("n1", job_id=2)  # its own row appears
    assert "scheduler healthy on n1" in tick(cluster, c1)
    assert c1.last_probes["n1"].detail == ""
    assert cluster.actions == [("n1", "start")]


def test_a_scheduler_that_never_stamps_is_restarted_after_its_grace(cluster: Cluster) -> None:
    jobs = FakeJobs()  # no row for n1 at all (e.g. it never got to Airflow's database)
    c1 = cluster.controller(
        "n1",
        job_reader=jobs,
        scheduler_job_heartbeat_timeout=10,
        scheduler_start_timeout=3,
        scheduler_health_failures=2,
    )
    assert "placed and started the scheduler on n1" in c1.run_cycle()
    assert "scheduler healthy on n1" in tick(cluster, c1)
    assert c1.last_probes["n1"].detail.startswith("starting: Airflow's job table has no SchedulerJob row for host 'n1'")
    sentences = [tick(cluster, c1) for _ in range(4)]
    assert all("scheduler healthy on n1" in s for s in sentences[:3]), sentences
    assert "scheduler was unhealthy on n1 (Airflow's job table has no SchedulerJob row" in sentences[3], sentences


def test_an_unreadable_job_table_never_restarts_a_scheduler(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    jobs = FakeJobs()
    c1 = active(cluster, jobs, scheduler_health_failures=2)
    jobs.freeze("n1", age=30)
    assert "scheduler healthy on n1" in tick(cluster, c1)  # failure 1/2
    jobs.fail = "Airflow's database did not answer within 0.5s"
    with caplog.at_level(logging.INFO, logger="scheduler_failover_controller"):
        for _ in range(20):
            assert "scheduler healthy on n1" in tick(cluster, c1)
            assert c1.last_probes["n1"].detail == "job heartbeat unknown: Airflow's database did not answer within 0.5s"
        jobs.fail = None
        jobs.beat("n1")
        assert "scheduler healthy on n1" in tick(cluster, c1)
    warnings = [r.getMessage() for r in caplog.records if "cannot read Airflow's job table" in r.getMessage()]
    assert warnings == [
        "cannot read Airflow's job table (Airflow's database did not answer within 0.5s): "
        "scheduler heartbeats are not judged"
    ]  # once per outage, not every cycle
    assert any("can be read again" in r.getMessage() for r in caplog.records)
    assert cluster.actions == [("n1", "start")]


def test_the_unknown_look_keeps_the_count_it_interrupts(cluster: Cluster) -> None:
    jobs = FakeJobs()
    c1 = active(cluster, jobs, scheduler_health_failures=2)
    jobs.freeze("n1", age=30)
    assert "scheduler healthy on n1" in tick(cluster, c1)  # 1/2
    jobs.fail = "down"
    assert "scheduler healthy on n1" in tick(cluster, c1)  # not counted, not reset
    jobs.fail = None
    assert "restarted it in place" in tick(cluster, c1)  # 2/2


def test_a_heartbeat_that_moves_is_fresh_whatever_its_age(cluster: Cluster) -> None:
    """The scheduler host's clock is 5 minutes behind the database's: every stamp looks old."""
    jobs = FakeJobs()
    c1 = cluster.controller("n1", job_reader=jobs, scheduler_job_heartbeat_timeout=10, scheduler_start_timeout=3)
    assert "placed and started the scheduler on n1" in c1.run_cycle()
    for _ in range(15):
        jobs.beat("n1", age=300)
        assert "scheduler healthy on n1" in tick(cluster, c1)
    assert cluster.actions == [("n1", "start")]


def test_a_row_that_says_the_scheduler_ended_is_a_failure(cluster: Cluster) -> None:
    jobs = FakeJobs()
    c1 = active(cluster, jobs, scheduler_health_failures=1)
    jobs.beat("n1", state="failed")
    sentence = tick(cluster, c1)
    assert "scheduler was unhealthy on n1 (Airflow's newest scheduler job on n1 (id 1) is failed 1 times" in sentence


def test_the_job_check_asks_for_each_node_s_airflow_hostname(cluster: Cluster) -> None:
    jobs = FakeJobs()
    c2 = cluster.controller(
        "n2", job_reader=jobs, scheduler_job_heartbeat_timeout=10, scheduler_job_hostnames="n1:ip-10-0-0-1.internal"
    )
    cluster.runners["n1"].run()  # adopted: the active controller on n2 judges n1's scheduler too
    jobs.beat("ip-10-0-0-1.internal")
    assert "adopted the scheduler already running on n1" in c2.run_cycle()
    assert "scheduler healthy on n1" in tick(cluster, c2)
    assert HostMatch("ip-10-0-0-1.internal", exact=True) in jobs.asked
    assert all(host.name != "n2" for host in jobs.asked)  # n2 runs no scheduler: nothing to read
    c2.shutdown()
    assert jobs.closed


def test_a_stopped_scheduler_is_not_looked_up(cluster: Cluster) -> None:
    jobs = FakeJobs()
    c1 = active(cluster, jobs)
    asked = len(jobs.asked)
    cluster.runners["n1"].hang()  # SIGSTOP: the process probe sees it first, no read needed
    assert "scheduler was unhealthy on n1; restarted it in place" in tick(cluster, c1)
    assert len(jobs.asked) == asked
