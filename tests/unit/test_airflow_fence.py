"""airflow_job_fencing on an Airflow-like SQLite job table, a fake session table and fake sleeps:
which nodes count as proven empty, which row is ended and when not, which sessions are ended,
a database that fails, the config key and the start that calls it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scheduler_failover_controller.airflow_fence import AirflowFence, open_airflow_fence, proven_empty
from scheduler_failover_controller.airflow_sessions import canonical, client_host, end_sessions, node_addresses
from scheduler_failover_controller.config import Config, load_config
from scheduler_failover_controller.probe_result import ProbeResult, SchedulerState

from .test_job_heartbeat import airflow_db, load, stamp

__all__ = ["airflow_db"]  # the fixture, imported

AirflowDB = tuple[Path, Callable[..., None]]
S = SchedulerState


def probes(**states: SchedulerState) -> dict[str, ProbeResult]:
    return {node: ProbeResult(node, state) for node, state in states.items()}


def rows(path: Path) -> dict[int, str]:
    with sqlite3.connect(path) as conn:
        return {int(r[0]): str(r[1]) for r in conn.execute("SELECT id, state FROM job")}


def fence_for(tmp_path: Path, path: Path, sleep: Callable[[float], None] = lambda s: None) -> AirflowFence:
    cfg = tmp_path / "three.cfg"
    cfg.write_text(
        "[scheduler_failover]\nscheduler_nodes_in_cluster = n1, n2, n3\ncurrent_host = n1\n"
        "metadata_service_sql_conn = mysql+pymysql://sfc@metastore.invalid/sfc\n"
        f"airflow_job_fencing = true\nscheduler_job_sql_conn = sqlite:///{path}\n"
    )
    config = load_config(str(cfg), env={"AIRFLOW_HOME": str(tmp_path)}, hostname=lambda: "n1")
    fence = open_airflow_fence(config)
    assert fence is not None
    fence.sleep = sleep
    return fence


def test_the_nodes_proven_empty() -> None:
    seen = probes(n1=S.STOPPED, n2=S.UNKNOWN, n3=S.STOPPED)
    assert proven_empty("n1", seen) == {"n1": False, "n2": True, "n3": False}
    # The target counts only when seen empty; a running or unhealthy node never counts.
    assert proven_empty("n2", seen) == {"n1": False, "n3": False}
    assert proven_empty("n1", probes(n1=S.UNHEALTHY, n2=S.RUNNING)) == {}


def test_only_the_proven_nodes_newest_running_job_is_ended(tmp_path: Path, airflow_db: AirflowDB) -> None:
    path, add = airflow_db
    add(1, "n2.example.com", 300, state="failed")
    add(2, "n2.example.com", 8)  # n2's scheduler, dead: ended
    add(3, "n1", 400)  # an older row of n1 (the newest is failed): left to Airflow
    add(4, "n1", 9, state="success")
    add(5, "n3", 2)  # n3 runs a scheduler (not proven empty): never touched
    add(6, "n2.example.com", 1, job_type="TriggererJob")  # not a scheduler's
    add(7, "n22", 5)  # another host whose name starts with n2
    slept: list[float] = []
    fence = fence_for(tmp_path, path, slept.append)
    done = fence.before_start("n1", probes(n1=S.STOPPED, n2=S.UNKNOWN, n3=S.RUNNING))
    assert done == ["ended Airflow's SchedulerJob 2 of n2"]
    assert slept == [1.0]  # read twice, a second apart
    expected = {1: "failed", 2: "failed", 3: "running", 4: "success", 5: "running", 6: "running", 7: "running"}
    assert rows(path) == expected
    # Done is done: nothing left to end, and no second look needed.
    slept.clear()
    assert fence.before_start("n1", probes(n1=S.STOPPED, n2=S.UNKNOWN, n3=S.RUNNING)) == []
    assert slept == []


def test_a_heartbeat_that_moves_is_not_ended(
    tmp_path: Path, airflow_db: AirflowDB, caplog: pytest.LogCaptureFixture
) -> None:
    path, add = airflow_db
    add(2, "n2", 3)

    def beat(_seconds: float) -> None:  # a live scheduler under n2's name stamps its row meanwhile
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE job SET latest_heartbeat = ? WHERE id = 2", (stamp(0),))

    fence = fence_for(tmp_path, path, beat)
    assert fence.before_start("n1", probes(n1=S.STOPPED, n2=S.STOPPED)) == []
    assert rows(path) == {2: "running"}
    assert "SchedulerJob 2 on n2 still heartbeats" in caplog.text


def test_a_row_replaced_meanwhile_is_not_ended(tmp_path: Path, airflow_db: AirflowDB) -> None:
    path, add = airflow_db
    add(2, "n2", 20)
    fence = fence_for(tmp_path, path, lambda s: add(3, "n2", 0))  # a newer row appears between the reads
    assert fence.before_start("n1", probes(n1=S.STOPPED, n2=S.STOPPED)) == []
    assert rows(path) == {2: "running", 3: "running"}


def test_the_update_names_the_heartbeat_it_read(tmp_path: Path, airflow_db: AirflowDB) -> None:
    path, add = airflow_db
    add(2, "n2", 20)
    fence = fence_for(tmp_path, path)
    (row,) = fence._running(["n2"]).values()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE job SET latest_heartbeat = ? WHERE id = 2", (stamp(0),))
    assert not fence._end_job(row) and rows(path) == {2: "running"}


def test_a_database_that_fails_never_blocks_a_start(
    tmp_path: Path, airflow_db: AirflowDB, caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = airflow_db
    path.unlink()  # no such database (read-write mode opens no new file either: Airflow's own path)
    path.mkdir()
    fence = fence_for(tmp_path, path)
    seen = probes(n1=S.STOPPED, n2=S.STOPPED)
    assert fence.before_start("n1", seen) == [] and fence.before_start("n1", seen) == []
    assert caplog.text.count("airflow_job_fencing: Airflow's database") == 1  # once per outage


def test_the_key_is_off_by_default_and_names_airflow_s_database(tmp_path: Path) -> None:
    assert load(tmp_path, "").airflow_job_fencing is False
    assert open_airflow_fence(load(tmp_path, "")) is None
    on = load(tmp_path, "airflow_job_fencing = true\n")
    assert on.airflow_job_fencing and on.scheduler_job_sql_conn == f"sqlite:///{tmp_path / 'airflow.db'}"
    database = "[database]\nsql_alchemy_conn = postgresql+psycopg2://a:pw@db/airflow\n"
    assert load(tmp_path, "airflow_job_fencing = yes\n" + database).scheduler_job_sql_conn.endswith("@db/airflow")


# --- sessions -----------------------------------------------------------------------------------


class FakeConn:
    """PostgreSQL's or MySQL's session table and the calls that end a session."""

    def __init__(self, sessions: list[tuple[int, str]]) -> None:
        self.sessions = sessions
        self.ended: list[int] = []

    def execute(self, statement: Any, params: dict[str, Any] | None = None) -> Any:
        sql = str(statement)
        if "pg_terminate_backend" in sql:
            assert params is not None
            self.ended.append(params["pid"])
            return Result([(True,)])
        assert "pg_stat_activity" in sql or "PROCESSLIST" in sql
        assert "current_database()" in sql or "DATABASE()" in sql
        return Result(self.sessions)

    def exec_driver_sql(self, sql: str) -> None:
        assert sql.startswith("KILL CONNECTION ")
        self.ended.append(int(sql.split()[-1]))


class Result(list):  # type: ignore[type-arg]
    def scalar(self) -> Any:
        return self[0][0]

    def __iter__(self) -> Any:
        return iter(list.__iter__(self))


def test_addresses_are_compared_in_one_spelling() -> None:
    assert canonical("::ffff:10.0.0.2") == "10.0.0.2" and canonical("FE80::1%eth0") == "fe80::1"
    assert canonical("Master2.Example.com") == "master2.example.com"
    assert client_host("mysql", "10.0.0.2:51234") == "10.0.0.2"
    assert client_host("mariadb", "master2:51234") == "master2"
    assert client_host("postgresql", "10.0.0.2") == "10.0.0.2"
    names = {"master2": {"10.0.0.2"}, "master2.example.com": {"10.0.0.2", "fd00::2"}}
    assert node_addresses(("master2", "master2.example.com"), lambda n: names.get(n, set())) == {
        "master2",
        "master2.example.com",
        "10.0.0.2",
        "fd00::2",
    }


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_only_the_node_s_own_sessions_are_ended(backend: str) -> None:
    conn = FakeConn([(11, "10.0.0.2:1" if backend == "mysql" else "10.0.0.2"), (12, "10.0.0.3"), (13, "10.0.0.9")])
    if backend == "mysql":
        conn.sessions = [(11, "10.0.0.2:1"), (12, "10.0.0.3:2"), (13, "10.0.0.9:3")]
    ended = end_sessions(conn, backend, node={"10.0.0.2", "10.0.0.9"}, others={"10.0.0.9"})  # type: ignore[arg-type]
    # 10.0.0.9 is also another node's: never ended, whichever node it may be.
    assert ended == [11] and conn.ended == [11]
    assert end_sessions(conn, "sqlite", {"10.0.0.2"}, set()) == []  # type: ignore[arg-type]


def test_an_unseen_node_s_sessions_are_ended_not_a_seen_one_s(tmp_path: Path, airflow_db: AirflowDB) -> None:
    path, add = airflow_db
    for job_id, node in enumerate(("n1", "n2", "n3"), start=1):
        add(job_id, node, 20)
    fence = fence_for(tmp_path, path)
    calls: list[str] = []

    def end(node: str) -> list[int]:
        calls.append(node)
        return [7]

    fence._end_sessions = end  # type: ignore[method-assign]
    done = fence.before_start("n3", probes(n1=S.UNKNOWN, n2=S.UNKNOWN, n3=S.STOPPED))
    # n1 is this controller's own node (its sessions are its own); n3 was seen empty.
    assert calls == ["n2"] and done[0] == "ended 1 session(s) of n2 in Airflow's database"
    assert len(done) == 4  # and the three jobs: n1 and n2 proven, n3 seen empty
    calls.clear()
    assert fence.before_start("n3", probes(n1=S.STOPPED, n2=S.UNKNOWN, n3=S.STOPPED)) == []
    assert calls == []  # no running job of n2 any more: an unseen node that runs none keeps its sessions


def test_a_start_fences_airflow_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from .fakes import Cluster

    c = Cluster()
    order: list[str] = []

    class Recorder:
        def before_start(self, target: str, seen: dict[str, ProbeResult]) -> list[str]:
            order.append(f"fence {target} {sorted(seen)}")
            return []

    ctl = c.controller("n1")
    ctl.starts.airflow = Recorder()  # type: ignore[assignment]
    original = c.runners["n1"].start

    def start(*args: Any, **kwargs: Any) -> Any:
        order.append("start n1")
        return original(*args, **kwargs)

    monkeypatch.setattr(c.runners["n1"], "start", start)
    ctl.run_cycle()
    assert order[:2] == ["fence n1 ['n1', 'n2', 'n3']", "start n1"], order


def test_config_is_a_config() -> None:
    assert Config.__dataclass_fields__["airflow_job_fencing"].default is False
