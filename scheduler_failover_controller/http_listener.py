"""A small HTTP listener whose cost is bounded whatever its clients do.

Any local user can connect to a port on 127.0.0.1. A server that keeps a thread and a descriptor
for every connection until its client speaks (``http.server``'s threading servers) lets such a user
exhaust the controller's open files, and then its own writes (leash deadlines, the metastore) fail.
This one runs in a single thread over a selector and bounds everything a client can make it hold:

- at most ``max_connections`` connections; a new one evicts the oldest, so a client that opens
  many and never speaks cannot lock out a scraper (nor grow the descriptors held);
- ``timeout`` seconds for a whole exchange, reading the request and writing the answer;
- ``max_request`` bytes of request head; no body is read; one request per connection.

Routes map a path to a function returning ``(content type, body)``; GET and HEAD only.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 32
TIMEOUT = 5.0  # seconds for a whole exchange
MAX_REQUEST = 8192  # bytes of request line and headers
TICK = 0.5  # the loop looks at deadlines and the stop flag at least this often

Route = Callable[[], "tuple[str, bytes]"]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 431: "Too Large"}
_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


@dataclass
class _Exchange:
    """One connection: what it sent so far, what is left to write, and when it is cut."""

    sock: socket.socket
    deadline: float
    inbox: bytes = b""
    outbox: bytes = b""


class BoundedHTTPServer:
    """Serves ``routes`` on ``address`` (``serve_forever`` in a thread; ``shutdown`` from another)."""

    def __init__(
        self,
        address: tuple[str, int],
        routes: Mapping[str, Route],
        max_connections: int = MAX_CONNECTIONS,
        timeout: float = TIMEOUT,
        max_request: int = MAX_REQUEST,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.routes = dict(routes)
        self.max_connections = max_connections
        self.timeout = timeout
        self.max_request = max_request
        self.monotonic = monotonic
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart within TIME_WAIT
            self.socket.bind(address)
            self.socket.listen(64)
            self.socket.setblocking(False)
        except OSError:
            self.socket.close()
            raise
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self._open: dict[int, _Exchange] = {}  # by fd, oldest first
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._starved = False  # out of descriptors: said once, until accept works again

    def serve_forever(self) -> None:
        """Accept, read, answer and expire connections until :meth:`shutdown`."""
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ)
        self._stopped.clear()
        try:
            while not self._stop.is_set():
                for key, _events in selector.select(self._wait()):
                    if key.fileobj is self.socket:
                        self._accept(selector)
                    else:
                        self._step(selector, key.fd)
                self._expire(selector)
        finally:
            for fd in list(self._open):
                self._close(selector, fd)
            selector.close()
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` (within one tick) and close the listening socket."""
        self._stop.set()
        self._stopped.wait(timeout=5 * TICK)
        self.server_close()

    def server_close(self) -> None:
        self.socket.close()

    @property
    def connections(self) -> int:
        """How many client connections are open now."""
        return len(self._open)

    def _wait(self) -> float:
        if not self._open:
            return TICK
        first = min(exchange.deadline for exchange in self._open.values())
        return max(0.0, min(TICK, first - self.monotonic()))

    def _accept(self, selector: selectors.BaseSelector) -> None:
        for _ in range(self.max_connections):  # a burst, bounded per turn
            try:
                sock, _peer = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in _OUT_OF_FILES:
                    return  # e.g. ECONNABORTED: that client is gone, the listener is not
                # The waiting client stays in the kernel's backlog; free a descriptor for it.
                if not self._starved:
                    log.warning("metrics endpoint: out of file descriptors (%s); dropping idle connections", exc)
                    self._starved = True
                if self._open:
                    self._close(selector, next(iter(self._open)))
                else:
                    self._stop.wait(TICK)
                return
            self._starved = False
            while len(self._open) >= self.max_connections:
                self._close(selector, next(iter(self._open)))  # the oldest makes room
            sock.setblocking(False)
            self._open[sock.fileno()] = _Exchange(sock, self.monotonic() + self.timeout)
            selector.register(sock, selectors.EVENT_READ)

    def _step(self, selector: selectors.BaseSelector, fd: int) -> None:
        exchange = self._open.get(fd)
        if exchange is None:
            return
        try:
            if exchange.outbox:
                sent = exchange.sock.send(exchange.outbox)
                exchange.outbox = exchange.outbox[sent:]
                if not exchange.outbox:
                    self._close(selector, fd)
                return
            chunk = exchange.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(selector, fd)
            return
        if not chunk:
            self._close(selector, fd)
            return
        exchange.inbox += chunk
        end = exchange.inbox.find(b"\r\n\r\n")
        if end < 0:
            end = exchange.inbox.find(b"\n\n")
        if end < 0 and len(exchange.inbox) <= self.max_request:
            return
        head = exchange.inbox[: max(end, 0)] if end >= 0 and end <= self.max_request else None
        exchange.outbox = self._answer(head)
        exchange.inbox = b""
        selector.modify(exchange.sock, selectors.EVENT_WRITE)

    def _answer(self, head: bytes | None) -> bytes:
        """The whole response to a request head (None: too large)."""
        if head is None:
            return _response(431, "text/plain; charset=utf-8", b"request too large\n")
        words = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
        if len(words) != 3 or not words[2].startswith(b"HTTP/"):
            return _response(400, "text/plain; charset=utf-8", b"bad request\n")
        method, target = words[0], words[1].split(b"?", 1)[0].decode("latin-1")
        if method not in (b"GET", b"HEAD"):
            return _response(405, "text/plain; charset=utf-8", b"GET or HEAD only\n", allow=True)
        route = self.routes.get(target)
        if route is None:
            return _response(404, "text/plain; charset=utf-8", b"not found\n")
        try:
            content_type, body = route()
        except Exception:
            log.exception("metrics endpoint: %s failed", target)
            return _response(500, "text/plain; charset=utf-8", b"internal error\n")
        return _response(200, content_type, body, head_only=method == b"HEAD")

    def _expire(self, selector: selectors.BaseSelector) -> None:
        now = self.monotonic()
        for fd in [fd for fd, exchange in self._open.items() if exchange.deadline <= now]:
            self._close(selector, fd)

    def _close(self, selector: selectors.BaseSelector, fd: int) -> None:
        exchange = self._open.pop(fd, None)
        if exchange is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(exchange.sock)
        exchange.sock.close()


def _response(status: int, content_type: str, body: bytes, head_only: bool = False, allow: bool = False) -> bytes:
    reason = _REASONS.get(status, "Internal Server Error")
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if allow:
        lines.append("Allow: GET, HEAD")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)
