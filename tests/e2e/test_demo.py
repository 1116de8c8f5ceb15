"""End to end: ``bash scripts/run.sh``, the main job, runs a working single-host Airflow 3.

The script runs as a user would start it (without its set-up step: ``SFC_RUN_SETUP=0``; the
virtualenv is ``.venv-airflow`` or ``SFC_AIRFLOW_VENV``), on an Airflow home in a temp directory
and free loopback ports. The test waits for a successful run of the example DAG, SIGKILLs the
scheduler, waits for a successful run started after the kill, then sends SIGINT (Ctrl-C) and
checks that every process the script started is gone. The script runs as a child subreaper (set
before it is exec'd), so every process it starts stays in its tree, daemonized ones (the leash)
included, and is seen. Bounded: about 2 minutes, at most 4 (75 + 25 + 80 + 40 + 5 s of waits, 10 s
of clean-up); cleans up when it fails too.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.conftest import missing
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("SFC_AIRFLOW_VENV", ROOT / ".venv-airflow"))
DAG_ID = "sfc_heartbeat"

# Execs argv[1:] as a child subreaper (prctl PR_SET_CHILD_SUBREAPER, kept across execve).
SUBREAPER = (
    "import ctypes, os, sys\n"
    "if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0: sys.exit('prctl failed')\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)

Key = tuple[int, float]  # pid, create time: a process, not a reused pid


def _airflow_major() -> int:
    out = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('apache-airflow'))"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return int(out.stdout.split(".")[0]) if out.returncode == 0 and out.stdout[:1].isdigit() else 0


def _successful_runs(db: Path) -> dict[str, datetime.datetime]:
    """run_id -> start date (UTC) of the DAG's successful runs; {} while the database is not ready."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)) as conn:
            rows = conn.execute(
                "SELECT run_id, start_date FROM dag_run WHERE dag_id = ? AND state = 'success'", (DAG_ID,)
            ).fetchall()
    except sqlite3.Error:
        return {}
    return {run_id: datetime.datetime.fromisoformat(str(start)[:26]) for run_id, start in rows if start}


class Script:
    """scripts/run.sh as a subprocess, and every process it ever had in its tree."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.log_path = home.parent / "run.log"
        self.home = home
        self.seen: dict[Key, str] = {}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SUBREAPER, "bash", str(ROOT / "scripts" / "run.sh")],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the tests' own Ctrl-C is not the script's
            )
        self.started = time.monotonic()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def snapshot(self) -> list[psutil.Process]:
        """The script's live descendants, all of them remembered."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for child in children:
            with contextlib.suppress(psutil.Error):
                self.seen.setdefault((child.pid, child.create_time()), " ".join(child.cmdline())[:200])
        return children

    def schedulers(self) -> list[psutil.Process]:
        """The scheduler's root process(es): an `airflow scheduler` of this home whose parent is none."""
        found = {}
        for p in self.snapshot():
            with contextlib.suppress(psutil.Error):
                words = p.cmdline()
                if "scheduler" in words and str(self.home / "airflow-scheduler.pid") in words:
                    found[p.pid] = p
        return [p for p in found.values() if p.ppid() not in found]

    def wait_until(self, what: str, seconds: float, check: Callable[[], object]) -> float:
        """Polls ``check()`` every 0.5 s (snapshotting the tree) until true; the time it took."""
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            self.snapshot()
            assert self.proc.poll() is None, f"run.sh exited ({self.proc.returncode}):\n{self.log()[-4000:]}"
            if check():
                return time.monotonic() - start
            time.sleep(0.5)
        pytest.fail(f"not within {seconds:.0f}s: {what}\n{self.log()[-4000:]}")

    def alive(self) -> dict[Key, str]:
        """The processes ever seen that still run (a zombie counts as gone)."""
        left = {}
        for (pid, created), cmd in self.seen.items():
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                    left[(pid, created)] = cmd
        return left

    def kill_everything(self) -> None:
        """After a failure: the script, then whatever it left, by pid (identity checked)."""
        self.snapshot()
        if self.proc.poll() is None:
            self.proc.terminate()  # its trap stops what it started, in order
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.snapshot()
                self.proc.kill()
                self.proc.wait()
        for pid, created in self.alive():
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                if p.create_time() == created:
                    p.kill()


def test_run_sh_runs_dags_across_a_scheduler_kill_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    if not (VENV / "bin" / "airflow").exists() or not (VENV / "bin" / "sfc").exists():
        missing(f"an Airflow virtualenv at {VENV} (scripts/setup.sh builds it)")
    if _airflow_major() != 3:
        missing(f"Airflow 3 in {VENV} (scripts/run.sh runs Airflow 3)")
    home = tmp_path / "airflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.pop("SCHEDULER_FAILOVER_CONTROLLER_CONFIG", None)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "SFC_RUN_SETUP": "0",
            "SFC_AIRFLOW_VENV": str(VENV),
            "SFC_DEMO_API_PORT": str(free_port()),
            "SFC_DEMO_HEALTH_PORT": str(free_port()),
        }
    )
    db = home / "airflow.db"
    script = Script(home, env)
    try:
        script.wait_until(f"a successful run of {DAG_ID}", 75, lambda: _successful_runs(db))
        first = time.monotonic() - script.started
        out = script.log()
        assert f"dags list-runs {DAG_ID}" in out and "sfc status" in out, out[-3000:]
        assert f"http://127.0.0.1:{env['SFC_DEMO_API_PORT']}/" in out, out[-3000:]

        (scheduler,) = script.schedulers()
        old = {scheduler.pid, *(child.pid for child in scheduler.children(recursive=True))}  # its forks keep its name
        before = set(_successful_runs(db))
        killed_at = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        scheduler.kill()
        restart = script.wait_until("a new scheduler", 25, lambda: any(p.pid not in old for p in script.schedulers()))
        after = script.wait_until(
            f"a successful run of {DAG_ID} started after the scheduler was killed",
            80,
            lambda: any(run not in before and started > killed_at for run, started in _successful_runs(db).items()),
        )
        assert "restarted it in place" in script.log(), script.log()[-3000:]

        script.snapshot()
        assert script.alive(), "no process of the script was seen"
        script.proc.send_signal(signal.SIGINT)  # Ctrl-C
        stop_start = time.monotonic()
        assert script.proc.wait(timeout=40) == 0, script.log()[-3000:]
        stopped = time.monotonic() - stop_start
        deadline = time.monotonic() + 5  # a reparented straggler may take a moment to be reaped
        while script.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        left = script.alive()
        assert not left, f"left running after Ctrl-C: {left}\n{script.log()[-3000:]}"
        assert "released the leadership lease" in script.log()
        print(
            f"\nrun.sh start -> first successful run: {first:.1f}s; scheduler SIGKILL -> new scheduler: "
            f"{restart:.1f}s, -> next successful run: {restart + after:.1f}s; Ctrl-C -> all stopped: "
            f"{stopped:.1f}s; {len(script.seen)} processes seen"
        )
    finally:
        script.kill_everything()
