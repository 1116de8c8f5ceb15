"""End to end (issue 9, item 3): a hung REAL Airflow scheduler, 2.x and 3.x, is restarted.

The controller runs from this checkout inside each Airflow virtualenv (its SQLAlchemy: 1.4 in
Airflow 2's, 2.x in Airflow 3's), configured in ``$AIRFLOW_HOME/airflow.cfg`` beside Airflow's own
sections, so it reads the scheduler's ``job`` row through Airflow's ``[database] sql_alchemy_conn``
(SQLite here). Two hangs:

* ``sigstop``: SIGSTOP of the scheduler. The process table shows it stopped, so the process probe
  already sees it; the job heartbeat would too.
* ``hung``: the scheduler's main thread stuck in a loop (a signal handler from
  ``airflow_local_settings.py`` that never returns) while the process sleeps as usual: only the
  heartbeat in Airflow's ``job`` table shows it. This is what ``scheduler_job_heartbeat_timeout``
  is for.

Either way the controller must replace it: a new pid, whose own job row heartbeats again. The
figures (seconds from the fault to the old scheduler gone, the new one up, its heartbeat fresh) are
printed (``pytest -s``). Missing virtualenvs skip (``scripts/setup.sh`` builds them); in CI they fail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from scheduler_failover_controller.airflow_job import HostMatch, SchedulerJob, SchedulerJobReader
from scheduler_failover_controller.config import load_config
from scheduler_failover_controller.exceptions import MetastoreError
from scheduler_failover_controller.nodes.local import LocalNodeRunner
from tests.conftest import missing
from tests.support.observer import Observer
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
VENVS = {
    "2": Path(os.environ.get("SFC_AIRFLOW2_VENV", ROOT / ".venv-airflow2")),
    "3": Path(os.environ.get("SFC_AIRFLOW_VENV", ROOT / ".venv-airflow")),
}
HANG_SIGNAL = signal.SIGRTMIN + 2  # no Airflow process uses it
HEARTBEAT_SEC = 1  # Airflow's scheduler_heartbeat_sec in these tests
TIMEOUT = 10  # scheduler_job_heartbeat_timeout
FRESH = 5.0  # a heartbeat younger than this (seconds) counts as fresh here

# Installed in every Airflow process of the test's home: a handler that never returns. Sent to the
# scheduler, it stops its scheduling loop (and so its heartbeat) in the main thread; the process
# stays in the sleeping state, as a scheduler stuck on a lock or a hung mount would.
LOCAL_SETTINGS = f"""\
import signal
import time


def _hang(signum, frame):
    while True:
        time.sleep(3600)


signal.signal({int(HANG_SIGNAL)}, _hang)
"""


def _stage(tmp_path: Path, major: str) -> tuple[Path, Path, dict[str, str], str]:
    """An Airflow home with a migrated SQLite database and our section in its airflow.cfg.

    Returns (venv, home, env, the host name Airflow records for this machine).
    """
    venv = VENVS[major]
    if not (venv / "bin" / "airflow").exists():
        missing(f"an Airflow {major} virtualenv at {venv} (scripts/setup.sh builds it)")
    home = tmp_path / "airflow"
    (home / "config").mkdir(parents=True)
    (home / "config" / "airflow_local_settings.py").write_text(LOCAL_SETTINGS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.pop("SCHEDULER_FAILOVER_CONTROLLER_CONFIG", None)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "2",  # Airflow 3's LocalExecutor starts that many workers
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": str(HEARTBEAT_SEC),
            "PATH": f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
            "PYTHONPATH": str(ROOT),  # the controller from this checkout, not the venv's install
        }
    )
    airflow = str(venv / "bin" / "airflow")
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
    named = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "from airflow.utils.net import get_hostname; print(get_hostname())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert named.returncode == 0, named.stderr[-2000:]
    hostname = named.stdout.strip().splitlines()[-1]
    return venv, home, env, hostname


def _fresh_job(reader: SchedulerJobReader, host: HostMatch, newer_than: int = 0) -> SchedulerJob | None:
    """The scheduler's row when it is running, newer than job ``newer_than`` and freshly stamped."""
    try:
        job = reader.newest(host)
    except MetastoreError:  # e.g. locked for a moment by Airflow itself
        return None
    if job is None or job.state != "running" or job.id <= newer_than or job.age > FRESH:
        return None
    return job


@pytest.mark.parametrize("fault", ["sigstop", "hung"])
@pytest.mark.parametrize("major", ["2", "3"])
def test_a_hung_real_scheduler_is_restarted(tmp_path: Path, major: str, fault: str) -> None:
    venv, home, env, hostname = _stage(tmp_path, major)
    pid_file = home / "scheduler.pid"  # a unique argument: only this test's scheduler matches
    match = f"airflow scheduler --pid {pid_file}"
    cfg = home / "airflow.cfg"
    with cfg.open("a") as out:  # as `sfc init` appends it
        out.write(
            "\n[scheduler_failover]\n"
            "scheduler_nodes_in_cluster = e2e\ncurrent_host = e2e\n"
            f"state_dir = {home / 'sfc'}\n"
            "poll_frequency = 1\nlease_ttl = 8\nmetastore_timeout = 1\n"
            f"scheduler_process_match = {match}\n"
            f"airflow_scheduler_start_command = exec airflow scheduler --pid {pid_file}\n"
            "scheduler_start_timeout = 60\nscheduler_stop_timeout = 4\n"
            f"scheduler_job_heartbeat_timeout = {TIMEOUT}\nscheduler_health_failures = 2\n"
            f"scheduler_job_hostnames = e2e:{hostname}\n"
        )
    config = load_config(None, env=env)  # $AIRFLOW_HOME/airflow.cfg, as the controller reads it
    assert config.scheduler_job_sql_conn == f"sqlite:///{home / 'airflow.db'}"  # Airflow's [database] URL
    host = HostMatch(hostname, exact=True)
    reader = SchedulerJobReader(config.scheduler_job_sql_conn, 2.0)
    log_path = home / "controller.log"
    log = log_path.open("ab")
    controller = subprocess.Popen(
        [str(venv / "bin" / "python"), "-m", "scheduler_failover_controller", "start"],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    observer = Observer(match, named=False)
    observer.start()
    first = 0
    try:
        wait_for(lambda: len(observer.pids()) == 1, 90, "Airflow's scheduler to be started")
        (first,) = observer.pids()
        wait_for(lambda: _fresh_job(reader, host) is not None, 60, f"the scheduler's job row of host {hostname}")
        old = _fresh_job(reader, host)
        assert old is not None
        time.sleep(3)  # a few polls: the controller has seen it heartbeat too (its start grace is over)

        faulted = time.monotonic()
        if fault == "sigstop":
            os.kill(first, signal.SIGSTOP)
        else:
            os.kill(first, HANG_SIGNAL)
            time.sleep(2 * HEARTBEAT_SEC + 1)
            assert psutil.Process(first).status() in (psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING)
            assert "restarted it in place" not in log_path.read_text()  # the process table shows nothing wrong

        wait_for(lambda: not _alive(first), 90, "the hung scheduler to be stopped")
        gone = time.monotonic()
        wait_for(lambda: len(observer.pids()) == 1 and observer.pids() != (first,), 90, "a new scheduler")
        up = time.monotonic()
        wait_for(lambda: _fresh_job(reader, host, newer_than=old.id) is not None, 90, "the new scheduler's heartbeat")
        fresh = time.monotonic()
        # The sentence comes once the controller's own look finds the new scheduler running.
        wait_for(lambda: "restarted it in place" in log_path.read_text(), 30, "the restart's sentence")
        text = log_path.read_text()
        restart = [line for line in text.splitlines() if "restarted it in place" in line]
        assert len(restart) == 1, text[-3000:]
        if fault == "sigstop":
            assert f"pid {first} is stopped" in restart[0], restart[0]
        else:
            assert f"Airflow's scheduler job {old.id} on {hostname} last heartbeat" in restart[0], restart[0]
            assert "(scheduler_job_heartbeat_timeout 10s) 2 times in a row" in restart[0], restart[0]
        print(
            f"\nAirflow {major}, {fault}: old scheduler gone after {gone - faulted:.1f}s, new one up after "
            f"{up - faulted:.1f}s, its heartbeat fresh after {fresh - faulted:.1f}s"
        )

        controller.send_signal(signal.SIGTERM)
        assert controller.wait(timeout=60) == 0
        wait_for(lambda: observer.pids() == (), 30, "the scheduler to be stopped with its controller")
    finally:
        observer.stop()
        reader.close()
        if first:
            with contextlib.suppress(ProcessLookupError):
                os.kill(first, signal.SIGCONT)  # a stopped process cannot act on its SIGTERM
        if controller.poll() is None:
            controller.kill()
            controller.wait()
        log.close()
        # Whatever is left: schedulers and what their sessions started (Airflow's workers).
        LocalNodeRunner("e2e", load_config(None, env=env)).stop(grace=0)
    assert observer.max_seen <= 1, f"two Airflow schedulers at once: {observer.history}"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
