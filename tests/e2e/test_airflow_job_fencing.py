"""airflow_job_fencing with a real controller, a real PostgreSQL (MariaDB: ``manual``) and a real Airflow database.

Airflow's schema comes from ``airflow db migrate`` (Airflow 2's virtualenv, as the lab makes it).
On MariaDB, Airflow's user is an account of its own without global privileges (``'af'@'127.0.0.%'``),
as a production one is: it sees and ends only its own sessions.
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

from tests.conftest import MariaDB, mariadb_binaries, missing, start_mariadb
from tests.process.harness import Cluster
from tests.support.pg import PostgresServer, postgresql_available, start_postgres
from tests.support.waiting import wait_for

pytestmark = pytest.mark.process  # real processes; in the e2e lane: it needs an Airflow virtualenv

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


class Backend:
    """One database server for the test: Airflow's database, the metastore, and their SQL."""

    name = ""
    port = 0

    def url(self, database: str) -> str:
        raise NotImplementedError

    def connect(self, database: str, port: int | None = None) -> Any:
        raise NotImplementedError

    def create_database(self) -> str:
        raise NotImplementedError

    def ago(self, seconds: str) -> str:
        """SQL for the server's now less ``seconds`` (an expression or a placeholder)."""
        raise NotImplementedError

    def clients(self, conn: Any) -> set[str]:
        """The client addresses of the server's sessions."""
        raise NotImplementedError


class Postgres(Backend):
    name = "postgresql"

    def __init__(self, pg: PostgresServer) -> None:
        self.pg, self.port = pg, pg.port

    def url(self, database: str) -> str:
        return self.pg.url(database)

    def connect(self, database: str, port: int | None = None) -> Any:
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1", port=port or self.port, user="postgres", dbname=database, connect_timeout=5
        )
        conn.autocommit = True
        return conn

    def create_database(self) -> str:
        return self.pg.create_database()

    def ago(self, seconds: str) -> str:
        return f"now() - {seconds} * interval '1 second'"

    def clients(self, conn: Any) -> set[str]:
        return {r[0] for r in one(conn, "SELECT host(client_addr) FROM pg_stat_activity WHERE client_addr IS NOT NULL")}


class Maria(Backend):
    name = "mariadb"
    USER = ("af", "af-secret")

    def __init__(self, db: MariaDB) -> None:
        self.db, self.port = db, db.port

    def url(self, database: str) -> str:
        return f"mysql+pymysql://{':'.join(self.USER)}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str, port: int | None = None) -> Any:
        import pymysql

        return pymysql.connect(
            host="127.0.0.1",
            port=port or self.port,
            user=self.USER[0],
            password=self.USER[1],
            database=database,
            autocommit=True,
            connect_timeout=5,
        )

    def create_database(self) -> str:
        name = self.db.create_database()
        with self.db.admin() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE USER IF NOT EXISTS '{self.USER[0]}'@'127.0.0.%' IDENTIFIED BY '{self.USER[1]}'")
            cur.execute(f"GRANT ALL ON {name}.* TO '{self.USER[0]}'@'127.0.0.%'")
        return name

    def ago(self, seconds: str) -> str:
        return f"NOW(6) - INTERVAL {seconds} SECOND"

    def clients(self, conn: Any) -> set[str]:
        with self.db.admin() as admin:
            hosts = one(admin, "SELECT HOST FROM information_schema.PROCESSLIST WHERE USER = %s", (self.USER[0],))
        return {str(r[0]).rsplit(":", 1)[0] for r in hosts}


@pytest.fixture(params=["postgresql", pytest.param("mariadb", marks=pytest.mark.manual)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A server of this test's own that lets Airflow's user in from every loopback address, not just 127.0.0.1."""
    if request.param == "mariadb":
        if mariadb_binaries() is None:
            missing("mariadb-server (mariadbd, mariadb-install-db)")
        with start_mariadb() as db:
            yield Maria(db)
        return
    if not postgresql_available():
        missing("postgresql (server binaries, the postgres user and psycopg2)")
    with start_postgres() as pg:
        with (pg.data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 127.0.0.0/8 trust\n")
        pg.execute("SELECT pg_reload_conf()")
        yield Postgres(pg)


def migrate(backend: Backend, database: str, home: Path) -> None:
    """``airflow db migrate`` of Airflow 2 into ``database``."""
    if not (AIRFLOW2 / "bin" / "airflow").exists():
        missing(f"an Airflow 2 virtualenv at {AIRFLOW2} (scripts/setup.sh builds it)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=backend.url(database))
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


def one(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []


def test_a_start_ends_the_cut_off_node_s_job_and_sessions_only(tmp_path: Path, backend: Backend) -> None:
    db = backend
    airflow_db, meta_db = db.create_database(), db.create_database()
    migrate(db, airflow_db, tmp_path / "airflow")
    admin = db.connect(airflow_db)

    def job(host: str, age: int) -> int:
        rows = one(
            admin,
            "INSERT INTO job (job_type, state, hostname, start_date, latest_heartbeat, executor_class, unixname)"
            f" VALUES ('SchedulerJob', 'running', %s, {db.ago('3600')}, {db.ago(str(age))},"
            " 'LocalExecutor', 'airflow') RETURNING id",
            (host,),
        )
        return int(rows[0][0])

    older, elsewhere = job("127.0.0.2", 600), job("elsewhere.example.com", 30)
    dead, live = job("127.0.0.2", 20), job("127.0.0.3", 0)
    relays = {ip: Relay(ip, ("127.0.0.1", db.port)) for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4")}
    sessions = {ip: db.connect(airflow_db, relay.port) for ip, relay in relays.items()}
    # n2's scheduler was cut off mid-transaction, holding its own job row.
    one(sessions["127.0.0.2"], "BEGIN")
    one(sessions["127.0.0.2"], "SELECT id FROM job WHERE id = %s FOR UPDATE", (dead,))
    stop_beating = threading.Event()

    def beat() -> None:  # n3: a scheduler the controller cannot see, heartbeating
        conn = db.connect(airflow_db)
        try:
            deadline = time.monotonic() + 120
            while not stop_beating.wait(0.2) and time.monotonic() < deadline:
                one(conn, f"UPDATE job SET latest_heartbeat = {db.ago('0')} WHERE id = %s", (live,))
        finally:
            conn.close()

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    cluster = Cluster(tmp_path / "cluster", db.url(meta_db), 3, node_control="self", poll=0.5, ttl=3.0)
    with cluster.config.open("a") as cfg:
        cfg.write(
            "airflow_job_fencing = true\n"
            f"scheduler_job_sql_conn = {db.url(airflow_db)}\n"
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
        clients = db.clients(admin)
        assert "127.0.0.2" not in clients and {"127.0.0.3", "127.0.0.4"} <= clients, clients
        with pytest.raises(Exception) as info:  # n2's session was ended by the server
            one(sessions["127.0.0.2"], "SELECT 1")
        assert info.type.__name__ in ("OperationalError", "InterfaceError"), info.value
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
