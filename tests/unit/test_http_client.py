"""The HTTP client's whole-exchange deadline and answer cap, against a loopback server thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from scheduler_failover_controller.http_client import check_health, request


@contextlib.contextmanager
def _serving(answer: bytes, pause: float) -> Iterator[str]:
    """One connection answered with ``answer``, ``pause`` seconds between its chunks of 16 bytes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(5)
    done = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError), srv.accept()[0] as conn:
            conn.recv(65536)
            for i in range(0, len(answer), 16):
                if done.is_set():
                    return
                conn.sendall(answer[i : i + 16])
                time.sleep(pause)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}/health"
    finally:
        done.set()
        srv.close()
        thread.join(5)


def test_a_dribbling_answer_ends_at_the_deadline() -> None:
    answer = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 2000
    with _serving(answer, pause=0.05) as url:
        started = time.monotonic()
        problem = check_health(url, timeout=0.5)
        took = time.monotonic() - started
    assert problem == "health check failed: timed out after 0.5s"
    assert took < 2.0


def test_an_answer_past_the_cap_is_refused() -> None:
    answer = b"HTTP/1.1 200 OK\r\n" + (b"X-Big: " + b"a" * 1000 + b"\r\n") * 70
    with _serving(answer, pause=0.0) as url:
        problem = check_health(url, timeout=5)
    assert problem == "health check failed: answer longer than 65536 bytes"


def test_a_whole_answer_in_time_is_its_status() -> None:
    with _serving(b"HTTP/1.0 204 No Content\r\nContent-Length: 0\r\n\r\n", pause=0.0) as url:
        assert request(url, timeout=5) == 204


def test_only_http_urls_are_fetched() -> None:
    with pytest.raises(ValueError, match="not an http"):
        request("file:///etc/passwd", timeout=1)
    assert check_health("file:///etc/passwd", 1) == "health check failed: not an http(s) URL: file:..."
