"""End to end: the controller keeps a REAL ``airflow scheduler`` alive on SQLite.

Needs a virtualenv with apache-airflow and this project (``scripts/test.sh`` builds
``.venv-airflow``; ``SFC_AIRFLOW_VENV`` points elsewhere). In CI a missing one is a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from scheduler_failover_controller.config import load_config
from scheduler_failover_controller.http_client import check_health
from scheduler_failover_controller.nodes.local import LocalNodeRunner
from tests.conftest import missing
from tests.support.observer import Observer
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("SFC_AIRFLOW_VENV", ROOT / ".venv-airflow"))


@pytest.fixture
def airflow_home(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    if not (VENV / "bin" / "airflow").exists() or not (VENV / "bin" / "sfc").exists():
        missing(f"an Airflow virtualenv at {VENV} (scripts/test.sh builds it)")
    home = tmp_path / "airflow"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.pop("SCHEDULER_FAILOVER_CONTROLLER_CONFIG", None)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PATH": f"{VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        }
    )
    migrate = subprocess.run(
        [str(VENV / "bin" / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
    yield home, env


def test_controller_keeps_one_real_airflow_scheduler_alive(airflow_home: tuple[Path, dict[str, str]]) -> None:
    home, env = airflow_home
    pid_file = home / "scheduler.pid"  # a unique argument, so only this test's scheduler matches
    from tests.support.ports import free_port

    health_port = free_port()  # Airflow's own scheduler health check server, watched by the controller
    env = {
        **env,
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(health_port),
    }
    match = f"airflow scheduler --pid {pid_file}"
    config = home / "sfc.cfg"
    config.write_text(
        "[scheduler_failover]\n"
        "scheduler_nodes_in_cluster = e2e\ncurrent_host = e2e\n"
        f"state_dir = {home / 'sfc'}\n"
        "poll_frequency = 1\nlease_ttl = 8\nmetastore_timeout = 1\n"
        f"scheduler_health_url = http://127.0.0.1:{health_port}/health\n"
        f"scheduler_process_match = {match}\n"
        f"airflow_scheduler_start_command = exec airflow scheduler --pid {pid_file}\n"
        "scheduler_start_timeout = 60\nscheduler_stop_timeout = 4\n"
    )
    log = (home / "controller.log").open("ab")
    controller = subprocess.Popen(
        [str(VENV / "bin" / "sfc"), "--config", str(config), "start"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    observer = Observer(match, named=False)
    observer.start()
    try:
        wait_for(lambda: len(observer.pids()) == 1, 90, "Airflow's scheduler to be started")
        (first,) = observer.pids()
        # Let it really run, health check included: it must still be the same, healthy process.
        wait_for(lambda: check_health(f"http://127.0.0.1:{health_port}/health", 2) is None, 60, "Airflow healthy")
        time.sleep(6)
        assert observer.pids() == (first,), (home / "controller.log").read_text()[-3000:]
        assert "health check" not in (home / "controller.log").read_text()
        assert psutil.Process(first).is_running()

        os.kill(first, signal.SIGKILL)
        wait_for(lambda: len(observer.pids()) == 1 and observer.pids() != (first,), 90, "a new Airflow scheduler")
        wait_for(lambda: "restarted it in place" in (home / "controller.log").read_text(), 60, "the restart logged")

        controller.send_signal(signal.SIGTERM)
        assert controller.wait(timeout=60) == 0
        wait_for(lambda: observer.pids() == (), 30, "the scheduler to be stopped with its controller")
        text = (home / "controller.log").read_text()
        assert "stopped the local scheduler" in text and "released the leadership lease" in text
    finally:
        observer.stop()
        if controller.poll() is None:
            controller.kill()
            controller.wait()
        # Whatever is left, Airflow's orphaned workers included (found by the session we started).
        LocalNodeRunner("e2e", load_config(str(config), env=env)).stop(grace=0)
    assert observer.max_seen <= 1, f"two Airflow schedulers at once: {observer.history}"
