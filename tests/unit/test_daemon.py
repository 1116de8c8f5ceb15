"""The daemon's plumbing: systemd notifications, the metrics endpoint, the loop and its hand-over."""

from __future__ import annotations

import socket
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from scheduler_failover_controller import daemon
from scheduler_failover_controller.config import load_config
from scheduler_failover_controller.probe import ProbeResult, SchedulerState


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
    def __init__(self) -> None:
        self.closed = False

    def describe(self) -> str:
        return "fake"

    def close(self) -> None:
        self.closed = True


class _Controller:
    """Just what the loop and the metrics endpoint read."""

    def __init__(self, stop: threading.Event, cycles_before_stop: int) -> None:
        self.role, self.epoch, self.cycles, self.holder = "active", 7, 0, "n1:1:x"
        self.last_probes = {"n1": ProbeResult("n1", SchedulerState.RUNNING, (42,))}
        self.store = _Store()
        self.stop, self.limit = stop, cycles_before_stop
        self.shut = False

    def run_cycle(self) -> str:
        self.cycles += 1
        if self.cycles >= self.limit:
            self.stop.set()
        return f"cycle {self.cycles}"

    def shutdown(self) -> str:
        self.shut = True
        return "released"


def _config(tmp_path: Path, **keys: str) -> Any:
    cfg = tmp_path / "sfc.cfg"
    body = "".join(f"{k} = {v}\n" for k, v in {"poll_frequency": "0.01", "lease_ttl": "1", **keys}.items())
    cfg.write_text(f"[scheduler_failover]\nstate_dir = {tmp_path}\n{body}")
    return load_config(str(cfg), env={}, hostname=lambda: "n1")


def test_loop_runs_cycles_until_stopped_then_hands_over(tmp_path: Path) -> None:
    stop = threading.Event()
    controller = _Controller(stop, cycles_before_stop=5)
    assert daemon.run(_config(tmp_path), controller, stop) == 0  # type: ignore[arg-type]
    assert controller.cycles == 5 and controller.shut and controller.store.closed


def test_metrics_endpoint_serves_prometheus_text(tmp_path: Path) -> None:
    controller = _Controller(threading.Event(), cycles_before_stop=10**9)
    server = daemon._serve_metrics(controller, 0)  # type: ignore[arg-type]
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert "sfc_active 1" in body and "sfc_epoch 7" in body
    assert 'sfc_scheduler_running{node="n1"} 1' in body


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
