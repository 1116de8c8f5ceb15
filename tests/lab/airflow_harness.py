"""Real Airflow schedulers on the multi-host lab (tests/lab/test_airflow_lab.py, benchmarks/airflow.py).

On top of :class:`tests.lab.harness.Lab` (hosts, sshd, one controller per host, the metastore on
198.18.0.2), an :class:`AirflowLab` gives every host an Airflow home of its own,
``<base>/<host>/airflow.cfg``, whose Airflow metadata database is a database of its own on the
network's PostgreSQL or MariaDB (the controllers' metastore is another one). Every host runs the
same Airflow (a virtualenv of this machine, shared like the project): the LocalExecutor,
``[scheduler] use_row_level_locking = False``, no examples, DAGs unpaused at creation, and the
ledger DAG (examples/dags/sfc_ledger_dag.py) whose task appends ``run_id try host time`` to
``<base>/ledger``, a file every host writes (they share the filesystem). On Airflow 3 every host
also runs ``airflow dag-processor`` and ``airflow api-server`` on its own address, which its task
supervisors report to (``[core] execution_api_server_url``).

The controllers start ``airflow scheduler --pid <base>/<node>/scheduler.pid`` (the match: the
``--pid`` path names the node), in one of the start styles of :data:`START_STYLES`. The
:class:`AirflowObserver` counts, every 100 ms from the root namespace, the scheduler ROOT processes
(by argv; the children Airflow forks and renames by setproctitle do not match, and a child forked
before it renames itself has a matching ancestor). :meth:`AirflowLab.scheduler_processes` lists a
host's Airflow processes that belong to its scheduler: every process of the host but its PID 1,
sshd and its sessions, the controller and what it runs, and the dag-processor and api-server trees.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from scheduler_failover_controller.matching import matches
from scheduler_failover_controller.process_tree import parent_lookup, root_pids
from tests.lab.harness import Lab
from tests.lab.hosts import Host
from tests.lab.network import Network
from tests.lab.sites import LabMetastore, MariaDBSite, PostgreSQLSite
from tests.lab.tools import METASTORE_IP, ROOT, sh
from tests.support.netns import in_netns
from tests.support.observer import Observer, Seen
from tests.support.waiting import wait_for

DAG = ROOT / "examples" / "dags" / "sfc_ledger_dag.py"
API_PORT = 8080
START_STYLES = ("default", "setsid", "daemon")  # systemd: no systemd in the lab's hosts
FERNET_KEY = "3ta0v-6iDY1sKwq0Fw_oPi2AGcrxVN6rXfbeDc-RnXc="  # a fixed test key (never a secret)


@dataclass(frozen=True)
class Flavor:
    """One Airflow: its virtualenv and major version."""

    name: str
    venv: Path
    major: int

    @property
    def airflow(self) -> Path:
        return self.venv / "bin" / "airflow"

    def available(self) -> bool:
        return self.airflow.exists()

    def sql_url(self, site: LabMetastore, database: str) -> str:
        """The URL the hosts reach the Airflow database by (198.18.0.2, the driver of this virtualenv)."""
        if isinstance(site, PostgreSQLSite):
            driver = "psycopg" if self.major >= 3 else "psycopg2"
            return site.server.url(database, driver)
        assert isinstance(site, MariaDBSite), site
        # As for PostgreSQL (AirflowLab.site_database): a fenced scheduler's open transaction must
        # not hold its row locks for long; MariaDB ends a session idle in a transaction for 15 s.
        return site.db.url(database) + "?init_command=SET%20SESSION%20idle_transaction_timeout%3D15"


def flavors() -> dict[str, Flavor]:
    return {
        "airflow3": Flavor("airflow3", Path(os.environ.get("SFC_AIRFLOW_VENV", ROOT / ".venv-airflow")), 3),
        "airflow2": Flavor("airflow2", Path(os.environ.get("SFC_AIRFLOW2_VENV", ROOT / ".venv-airflow2")), 2),
    }


def airflow_config(flavor: Flavor, home: Path, host: Host, sql_url: str, dags: Path) -> str:
    """The host's airflow.cfg ('%' escaped: Airflow interpolates its values)."""
    base_url = f"http://{host.ip}:{API_PORT}"
    sections: dict[str, dict[str, str]] = {
        "core": {
            "dags_folder": str(dags),
            "load_examples": "False",
            "dags_are_paused_at_creation": "False",
            "executor": "LocalExecutor",
            "parallelism": "4",
            "fernet_key": FERNET_KEY,
            "simple_auth_manager_all_admins": "True",
            "execution_api_server_url": f"{base_url}/execution/",
            "hostname_callable": "socket.gethostname",
            "dagbag_import_timeout": "60",
        },
        "database": {"sql_alchemy_conn": sql_url, "sql_alchemy_pool_size": "3", "sql_alchemy_max_overflow": "5"},
        "logging": {"base_log_folder": str(home / "logs"), "worker_log_server_port": "8793"},
        "api": {"host": host.ip, "port": str(API_PORT), "base_url": base_url, "workers": "1", "secret_key": "lab"},
        "api_auth": {"jwt_secret": "sfc-lab-jwt-secret-not-a-secret"},
        "webserver": {"secret_key": "lab", "base_url": base_url},
        "scheduler": {
            # As singleton users set it: one scheduler at a time, no SELECT ... FOR UPDATE SKIP LOCKED.
            "use_row_level_locking": "False",
            # A scheduler killed or moved away leaves a SchedulerJob 'running' with a stale
            # heartbeat: the next one marks it failed (and resets its orphaned tasks) soon.
            "scheduler_health_check_threshold": "10",
            "orphaned_tasks_check_interval": "10",
            "scheduler_heartbeat_sec": "2",
            "min_file_process_interval": "10",
            "dag_dir_list_interval": "10",
            "parsing_processes": "1",
        },
        "dag_processor": {"refresh_interval": "10", "min_file_process_interval": "10", "parsing_processes": "1"},
    }
    if flavor.major >= 3 and sql_url.startswith("postgresql+psycopg:"):
        # Airflow 3 also opens an async engine; psycopg 3 is async too (asyncpg is not installed).
        sections["database"]["sql_alchemy_conn_async"] = sql_url
    return "".join(
        f"[{name}]\n" + "".join(f"{k} = {v.replace('%', '%%')}\n" for k, v in keys.items()) + "\n"
        for name, keys in sections.items()
    )


FAULTS = ("kill", "crash", "partition", "switchover", "restart")


@dataclass(frozen=True)
class Fault:
    """A fault injected on ``node`` at wall-clock ``at``; ``old``: its scheduler's processes then."""

    kind: str
    node: str
    at: float
    scheduler_pid: int
    old: list[Proc]
    runs: frozenset[str] = frozenset()  # the DAG's runs that existed then (an orphaned task may still finish one)


@dataclass(frozen=True)
class LedgerEntry:
    run_id: str
    try_number: int
    host: str
    time: float


@dataclass(frozen=True)
class Proc:
    """A process as seen at one moment (pid + start time: a reused pid is another process)."""

    pid: int
    started: float
    argv: str

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return proc.create_time() == self.started and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


class AirflowObserver(Observer):
    """The lab observer, counting real ``airflow scheduler`` ROOT processes, by node (their --pid path)."""

    def __init__(self, words: dict[str, list[str]]) -> None:
        super().__init__(match="airflow scheduler", interval=0.1)
        self.words = words

    def sample(self) -> list[Seen]:
        found: dict[int, str] = {}
        parents: dict[int, int] = {}
        for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
            argv = proc.info.get("cmdline") or []
            if "scheduler" not in argv:
                continue
            for node, words in self.words.items():
                if matches(argv, words):
                    found[proc.pid] = node
                    parents[proc.pid] = proc.info["ppid"]

        tops = root_pids(found, parent_lookup(parents))
        return [Seen(node, pid) for pid, node in found.items() if pid in tops]


@dataclass
class Service:
    """An Airflow daemon the harness runs on a host beside the controller (dag-processor, api-server)."""

    name: str
    host: Host
    nsenter: subprocess.Popen[bytes]
    pid: int


@dataclass
class AirflowLab:
    """A Lab whose hosts run real Airflow schedulers (see the module docstring).

    Create it with :func:`airflow_lab`; :meth:`boot` starts the hosts, the Airflow services and the
    controllers, the active one first.
    """

    net: Network
    site: LabMetastore
    flavor: Flavor
    size: int = 3
    style: str = "default"
    interval: float = 10.0
    node_control: str = "self"
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sfc-af-")))
    database: str = ""
    lab: Lab | None = None
    services: list[Service] = field(default_factory=list)
    gone: list[Service] = field(default_factory=list)  # services of a host that crashed

    def __post_init__(self) -> None:
        assert self.style in START_STYLES, self.style
        self.net.keep_track(self.base)
        os.chmod(self.base, 0o755)
        self.ledger = self.base / "ledger"
        self.ledger.touch(mode=0o666)
        self.dags = self.base / "dags"
        self.dags.mkdir()
        shutil.copy(DAG, self.dags / DAG.name)
        self.database = self.site_database()

    # --- set-up

    def site_database(self) -> str:
        if isinstance(self.site, PostgreSQLSite):
            name = self.site.server.create_database()
            # A scheduler fenced by a partition leaves its sessions on the server, one of them
            # maybe inside a transaction holding row locks the next scheduler waits for: without
            # these the server keeps them until its TCP keepalive gives up (hours). Found by the
            # partition trials; production databases behind a failover controller need the same.
            self.site.server.execute(
                f"ALTER DATABASE {name} SET idle_in_transaction_session_timeout = '15s'; "
                f"ALTER DATABASE {name} SET tcp_keepalives_idle = 5; "
                f"ALTER DATABASE {name} SET tcp_keepalives_interval = 2; "
                f"ALTER DATABASE {name} SET tcp_keepalives_count = 3; "
                f"ALTER DATABASE {name} SET tcp_user_timeout = 10000"
            )
            return name
        assert isinstance(self.site, MariaDBSite)
        return self.site.db.create_database()

    def node_dir(self, node: str) -> Path:
        return self.base / node

    def pid_file(self, node: str) -> str:
        return f"{self.base}/{node}/scheduler.pid"

    def env_words(self, node: str) -> list[str]:
        return [
            "env",
            f"AIRFLOW_HOME={self.node_dir(node)}",
            f"SFC_LEDGER={self.ledger}",
            f"SFC_LEDGER_INTERVAL={self.interval:g}",
        ]

    def controller_settings(self) -> dict[str, str]:
        """The keys of the hosts' sfc.cfg that make their controllers run this Airflow."""
        pid = f"{self.base}/{{node}}/scheduler.pid"
        env = " ".join(shlex.quote(w) for w in self.env_words("{node}"))
        scheduler = f"{self.flavor.airflow} scheduler --pid {pid}"
        command = {
            "default": f"exec {env} {scheduler}",
            # A session of its own: the leash (a child subreaper) still has it below it.
            "setsid": f"exec setsid {env} {scheduler}",
            # Airflow daemonizes (double fork, setsid); the start command exits at once.
            "daemon": f"exec {env} {scheduler} -D",
        }[self.style]
        return {
            "node_control": self.node_control,
            "scheduler_process_match": f"airflow scheduler --pid {pid}",
            "airflow_scheduler_start_command": command,
            "poll_frequency": "1",
            # Room for Airflow's own graceful stop: a renewal lands before the leash starts stopping
            # (renewal 1 + 2 x metastore_timeout 1 + 5 + margin 1 <= 10).
            "lease_ttl": "10",
            "metastore_timeout": "1",
            "scheduler_start_timeout": "30",
            "scheduler_stop_timeout": "5",
        }

    def make_lab(self) -> Lab:
        lab = Lab(self.net, self.site, size=self.size, config=self.controller_settings())
        self.lab = lab
        lab.config("h1")  # a config the controllers refuse fails here, not after a boot
        sql_url = self.flavor.sql_url(self.site, self.database)
        for host in lab.hosts:
            home = self.node_dir(host.name)
            (home / "logs").mkdir(parents=True)
            (home / "airflow.cfg").write_text(airflow_config(self.flavor, home, host, sql_url, self.dags))
        lab.observer = AirflowObserver(
            {h.name: ["airflow", "scheduler", "--pid", self.pid_file(h.name)] for h in lab.hosts}
        )
        return lab

    def airflow_env(self, host: Host) -> dict[str, str]:
        env = host.env()
        env.update({w.split("=", 1)[0]: w.split("=", 1)[1] for w in self.env_words(host.name)[1:]})
        env["PATH"] = f"{self.flavor.venv / 'bin'}:{env['PATH']}"
        return env

    def migrate(self, timeout: float = 600) -> float:
        """``airflow db migrate`` once (from the metastore host's namespace); returns its seconds."""
        assert self.lab is not None
        began = time.monotonic()
        host = self.lab.hosts[0]
        result = subprocess.run(
            ["ip", "netns", "exec", self.net.meta_ns, str(self.flavor.airflow), "db", "migrate"],
            env=self.airflow_env(host),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        (self.base / "migrate.log").write_text(result.stdout + result.stderr)
        assert result.returncode == 0, f"airflow db migrate exited {result.returncode}: {result.stderr[-3000:]}"
        return time.monotonic() - began

    def start_service(self, host: Host, *args: str) -> Service:
        name = args[0]
        with (self.node_dir(host.name) / f"{name}.log").open("ab") as log:
            nsenter = subprocess.Popen(
                host.enter(str(self.flavor.airflow), *args),
                env=self.airflow_env(host),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def child() -> bool:
            if nsenter.poll() is not None:
                raise AssertionError(f"{host.name}: airflow {name} exited at once")
            return bool(psutil.Process(nsenter.pid).children())

        wait_for(child, 10, f"{host.name}'s airflow {name}")
        service = Service(name, host, nsenter, psutil.Process(nsenter.pid).children()[0].pid)
        self.services.append(service)
        return service

    def api_healthy(self, host: Host) -> bool:
        def get() -> bool:
            try:
                url = f"http://{host.ip}:{API_PORT}/api/v2/monitor/health"
                with urllib.request.urlopen(url, timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        return in_netns(host.ns, get, timeout=10)

    def start_services(self, hosts: list[Host] | None = None, timeout: float = 180) -> None:
        """Airflow 3: dag-processor and api-server on every host (or ``hosts``), once the api answers."""
        assert self.lab is not None
        if self.flavor.major < 3:
            return
        todo = list(self.lab.hosts if hosts is None else hosts)
        for host in todo:
            self.start_service(host, "api-server")
            self.start_service(host, "dag-processor")
        for host in todo:
            wait_for(lambda h=host: self.api_healthy(h), timeout, f"{host.name}'s api-server", interval=1)  # type: ignore[misc]

    def boot(self, active: str = "h1") -> None:
        """Hosts, Airflow services, then the controller of ``active``, then the others; its scheduler placed."""
        lab = self.lab
        assert lab is not None
        lab.net.forget_neighbours()
        for host in lab.hosts:
            host.boot()
        for host in lab.hosts:
            host.wait_ready()
        self.start_services()
        lab.observer.start()
        first = lab.host(active)
        first.start_controller()

        def leading() -> bool:
            assert first.controller_running(), f"{active}'s controller exited: {first.log()[-2000:]}"
            return lab.active() == active

        wait_for(leading, 60, f"{active} to become active")
        for host in lab.hosts:
            if host.name != active:
                host.start_controller()

        def placed() -> bool:
            state = lab.state()
            return state.placement.valid and state.placement.node == active and self.nodes() == [active]

        wait_for(placed, 60, f"the scheduler on {active}")
        wait_for(lambda: len(lab.store.controllers()) == len(lab.hosts), 60, "every controller registered")

    # --- reading what happened

    def nodes(self) -> list[str]:
        """The nodes of the scheduler roots running now (by the observer's last sample)."""
        assert self.lab is not None
        return [s.node for s in self.lab.observer.current()]

    def entries(self) -> list[LedgerEntry]:
        found = []
        for line in self.ledger.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                found.append(LedgerEntry(parts[0], int(parts[1]), parts[2], float(parts[3])))
        return found

    def wait_run_after(self, since: float, timeout: float, known: frozenset[str] = frozenset()) -> LedgerEntry:
        """The first ledger entry written after wall-clock time ``since`` for a run not in ``known`` (waits for it)."""
        got: list[LedgerEntry] = []

        def ran() -> bool:
            got[:] = [e for e in self.entries() if e.time > since and e.run_id not in known]
            return bool(got)

        wait_for(ran, timeout, f"a task run after the fault (ledger {self.ledger})", interval=0.2)
        return min(got, key=lambda e: e.time)

    def executed_twice(self) -> list[tuple[str, int]]:
        """(run_id, try) pairs the ledger holds more than once."""
        seen: dict[tuple[str, int], int] = {}
        for e in self.entries():
            seen[(e.run_id, e.try_number)] = seen.get((e.run_id, e.try_number), 0) + 1
        return sorted(k for k, n in seen.items() if n > 1)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A query on the Airflow database, from the root namespace (unix socket)."""
        if isinstance(self.site, PostgreSQLSite):
            import psycopg2

            server = self.site.server
            conn = psycopg2.connect(host=str(server.base), port=server.port, user="postgres", dbname=self.database)
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, params)
                    return list(cur.fetchall())
            finally:
                conn.close()
        assert isinstance(self.site, MariaDBSite)
        import pymysql

        with (
            pymysql.connect(unix_socket=str(self.site.db.socket_path), user="root", database=self.database) as conn,
            conn.cursor() as cur,
        ):
            cur.execute(sql, params)
            return list(cur.fetchall())

    def running_scheduler_jobs(self) -> list[tuple[Any, ...]]:
        return self.query("SELECT id, hostname FROM job WHERE job_type = 'SchedulerJob' AND state = 'running'")

    def run_state(self, run_id: str) -> str | None:
        """The state of the ledger DAG's run ``run_id`` in Airflow's ``dag_run`` table."""
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = 'sfc_ledger' AND run_id = %s", (run_id,))
        return str(rows[0][0]) if rows else None

    def infrastructure(self, host: Host) -> set[int]:
        """Pids of the host that are not its scheduler's: PID 1, sshd and sessions, the controller, the services."""
        procs = host.processes()
        children: dict[int, list[int]] = {}
        names: dict[int, str] = {}
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                children.setdefault(proc.ppid(), []).append(proc.pid)
                names[proc.pid] = proc.name()
        roots = {host.init_pid} if host.init_pid else set()
        if host.controller_pid:
            roots.add(host.controller_pid)
        roots |= {s.pid for s in self.services if s.host is host}
        roots |= {pid for pid, name in names.items() if name == "sshd"}
        out: set[int] = set()
        level = [r for r in roots if r is not None]
        out.update(level)
        # Not below PID 1 as a whole: orphans (the scheduler's leash) are its children.
        below = [p for r in level if r != host.init_pid for p in children.get(r, [])]
        while below:
            out.update(below)
            below = [c for p in below for c in children.get(p, [])]
        return out

    def scheduler_processes(self, host: Host) -> list[Proc]:
        """What runs on the host for its scheduler: the leash, the scheduler and every Airflow child."""
        infra = self.infrastructure(host)
        found = []
        for proc in host.processes():
            if proc.pid in infra:
                continue
            with contextlib.suppress(psutil.Error):
                found.append(Proc(proc.pid, proc.create_time(), " ".join(proc.cmdline())[:160]))
        return found

    def assert_gone(self, old: list[Proc], timeout: float, what: str) -> None:
        """Every process of ``old`` ends within ``timeout``; fails naming those left."""
        try:
            wait_for(lambda: not [p for p in old if p.alive()], timeout, what, interval=0.2)
        except AssertionError:
            left = [f"{p.pid} {p.argv}" for p in old if p.alive()]
            raise AssertionError(f"{what}: still running after {timeout:g}s: {left}") from None

    # --- faults

    def inject(self, kind: str) -> Fault:
        """One fault on the scheduler's node (see FAULTS); returns what recovery is checked against."""
        lab = self.lab
        assert lab is not None
        wait_for(lambda: len(self.nodes()) == 1, 30, "one scheduler before the fault")
        (seen,) = lab.observer.current()
        host = lab.host(seen.node)
        old = self.scheduler_processes(host)
        others = [h.name for h in lab.hosts if h is not host and h.alive]
        runs = frozenset(e.run_id for e in self.entries()) | frozenset(
            str(r[0]) for r in self.query("SELECT run_id FROM dag_run WHERE dag_id = 'sfc_ledger'")
        )
        at = time.time()
        if kind == "kill":
            os.kill(seen.pid, signal.SIGKILL)
        elif kind == "crash":
            host.crash()
        elif kind == "partition":
            lab.partition(host.name)
        elif kind == "switchover":
            target = others[0]
            result = lab.cli("switchover", "--to", target, "--wait", "0", host=target)
            assert result.returncode == 0, result.stdout + result.stderr
        elif kind == "restart":
            # A controller restart (as `systemctl restart`): SIGTERM, wait for it to exit, start it again.
            host.signal_controller(signal.SIGTERM)
            assert host.nsenter is not None
            host.nsenter.wait(timeout=60)
            host.restart_controller()
        else:
            raise ValueError(kind)
        return Fault(kind, host.name, at, seen.pid, old, runs)

    def recover(self, fault: Fault, bound: float) -> float:
        """Wait for the next task run after ``fault`` (within ``bound`` s) and check the old node is clean.

        Returns the seconds from the fault to that run's ledger entry.
        """
        lab = self.lab
        assert lab is not None
        entry = self.wait_run_after(fault.at, bound, fault.runs)
        wait_for(lambda: self.run_state(entry.run_id) == "success", 60, f"run {entry.run_id} to succeed", interval=0.5)
        self.assert_gone(fault.old, 60, f"{fault.node}'s Airflow processes after the {fault.kind}")
        host = lab.host(fault.node)
        now = self.nodes()
        if host.alive and now and fault.node not in now:
            # Moved away or fenced: nothing of a scheduler is left there.
            left = self.scheduler_processes(host)
            assert not left, f"{fault.node}: Airflow processes left after its scheduler moved away: {left}"
        return entry.time - fault.at

    def heal(self, fault: Fault) -> None:
        """Undo a partition (the host rejoins as a standby) or reboot a crashed host with its services."""
        lab = self.lab
        assert lab is not None
        host = lab.host(fault.node)
        if fault.kind == "partition":
            lab.heal(host.name)
        elif fault.kind == "crash":
            self.gone += [s for s in self.services if s.host is host]  # reaped at close
            self.services = [s for s in self.services if s.host is not host]
            host.reboot()
            self.start_services([host])
            host.restart_controller()
        wait_for(lambda: len(lab.store.controllers()) == len(lab.hosts), 60, f"{host.name}'s controller back")

    def check_end(self) -> None:
        """The run's invariants: never two scheduler roots, no task try executed twice, one running SchedulerJob."""
        lab = self.lab
        assert lab is not None
        assert lab.observer.max_seen <= 1, f"two Airflow schedulers at once: {lab.observer.doubled[:5]}"
        twice = self.executed_twice()
        assert not twice, f"task tries executed twice: {twice}"
        jobs: list[tuple[Any, ...]] = []

        def one_job() -> bool:
            jobs[:] = self.running_scheduler_jobs()
            return len(jobs) == 1

        try:
            wait_for(one_job, 60, "one running SchedulerJob", interval=1)
        except AssertionError:
            raise AssertionError(f"running SchedulerJobs: {jobs}") from None

    def report(self) -> str:
        parts = []
        for path in sorted(self.base.glob("*/*.log")):
            if path.name in ("api-server.log",):
                continue
            text = path.read_text(errors="replace").splitlines()[-25:]
            parts.append(f"--- {path.relative_to(self.base)} (last {len(text)} lines)\n" + "\n".join(text))
        parts.append("--- ledger\n" + self.ledger.read_text()[-2000:])
        return "\n".join(parts)

    def close(self, failed: bool = False, keep: bool = False) -> None:
        if self.lab is not None:
            if failed:
                with contextlib.suppress(Exception):
                    print(self.report())
                print(self.lab.report())
            self.lab.close(keep=keep)
        for service in self.services + self.gone:
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.nsenter.wait(timeout=10)
        with contextlib.suppress(Exception):
            if isinstance(self.site, PostgreSQLSite):
                self.site.server.drop_database(self.database)
            elif isinstance(self.site, MariaDBSite):
                self.site.db.drop_database(self.database)
        if not keep:
            shutil.rmtree(self.base, ignore_errors=True)
        self.net.keep_track(self.base, done=True)


@contextlib.contextmanager
def airflow_lab(
    net: Network,
    site: LabMetastore,
    flavor: Flavor,
    size: int = 3,
    style: str = "default",
    interval: float = 10.0,
    node_control: str = "self",
) -> Iterator[AirflowLab]:
    """An AirflowLab (migrated, not booted), torn down on exit; its logs printed if the block raised."""
    alab = AirflowLab(net, site, flavor, size=size, style=style, interval=interval, node_control=node_control)
    keep = os.environ.get("SFC_LAB_KEEP", "") == "1"
    try:
        alab.make_lab()
        alab.migrate()
        yield alab
    except BaseException:
        alab.close(failed=True, keep=keep)
        raise
    alab.close(keep=keep)


__all__ = ["METASTORE_IP", "AirflowLab", "Flavor", "airflow_lab", "flavors", "sh"]
