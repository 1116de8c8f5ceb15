"""Bad input, with real processes (issue 10): configs that cannot run safely, files that are no
config, and a metastore row no valid write produces under running controllers.

Each command must fail with one line and a non-zero exit (never a traceback, never a hang); a
corrupt row must leave no scheduler running unguarded (the observer counts them) and the cluster
must recover by itself once the row is fixed.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.process.harness import SFC, Cluster
from tests.support.waiting import wait_for


def _run(
    cluster: Cluster, *args: str, config: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SFC, "--config", config or str(cluster.config), *args],
        env=cluster.env("n1"),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def _one_line(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    text = (done.stdout + done.stderr).strip()
    assert done.returncode == code, text
    assert len(text.splitlines()) == 1 and "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text


def test_unsafe_configs_and_non_files_are_one_line(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 2)
    text = cluster.config.read_text()
    url_line = next(line for line in text.splitlines() if line.startswith("metadata_service_sql_conn"))
    cluster.config.write_text(text.replace(url_line, "metadata_service_sql_conn = sqlite://"))
    _one_line(_run(cluster, "start"), 2, "metadata_service_sql_conn", "in-memory")
    poll_line = next(line for line in text.splitlines() if line.startswith("poll_frequency"))
    cluster.config.write_text(text.replace(poll_line, "poll_frequency = 0.000001"))  # 96 % CPU, once
    _one_line(_run(cluster, "start"), 2, "poll_frequency")
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    began = time.monotonic()
    _one_line(_run(cluster, "status", config=str(fifo)), 2, str(fifo))
    assert time.monotonic() - began < 20  # never waits for a writer
    _one_line(_run(cluster, "status", config="/dev/zero"), 2, "/dev/zero")


def test_a_corrupt_placement_under_running_controllers_guards_and_recovers(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    db = tmp_path / "metastore.db"
    cluster = make_cluster(f"sqlite:///{db}", 2)
    cluster.observer.start()
    for node in cluster.nodes:
        cluster.start(node)
    wait_for(lambda: len(cluster.observer.current()) == 1, 60, "one scheduler")
    # The epoch, not the expiry: a renewal's UPDATE of a text expiry (SQLite compares text above
    # any number) would write a valid one over it, and the row would be repaired, not corrupt.
    with sqlite3.connect(db) as conn:
        (epoch,) = conn.execute("SELECT epoch FROM sfc_placement").fetchone()
        conn.execute("UPDATE sfc_placement SET epoch = 'soon'")
    # Nobody can prove the placement any more: its scheduler is gone by its deadline.
    wait_for(lambda: not cluster.observer.current(), cluster.ttl + 5, "the scheduler to be stopped")
    done = _run(cluster, "status")
    _one_line(done, 1, "sfc_placement", "epoch")
    time.sleep(2 * cluster.ttl)
    assert not cluster.observer.current()  # nothing starts while the row is unreadable
    for node in cluster.nodes:
        assert "INTERNAL ERROR" not in cluster.log(node) and "Traceback" not in cluster.log(node), cluster.log(node)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE sfc_placement SET epoch = ?", (epoch,))
    wait_for(lambda: len(cluster.observer.current()) == 1, 60, "the scheduler back once the row is fixed")
    assert cluster.observer.max_seen == 1
