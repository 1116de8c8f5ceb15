"""The bounded listener: capped connections, a deadline per exchange, a bounded request."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from scheduler_failover_controller.http_listener import TEXT, BoundedHTTPServer, Deferred, Reply, Request
from tests.support.http_ask import ask as _ask
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


@pytest.fixture
def slow() -> Iterator[tuple[BoundedHTTPServer, threading.Event]]:
    """``/slow`` waits on the worker until the event is set; ``/fast`` answers at once."""
    release = threading.Event()

    def work() -> Reply:
        release.wait(10)
        return Reply(200, TEXT, b"slow\n")

    def handle(request: Request) -> Reply | Deferred:
        if request.path == "/slow":
            return Deferred(work)
        return Reply(503 if request.path == "/down" else 200, TEXT, b"fast\n")

    srv = BoundedHTTPServer(("127.0.0.1", 0), handler=handle, max_connections=6, timeout=2, max_pending=2)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, release
    release.set()
    srv.shutdown()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_deferred_work_never_holds_up_other_requests(slow: tuple[BoundedHTTPServer, threading.Event]) -> None:
    server, release = slow
    port = server.server_address[1]
    waiting = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    try:
        for count, sock in enumerate(waiting[:2], 1):
            sock.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
            wait_for(lambda count=count: server.pending == count, 5, f"{count} deferred")  # type: ignore[misc]
        waiting[2].sendall(b"GET /slow HTTP/1.1\r\n\r\n")
        # One on the worker, one queued (max_pending 2 counts both), the third refused at once.
        busy = waiting[2].recv(4096)
        assert busy.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in busy
        assert _ask(port, b"GET /fast HTTP/1.1\r\n\r\n").endswith(b"fast\n")  # while the worker is busy
        assert _ask(port, b"HEAD /down HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 503 Service Unavailable")
        release.set()
        for sock in waiting[:2]:
            data = b""
            while not data.endswith(b"slow\n"):
                chunk = sock.recv(4096)
                assert chunk, data
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 OK")
    finally:
        for sock in waiting:
            sock.close()


def test_the_cap_drops_idle_connections_before_those_waiting_for_an_answer(
    slow: tuple[BoundedHTTPServer, threading.Event],
) -> None:
    server, release = slow
    port = server.server_address[1]
    asking = socket.create_connection(("127.0.0.1", port), timeout=10)
    asking.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
    idle = []
    try:
        wait_for(lambda: server.connections == 1, 5, "the request taken in")
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(10)]
        wait_for(lambda: server.connections == 6, 5, "the cap of 6 connections")
        release.set()
        data = b""
        while not data.endswith(b"slow\n"):
            chunk = asking.recv(4096)
            assert chunk, "the waiting connection was dropped for an idle one"
            data += chunk
    finally:
        asking.close()
        for sock in idle:
            sock.close()


def test_a_request_queued_behind_a_flood_is_answered(server: BoundedHTTPServer) -> None:
    """Idle connections far past the cap wait in the kernel's queue; a request behind them is read
    as soon as it is accepted, so the cap drops the idle ones, not it."""
    port = server.server_address[1]
    flood = []
    try:
        for _ in range(200):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            flood.append(sock)
        for _ in range(10):  # each one queued behind what is left of the flood
            assert _ask(port, b"GET /metrics HTTP/1.1\r\n\r\n").endswith(b"\r\n\r\nhello\n")
        assert server.connections <= 4
    finally:
        for sock in flood:
            sock.close()
