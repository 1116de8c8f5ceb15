"""airflow_job_fencing with a real controller, a real PostgreSQL and a real Airflow database.

Airflow's schema comes from ``airflow db migrate`` (Airflow 2's virtualenv, as the lab makes it).
Three nodes in self mode, and only n1's controller runs: n2 and n3 are never seen. Airflow's
``job`` table holds what a cluster leaves behind:

- n2's scheduler died cut off: its newest SchedulerJob is ``running`` with a heartbeat that stands
  still, and its session (from n2's address, 127.0.0.2, through a relay) is idle in a transaction
  holding that very row locked, as a fenced scheduler's can for minutes;
- an older running row of n2, a running row of a host that is no node, and n3's row whose
  heartbeat moves (a live scheduler the controller cannot see) must all be left alone, and so must
  n3's session (127.0.0.3) and a session from an address that is no node's (127.0.0.4).

Before n1's controller starts its scheduler, n2's session must be gone and its newest job ``failed``
(the new scheduler then adopts its tasks at once), and nothing else touched. On a controller
without ``airflow_job_fencing`` the key is unknown and nothing is written: the test fails there.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing
from tests.process.harness import Cluster
from tests.support.pg import PostgresServer, postgresql_available, start_postgres
from tests.support.waiting import wait_for

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW2 = Path(os.environ.get("SFC_AIRFLOW2_VENV", ROOT / ".venv-airflow2"))


class Relay:
    """TCP from 127.0.0.1:``port`` to the server, leaving from ``source``: the server sees that client address."""

    def __init__(self, source: str, server: tuple[str, int]) -> None:
        self.source, self.server = source, server
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.server, timeout=10, source_address=(self.source, 0))
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self.closed.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.5)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        a.close()
                        b.close()
                        return
                    (b if sock is a else a).sendall(data)

    def close(self) -> None:
        self.closed.set()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    """A server of this test's own that trusts every loopback address (127.0.0.0/8), not just 127.0.0.1."""
    if not postgresql_available():
        missing("postgresql (server binaries, the postgres user and psycopg2)")
    with start_postgres() as pg:
        with (pg.data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 127.0.0.0/8 trust\n")
        pg.execute("SELECT pg_reload_conf()")
        yield pg


def migrate(pg: PostgresServer, database: str, home: Path) -> None:
    """``airflow db migrate`` of Airflow 2 into ``database``."""
    if not (AIRFLOW2 / "bin" / "airflow").exists():
        missing(f"an Airflow 2 virtualenv at {AIRFLOW2} (scripts/setup.sh builds it)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=pg.url(database))
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    result = subprocess.run(
        [str(AIRFLOW2 / "bin" / "airflow"), "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def connect(pg: PostgresServer, database: str, port: int | None = None) -> Any:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port or pg.port, user="postgres", dbname=database, connect_timeout=5)
    conn.autocommit = True
    return conn


def one(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []


def test_a_start_ends_the_cut_off_node_s_job_and_sessions_and_nothing_else(
    tmp_path: Path, server: PostgresServer
) -> None:
    pg = server
    airflow_db, meta_db = pg.create_database(), pg.create_database()
    migrate(pg, airflow_db, tmp_path / "airflow")
    admin = connect(pg, airflow_db)

    def job(host: str, age: float) -> int:
        rows = one(
            admin,
            "INSERT INTO job (job_type, state, hostname, start_date, latest_heartbeat, executor_class, unixname)"
            " VALUES ('SchedulerJob', 'running', %s, now() - interval '1 hour', now() - %s * interval '1 second',"
            " 'LocalExecutor', 'airflow') RETURNING id",
            (host, age),
        )
        return int(rows[0][0])

    older, elsewhere = job("127.0.0.2", 600), job("elsewhere.example.com", 30)
    dead, live = job("127.0.0.2", 20), job("127.0.0.3", 0)
    relays = {ip: Relay(ip, ("127.0.0.1", pg.port)) for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4")}
    sessions = {ip: connect(pg, airflow_db, relay.port) for ip, relay in relays.items()}
    # n2's scheduler was cut off mid-transaction, holding its own job row.
    sessions["127.0.0.2"].autocommit = False
    one(sessions["127.0.0.2"], "SELECT id FROM job WHERE id = %s FOR UPDATE", (dead,))
    stop_beating = threading.Event()

    def beat() -> None:  # n3: a scheduler the controller cannot see, heartbeating
        conn = connect(pg, airflow_db)
        try:
            deadline = time.monotonic() + 120
            while not stop_beating.wait(0.2) and time.monotonic() < deadline:
                one(conn, "UPDATE job SET latest_heartbeat = now() WHERE id = %s", (live,))
        finally:
            conn.close()

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    cluster = Cluster(tmp_path / "cluster", pg.url(meta_db), 3, node_control="self", poll=0.5, ttl=3.0)
    with cluster.config.open("a") as cfg:
        cfg.write(
            "airflow_job_fencing = true\n"
            f"scheduler_job_sql_conn = {pg.url(airflow_db)}\n"
            "scheduler_job_hostnames = n2:127.0.0.2, n3:127.0.0.3\n"
        )
    try:
        cluster.start("n1")

        def started() -> bool:
            assert cluster.procs["n1"].poll() is None, cluster.log("n1")[-2000:]
            return bool(cluster.observer.sample())

        wait_for(started, 60, "n1's scheduler")
        states = dict(one(admin, "SELECT id, state FROM job"))
        assert states[dead] == "failed", cluster.log("n1")[-3000:]
        assert states[older] == states[elsewhere] == states[live] == "running", states
        clients = {
            r[0] for r in one(admin, "SELECT host(client_addr) FROM pg_stat_activity WHERE client_addr IS NOT NULL")
        }
        assert "127.0.0.2" not in clients and {"127.0.0.3", "127.0.0.4"} <= clients, clients
        with pytest.raises(Exception) as info:  # n2's session was ended by the server
            one(sessions["127.0.0.2"], "SELECT 1")
        assert "terminat" in str(info.value) or "closed" in str(info.value), info.value
        assert one(sessions["127.0.0.4"], "SELECT 1") == [(1,)]
        log = cluster.log("n1")
        assert f"ended Airflow's SchedulerJob {dead} of n2" in log and "ended 1 session(s) of n2" in log
        assert f"SchedulerJob {live} on 127.0.0.3 still heartbeats" in log
    finally:
        stop_beating.set()
        beater.join(10)
        cluster.close()
        for conn in [admin, *sessions.values()]:
            with contextlib.suppress(Exception):
                conn.close()
        for relay in relays.values():
            relay.close()
