"""Real controller processes on one host, a stand-in scheduler, and an observer that counts them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psutil

from scheduler_failover_controller.matching import find_schedulers
from tests.support.observer import Observer

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "support" / "fake_scheduler.py"
SFC = [sys.executable, "-m", "scheduler_failover_controller"]
ZK_PREFIX = "zookeeper:"  # Cluster(url="zookeeper:HOSTS/chroot") runs on ZooKeeper instead of SQL


class Cluster:
    """N controllers (n1..nN) as real processes sharing one metastore, all nodes on this host."""

    def __init__(self, tmp: Path, url: str, size: int, poll: float = 0.5, ttl: float = 3.0) -> None:
        """``url``: a SQLAlchemy URL, or ``zookeeper:`` followed by a ZooKeeper connection string."""
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.token = uuid.uuid4().hex[:10]
        self.nodes = [f"n{i + 1}" for i in range(size)]
        self.config = tmp / "sfc.cfg"
        self.poll, self.ttl = poll, ttl
        self.config.write_text(
            "[scheduler_failover]\n"
            f"scheduler_nodes_in_cluster = {','.join(self.nodes)}\n"
            f"local_nodes = {','.join(self.nodes)}\n"
            + (
                f"metadata_service_type = zookeeper\nmetadata_service_zookeeper_nodes = {url[len(ZK_PREFIX) :]}\n"
                if url.startswith(ZK_PREFIX)
                else f"metadata_service_sql_conn = {url}\n"
            )
            + f"state_dir = {tmp / 'state'}\n"
            f"poll_frequency = {poll}\n"
            f"lease_ttl = {ttl}\n"
            f"scheduler_process_match = fake_scheduler.py --cluster {self.token} --node {{node}}\n"
            f"airflow_scheduler_start_command = exec {sys.executable} {FAKE} --cluster {self.token} --node {{node}}\n"
            "scheduler_start_timeout = 5\n"
            "logging_level = DEBUG\n"
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.observer = Observer(f"fake_scheduler.py --cluster {self.token}")
        self.strays: list[subprocess.Popen[bytes]] = []

    def env(self, node: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.pop("SCHEDULER_FAILOVER_CONTROLLER_CONFIG", None)
        env["AIRFLOW__SCHEDULER_FAILOVER__CURRENT_HOST"] = node
        env["PYTHONPATH"] = str(ROOT)
        return env

    def start(self, node: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{node}.log").open("ab")
        proc = subprocess.Popen(
            [*SFC, "--config", str(self.config), "start"], env=self.env(node), stdout=log, stderr=subprocess.STDOUT
        )
        self.procs[node] = proc
        return proc

    def cli(self, *args: str, node: str = "n1") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SFC, "--config", str(self.config), *args],
            env=self.env(node),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def status(self) -> dict[str, Any]:
        out = self.cli("status", "--json")
        return json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}

    def active(self) -> str | None:
        value = self.status().get("active_controller")
        return value if isinstance(value, str) else None

    def log(self, node: str) -> str:
        path = self.tmp / f"{node}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def signal(self, node: str, sig: int) -> None:
        os.kill(self.procs[node].pid, sig)

    def start_stray(self, node: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, str(FAKE), "--cluster", self.token, "--node", node, "--stray"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.strays.append(proc)
        return proc

    def close(self) -> None:
        """Stop every process this cluster started, by pid, also after a failure."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.observer.stop()
        for proc in self.strays:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        # Schedulers the controllers started (the match names this cluster's unique token).
        for root in find_schedulers(self.observer.match):
            with contextlib.suppress(psutil.Error):
                for child in root.children(recursive=True):
                    child.kill()
                root.kill()
