"""The bounded listener: capped connections, a deadline per exchange, a bounded request."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from scheduler_failover_controller.http_listener import BoundedHTTPServer
from tests.support.waiting import wait_for


@pytest.fixture
def server() -> Iterator[BoundedHTTPServer]:
    srv = BoundedHTTPServer(
        ("127.0.0.1", 0), {"/metrics": lambda: ("text/plain", b"hello\n")}, max_connections=4, timeout=0.5
    )
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    thread.join(timeout=5)
    assert not thread.is_alive()


def _ask(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk


def test_answers_get_and_head_and_refuses_the_rest(server: BoundedHTTPServer) -> None:
    port = server.server_address[1]
    assert _ask(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").endswith(b"\r\n\r\nhello\n")
    head = _ask(port, b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 6" in head and head.endswith(b"\r\n\r\n")
    assert _ask(port, b"GET /other HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    assert _ask(port, b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert _ask(port, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert _ask(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10000).startswith(b"HTTP/1.1 431 ")


def test_idle_connections_are_capped_and_cut(server: BoundedHTTPServer) -> None:
    port = server.server_address[1]
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(10)]
    try:
        wait_for(lambda: server.connections == 4, 5, "the cap of 4 connections")
        # A new client is served while the idle ones hold every place: the oldest makes room.
        assert _ask(port, b"GET /metrics HTTP/1.1\r\n\r\n").endswith(b"hello\n")
        assert server.connections <= 4
        wait_for(lambda: server.connections == 0, 5, "idle connections cut at their deadline")
        for sock in idle:  # each was closed by the server
            assert sock.recv(10) == b""
    finally:
        for sock in idle:
            sock.close()
