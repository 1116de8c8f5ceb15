"""HTTP API latency under a flood of idle connections (run by hand, as root; not in CI).

    .venv/bin/python benchmarks/http_latency.py [--requests 200] [--idle 1000] [--nofile 128] [--restarts 5]

One real controller (embedded SQLite, poll 0.5 s, lease 3 s, the stand-in scheduler) with its HTTP
API on 127.0.0.1 and an open-file limit of ``--nofile``. Measures, each request on a new
connection (connect, send, read to the end):

  /health, /status   latency with no other client, then while ``nobody`` holds ``--idle`` idle
                     connections and reopens each one the server closes
  restart            scheduler SIGKILL -> a new scheduler, without and under that flood
                     (``--restarts`` trials each)

Prints median, 95th percentile and max per measure.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.process.harness import Cluster  # noqa: E402
from tests.process.test_http_api import _started, curl  # noqa: E402
from tests.support.idle_flood import idle_flood  # noqa: E402
from tests.support.ports import free_ports  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402


def ask(port: int, path: str, timeout: float = 30.0) -> float:
    """Seconds for one GET of ``path`` on a new connection, to the end of the answer."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    took = time.monotonic() - began
    if not data.startswith(b"HTTP/1.1 200 "):
        raise AssertionError(f"{path}: {data[:60]!r}")
    return took


def series(port: int, path: str, count: int) -> list[float]:
    return [ask(port, path) for _ in range(count)]


def established(port: int) -> int:
    """Client connections to ``port`` that are established now (accepted or in the backlog)."""
    return sum(
        1
        for c in psutil.net_connections("tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def restart(cluster: Cluster) -> float:
    (first,) = [s.pid for s in cluster.observer.current()]
    os.kill(first, signal.SIGKILL)
    return wait_for(lambda: [s.pid for s in cluster.observer.current()] not in ([], [first]), 30, "a restart", 0.01)


def row(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    cells = [statistics.median(values), p95, max(values)]
    return f"| {name:<44} | " + " | ".join(f"{v * 1000:>8.1f}" for v in cells) + " |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--nofile", type=int, default=128)
    parser.add_argument("--restarts", type=int, default=5)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("http_latency.py: run as root (the flood is held by nobody)")
    with tempfile.TemporaryDirectory(prefix="sfc-http-bench-") as tmp:
        cluster = Cluster(Path(tmp), f"sqlite:///{Path(tmp) / 'metastore.db'}", 1)
        try:
            cluster.observer.start()
            (port,) = free_ports(1)
            _started(cluster, "n1", port, ("prlimit", f"--nofile={args.nofile}:{args.nofile}"))
            wait_for(lambda: len(cluster.observer.current()) == 1, 60, "the scheduler running")
            wait_for(lambda: curl(port, "/health")[0] == 200, 30, "/health answering")
            quiet = {path: series(port, path, args.requests) for path in ("/health", "/status")}
            calm = []
            for _ in range(args.restarts):
                calm.append(restart(cluster))
                wait_for(lambda: len(cluster.observer.current()) == 1, 30, "one scheduler")
                time.sleep(1.0)
            proc = psutil.Process(cluster.procs["n1"].pid)
            cpu0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
            time.sleep(5.0)
            quiet_cpu = (sum(proc.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0)
            with idle_flood(port, args.idle) as held:
                time.sleep(2.0)  # the flood at its steady churn
                open_now = established(port)
                cpu0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
                time.sleep(5.0)
                flood_cpu = (sum(proc.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0)
                flooded = {path: series(port, path, args.requests) for path in ("/health", "/status")}
                restarts = []
                for _ in range(args.restarts):
                    restarts.append(restart(cluster))
                    wait_for(lambda: len(cluster.observer.current()) == 1, 30, "one scheduler")
                    time.sleep(1.0)
        finally:
            cluster.close()
    print(
        f"{platform.node()}: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}"
    )
    print(
        f"{args.requests} requests each, {held} idle connections held ({open_now} established at the start), "
        f"controller nofile {args.nofile}"
    )
    print(f"controller CPU: {quiet_cpu:.1%} of a core alone, {flood_cpu:.1%} under the flood")
    print("| measure (ms)                                 |   median |      p95 |      max |")
    print("|----------------------------------------------|----------|----------|----------|")
    for path in ("/health", "/status"):
        print(row(f"{path}, no other client", quiet[path]))
        print(row(f"{path}, {held} idle connections", flooded[path]))
    print(row(f"scheduler SIGKILL -> new one ({len(calm)})", calm))
    print(row(f"scheduler SIGKILL -> new one, flooded ({len(restarts)})", restarts))


if __name__ == "__main__":
    main()
