"""The daemon's plumbing: systemd notifications, the metrics endpoint, the loop and its hand-over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from scheduler_failover_controller import daemon
from scheduler_failover_controller.config import load_config
from scheduler_failover_controller.event_hook import EventHook
from scheduler_failover_controller.exceptions import ConfigError, MetastoreError
from scheduler_failover_controller.liveness import Liveness
from scheduler_failover_controller.probe_result import ProbeResult, SchedulerState
from tests.unit.fakes import make_config

ROOT = Path(__file__).resolve().parents[2]


def test_sd_notify_sends_to_the_notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert daemon.sd_notify("READY=1") is True
        assert server.recv(100) == b"READY=1"


def test_sd_notify_without_systemd_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert daemon.sd_notify("READY=1") is False


class _Store:
    def __init__(self, down_for: int = 0) -> None:
        self.closed = False
        self.down_for = down_for  # setup() fails this many times first
        self.setups = 0

    def setup(self) -> None:
        self.setups += 1
        if self.setups <= self.down_for:
            raise MetastoreError("fake store down")

    def describe(self) -> str:
        return "fake"

    def close(self) -> None:
        self.closed = True


class _NodeControl:
    """The cluster's node_control as a controller checks it: ``refused`` names a mismatch."""

    def __init__(self, refused: str | None = None) -> None:
        self.refused = refused

    def check(self) -> str | None:
        return self.refused


class _Controller:
    """Just what the loop and the metrics endpoint read."""

    def __init__(self, stop: threading.Event, cycles_before_stop: int, store: _Store | None = None) -> None:
        self.role, self.epoch, self.cycles, self.holder = "active", 7, 0, "n1:1:x"
        self.last_probes = {"n1": ProbeResult("n1", SchedulerState.RUNNING, (42,))}
        self.store = store or _Store()
        self.stop, self.limit = stop, cycles_before_stop
        self.shut = False
        self.stopping = threading.Event()
        self.renewals = 0
        self.cycle_hook: Callable[[int], None] = lambda _n: None
        self.duplicate = None
        self.node_control = _NodeControl()
        self.identity = types.SimpleNamespace(heartbeats=0)
        self.hooks = EventHook(make_config())

    def other_live_controller(self) -> None:
        return None

    def run_cycle(self) -> str:
        self.cycles += 1
        self.cycle_hook(self.cycles)
        if self.cycles >= self.limit:
            self.stop.set()
        return f"cycle {self.cycles}"

    def renew(self) -> bool:
        self.renewals += 1
        return False

    def shutdown(self) -> str:
        self.shut = True
        return "released"


def _config(tmp_path: Path, **keys: str) -> Any:
    cfg = tmp_path / "sfc.cfg"
    body = "".join(f"{k} = {v}\n" for k, v in {"poll_frequency": "0.1", "lease_ttl": "1", **keys}.items())
    cfg.write_text(f"[scheduler_failover]\nstate_dir = {tmp_path}\n{body}")
    return load_config(str(cfg), env={}, hostname=lambda: "n1")


def test_loop_runs_cycles_until_stopped_then_hands_over(tmp_path: Path) -> None:
    stop = threading.Event()
    controller = _Controller(stop, cycles_before_stop=5)
    assert daemon.run(_config(tmp_path), controller, stop) == 0  # type: ignore[arg-type]
    assert controller.cycles == 5 and controller.shut and controller.store.closed


def test_a_cluster_of_another_node_control_is_a_config_error_at_start_up(tmp_path: Path) -> None:
    stop = threading.Event()
    controller = _Controller(stop, cycles_before_stop=5)
    controller.node_control = _NodeControl("refusing to act: node_control is ssh here but self for the cluster")
    with pytest.raises(ConfigError, match="node_control: refusing to act: node_control is ssh here but self"):
        daemon.run(_config(tmp_path), controller, stop)  # type: ignore[arg-type]
    assert controller.cycles == 0 and controller.shut


def test_a_store_down_at_start_up_is_retried_without_exiting(tmp_path: Path) -> None:
    stop = threading.Event()
    store = _Store(down_for=3)
    controller = _Controller(stop, cycles_before_stop=6, store=store)
    assert daemon.run(_config(tmp_path), controller, stop) == 0  # type: ignore[arg-type]
    # three failed setups, each with a cycle (which acts on nothing but the self-fence), then normal cycles
    assert store.setups == 4 and controller.cycles == 6 and controller.shut


def test_a_store_down_right_after_setup_is_retried_without_exiting(tmp_path: Path) -> None:
    """Found by the chaos soak: setup passed, the metastore restarted, and the identity check's
    read failed; the controller exited (exit 1) instead of trying again."""
    stop = threading.Event()
    controller = _Controller(stop, cycles_before_stop=4)
    looks = []

    def other_live_controller() -> None:
        looks.append(1)
        if len(looks) <= 2:
            raise MetastoreError("the database system is shutting down")

    controller.other_live_controller = other_live_controller  # type: ignore[method-assign]
    assert daemon.run(_config(tmp_path), controller, stop) == 0  # type: ignore[arg-type]
    assert len(looks) == 3 and controller.store.setups == 3 and controller.cycles == 4 and controller.shut


def test_renewals_run_while_a_cycle_is_busy(tmp_path: Path) -> None:
    """A long cycle (a 60 s start, a slow probe) never delays a renewal: they have their own thread."""
    stop = threading.Event()
    controller = _Controller(stop, cycles_before_stop=2)
    seen: list[int] = []

    def slow(n: int) -> None:
        if n == 1:
            before = controller.renewals
            time.sleep(1.0)  # renew_interval is lease_ttl / 4 = 0.25 s here
            seen.append(controller.renewals - before)

    controller.cycle_hook = slow
    assert daemon.run(_config(tmp_path, poll_frequency="1.5"), controller, stop) == 0  # type: ignore[arg-type]
    assert seen and seen[0] >= 2, seen


def test_sighup_and_sigusr_do_no_harm_and_sigterm_stops(tmp_path: Path) -> None:
    stop = threading.Event()
    controller = _Controller(stop, cycles_before_stop=10**9)

    def signals(n: int) -> None:
        if n == 1:
            for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
                os.kill(os.getpid(), sig)
        if n == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    controller.cycle_hook = signals
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM)}
    assert daemon.run(_config(tmp_path), controller, stop) == 0  # type: ignore[arg-type]
    assert controller.cycles == 3 and controller.shut and controller.stopping.is_set()
    assert {sig: signal.getsignal(sig) for sig in before} == before  # handlers restored


def test_metrics_endpoint_serves_prometheus_text(tmp_path: Path) -> None:
    controller = _Controller(threading.Event(), cycles_before_stop=10**9)
    config = _config(tmp_path, http_port="1")
    server = daemon._serve_http(controller, replace(config, http_port=0), Liveness(config))  # type: ignore[arg-type]
    server.observe_cycle(0.25)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert "sfc_active 1" in body and "sfc_epoch 7" in body
    assert 'sfc_scheduler_running{node="n1",service="scheduler"} 1' in body
    # prometheus_client's exposition: HELP lines, cycle durations, the process's own metrics.
    assert "# HELP sfc_cycles_total" in body and "# TYPE sfc_cycles_total counter" in body
    assert "sfc_last_cycle_seconds 0.25" in body and "sfc_cycle_duration_seconds_count 1.0" in body
    assert "process_resident_memory_bytes" in body


def test_http_port_in_use_is_a_config_error(tmp_path: Path) -> None:
    controller = _Controller(threading.Event(), cycles_before_stop=10**9)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _config(tmp_path, metrics_port=str(port))  # the old name sets http_port
        with pytest.raises(ConfigError, match=rf"sfc.cfg: http_port: cannot listen on 127.0.0.1:{port}: "):
            daemon._serve_http(controller, config, Liveness(config))  # type: ignore[arg-type]


def test_the_daemon_imports_prometheus_client_only_for_metrics() -> None:
    code = "import sys, scheduler_failover_controller.cli, scheduler_failover_controller.daemon;"
    code += "assert 'prometheus_client' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_logging_goes_to_stderr_and_a_rotating_file(tmp_path: Path) -> None:
    import logging
    import logging.handlers

    config = _config(tmp_path, logging_dir=str(tmp_path / "logs"), logs_rotate_when="H", logs_rotate_backup_count="3")
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        daemon.setup_logging(config)
        logging.getLogger("scheduler_failover_controller.test").info("hello %s", "file")
        rotating = [h for h in root.handlers if isinstance(h, logging.handlers.TimedRotatingFileHandler)]
        assert len(rotating) == 1 and rotating[0].backupCount == 3 and rotating[0].when == "H"
        rotating[0].flush()
        assert "hello file" in (tmp_path / "logs" / "scheduler_failover_controller.log").read_text()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            if handler not in saved[0]:
                handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
