"""A real ``sfc pause`` on a fresh SQLite path, under a lax umask, leaves the directories it
created 0700 and the database (and SQLite's -wal and -shm files beside it) 0600: the records are
this user's alone."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

ENTRY_POINT = "import os; os.umask(0o022); from scheduler_failover_controller.cli import run; run()"


def test_pause_creates_a_private_sqlite_metastore(tmp_path: Path) -> None:
    top = tmp_path / "fresh"
    db = top / "dir" / "x.db"
    config = tmp_path / "sfc.cfg"
    config.write_text(
        "[scheduler_failover]\n"
        "scheduler_nodes_in_cluster = node-a\n"
        "current_host = node-a\n"
        f"state_dir = {tmp_path / 'state'}\n"
        f"metadata_service_sql_conn = sqlite:///{db}\n"
        "scheduler_process_match = no_such_scheduler_5f1c\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", ENTRY_POINT, "--config", str(config), "pause"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    modes = {p.name: stat.S_IMODE(os.lstat(p).st_mode) for p in (top, top / "dir", db)}
    assert modes == {"fresh": 0o700, "dir": 0o700, "x.db": 0o600}
    for side in (db.with_name("x.db-wal"), db.with_name("x.db-shm")):
        if side.exists():
            assert stat.S_IMODE(side.stat().st_mode) == 0o600, side
