"""Real Airflow schedulers on the multi-host lab (tests/lab/test_airflow_lab.py, benchmarks/airflow.py).

On top of :class:`tests.lab.harness.Lab` (hosts, sshd, one controller per host, the metastore on
198.18.0.2), an :class:`AirflowLab` gives every host an Airflow home of its own and the same Airflow
(tests/lab/airflow_settings.py), runs the ledger DAG whose task runs are read back from the ledger
and Airflow's database (tests/lab/airflow_records.py), injects the faults of :data:`FAULTS` and
checks recovery by the scheduler processes it observes (tests/lab/airflow_processes.py).

The controllers start ``airflow scheduler --pid <base>/<node>/scheduler.pid`` (the match: the
``--pid`` path names the node), in one of the start styles of :data:`START_STYLES`.
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

from tests.lab import airflow_processes as processes
from tests.lab import airflow_records as records
from tests.lab.airflow_processes import AirflowObserver, Proc, Service
from tests.lab.airflow_records import LedgerEntry
from tests.lab.airflow_settings import API_PORT, DAG, START_STYLES, Flavor, airflow_config, flavors
from tests.lab.harness import Lab
from tests.lab.hosts import Host
from tests.lab.network import Network
from tests.lab.sites import LabMetastore
from tests.lab.tools import METASTORE_IP, sh
from tests.support.netns import in_netns
from tests.support.waiting import wait_for

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
    job_fencing: bool = False  # airflow_job_fencing on: the controllers write Airflow's job table
    task_seconds: float = 0.0  # each ledger task runs this long after its line (tasks in flight at a fault)
    orphan_defaults: bool = False  # Airflow's own orphan settings (30 s threshold, 300 s between looks)
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
        return records.create_database(self.site)

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
            f"SFC_LEDGER_TASK_SECONDS={self.task_seconds:g}",
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
        } | self.job_fencing_settings()

    def job_fencing_settings(self) -> dict[str, str]:
        if not self.job_fencing:
            return {}
        return {
            "airflow_job_fencing": "true",
            "scheduler_job_sql_conn": self.flavor.sql_url(self.site, self.database),
        }

    def make_lab(self) -> Lab:
        lab = Lab(self.net, self.site, size=self.size, config=self.controller_settings())
        self.lab = lab
        lab.config("h1")  # a config the controllers refuse fails here, not after a boot
        sql_url = self.flavor.sql_url(self.site, self.database)
        for host in lab.hosts:
            home = self.node_dir(host.name)
            (home / "logs").mkdir(parents=True)
            config = airflow_config(self.flavor, home, host, sql_url, self.dags, self.orphan_defaults)
            (home / "airflow.cfg").write_text(config)
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
        return records.read_ledger(self.ledger)

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
        return records.executed_twice(self.entries())

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A query on the Airflow database, from the root namespace (unix socket)."""
        return records.query(self.site, self.database, sql, params)

    def running_scheduler_jobs(self) -> list[tuple[Any, ...]]:
        return self.query("SELECT id, hostname FROM job WHERE job_type = 'SchedulerJob' AND state = 'running'")

    def run_state(self, run_id: str) -> str | None:
        """The state of the ledger DAG's run ``run_id`` in Airflow's ``dag_run`` table."""
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = 'sfc_ledger' AND run_id = %s", (run_id,))
        return str(rows[0][0]) if rows else None

    def scheduler_processes(self, host: Host) -> list[Proc]:
        """What runs on the host for its scheduler: the leash, the scheduler and every Airflow child."""
        return processes.scheduler_processes(host, self.services)

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
        processes.assert_gone(fault.old, 60, f"{fault.node}'s Airflow processes after the {fault.kind}")
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
            records.drop_database(self.site, self.database)
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
    job_fencing: bool = False,
    task_seconds: float = 0.0,
    orphan_defaults: bool = False,
) -> Iterator[AirflowLab]:
    """An AirflowLab (migrated, not booted), torn down on exit; its logs printed if the block raised."""
    alab = AirflowLab(net, site, flavor, size=size, style=style, interval=interval, node_control=node_control)
    alab.job_fencing, alab.task_seconds, alab.orphan_defaults = job_fencing, task_seconds, orphan_defaults
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
