"""A small HTTP listener whose cost is bounded whatever its clients do.

Any local user can connect to a port on 127.0.0.1. A server that keeps a thread and a descriptor
for every connection until its client speaks (``http.server``'s threading servers) lets such a user
exhaust the controller's open files, and then its own writes (leash deadlines, the metastore) fail.
This one runs in a single thread over a selector and bounds everything a client can make it hold:

- at most ``max_connections`` connections; a new one evicts the oldest idle one, so a client that opens
  many and never speaks cannot lock out a scraper (nor grow the descriptors held);
- ``timeout`` seconds for a whole exchange, reading the request and writing the answer;
- ``max_request`` bytes of request head; no body is read; one request per connection.

A ``handler`` turns each GET or HEAD :class:`Request` into a :class:`Reply`, at once; or into a
:class:`Deferred`, whose work (a metastore read) runs on one worker thread while the loop goes on
answering others: at most ``max_pending`` wait for it, more are answered 503 at once.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 32
TIMEOUT = 5.0  # seconds for a whole exchange
MAX_REQUEST = 8192  # bytes of request line and headers
TICK = 0.5  # the loop looks at deadlines and the stop flag at least this often
# The kernel's queue of connections not accepted yet (it holds them, not this process: no
# descriptor each). Deep, so that a probe queued behind a flood waits for a few turns of the loop
# instead of having its SYN dropped and retried a second later.
BACKLOG = 1024
# After a full burst of accepts (a flood), the next waits this long: the listener's share of the
# CPU (and of the GIL the cycle and the renewals need) stays small whatever its clients do.
ACCEPT_GAP = 0.002
MAX_PENDING = 4  # deferred requests waiting for the worker
DEFERRED_TIMEOUT = 30.0  # seconds a deferred request may wait for its answer

TEXT = "text/plain; charset=utf-8"

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Too Large",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Request:
    """A request head: method, path (without the query) and headers (names in lower case)."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """A whole response: status, content type, body and any further headers."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Deferred:
    """A reply that takes a while to build (``work`` runs on the server's worker thread)."""

    work: Callable[[], Reply]


Handler = Callable[[Request], "Reply | Deferred"]
Route = Callable[[], "tuple[str, bytes]"]


def routes_handler(routes: Mapping[str, Route]) -> Handler:
    """A handler answering each path of ``routes`` with 200 and what its function returns, else 404."""
    table = dict(routes)

    def handle(request: Request) -> Reply:
        route = table.get(request.path)
        if route is None:
            return Reply(404, TEXT, b"not found\n")
        content_type, body = route()
        return Reply(200, content_type, body)

    return handle


_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


@dataclass
class _Exchange:
    """One connection: what it sent so far, what is left to write, and when it is cut."""

    sock: socket.socket
    fd: int
    deadline: float
    inbox: bytes = b""
    outbox: bytes = b""
    head_only: bool = False  # a HEAD request: the deferred answer is sent without its body
    waiting: bool = False  # for the worker's answer

    @property
    def idle(self) -> bool:
        """Nothing asked yet (or not all of it): what the cap evicts first."""
        return not self.waiting and not self.outbox


class BoundedHTTPServer:
    """Serves ``handler`` (or ``routes``) on ``address`` (``serve_forever`` in a thread; ``shutdown``
    from another)."""

    def __init__(
        self,
        address: tuple[str, int],
        routes: Mapping[str, Route] | None = None,
        max_connections: int = MAX_CONNECTIONS,
        timeout: float = TIMEOUT,
        max_request: int = MAX_REQUEST,
        monotonic: Callable[[], float] = time.monotonic,
        handler: Handler | None = None,
        max_pending: int = MAX_PENDING,
        deferred_timeout: float = DEFERRED_TIMEOUT,
    ) -> None:
        self.handler = handler or routes_handler(routes or {})
        self.max_connections = max_connections
        self.timeout = timeout
        self.max_request = max_request
        self.monotonic = monotonic
        self.deferred_timeout = deferred_timeout
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart within TIME_WAIT
            self.socket.bind(address)
            self.socket.listen(BACKLOG)
            self.socket.setblocking(False)
        except OSError:
            self.socket.close()
            raise
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self._open: dict[int, _Exchange] = {}  # by fd, oldest first
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._starved = False  # out of descriptors: said once, until accept works again
        self._accept_at: float | None = None  # accepting paused until then (after a full burst)
        # Deferred work: to the worker through ``_work``, answers back through ``_done`` and a byte
        # on ``_wake`` (which the selector watches). Created with the server: no descriptor later.
        self._work: queue.SimpleQueue[tuple[_Exchange, str, Callable[[], Reply]] | None] = queue.SimpleQueue()
        self.max_pending = max_pending
        self._pending = 0  # deferred work handed to the worker and not delivered yet (the loop's own count)
        self._done: queue.SimpleQueue[tuple[_Exchange, Reply]] = queue.SimpleQueue()
        # Socket objects, not bare descriptors: once closed, a late write fails instead of landing
        # in whatever file reused the number.
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self._worker: threading.Thread | None = None

    def serve_forever(self) -> None:
        """Accept, read, answer and expire connections until :meth:`shutdown`."""
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ)
        selector.register(self._wake_read, selectors.EVENT_READ)
        self._stopped.clear()
        self._worker = threading.Thread(target=self._work_loop, name="http-worker", daemon=True)
        self._worker.start()
        try:
            while not self._stop.is_set():
                if self._accept_at is not None and self.monotonic() >= self._accept_at:
                    self._accept_at = None
                    selector.register(self.socket, selectors.EVENT_READ)
                for key, _events in selector.select(self._wait()):
                    if key.fileobj is self.socket:
                        self._accept(selector)
                    elif key.fileobj is self._wake_read:
                        self._deliver(selector)
                    else:
                        self._step(selector, key.fd)
                self._expire(selector)
        finally:
            for fd in list(self._open):
                self._close(selector, fd)
            selector.close()
            self._work.put(None)  # the worker ends after the work it has
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` (within one tick) and close the listening socket."""
        self._stop.set()
        self._stopped.wait(timeout=5 * TICK)
        self.server_close()

    def server_close(self) -> None:
        self.socket.close()
        self._wake_read.close()
        self._wake_write.close()

    def _work_loop(self) -> None:
        """The worker: run deferred work one at a time, hand each reply back to the loop."""
        while True:
            item = self._work.get()
            if item is None or self._stop.is_set():
                return
            exchange, path, work = item
            try:
                reply = work()
            except Exception:
                log.exception("HTTP API: %s failed", path)
                reply = Reply(500, TEXT, b"internal error\n")
            self._done.put((exchange, reply))
            with contextlib.suppress(OSError):  # full (the loop will drain it) or closed (stopping)
                self._wake_write.send(b"x")

    def _deliver(self, selector: selectors.BaseSelector) -> None:
        """Send the worker's replies to the connections still waiting for them."""
        with contextlib.suppress(OSError):
            self._wake_read.recv(4096)
        while True:
            try:
                exchange, reply = self._done.get_nowait()
            except queue.Empty:
                return
            self._pending -= 1
            fd = exchange.fd
            if self._open.get(fd) is not exchange:
                continue  # cut meanwhile (its deadline, or evicted): the answer goes nowhere
            exchange.waiting = False
            exchange.outbox = _response(reply, head_only=exchange.head_only)
            selector.register(exchange.sock, selectors.EVENT_WRITE)

    @property
    def pending(self) -> int:
        """How many deferred requests wait for the worker's answer now."""
        return self._pending

    @property
    def connections(self) -> int:
        """How many client connections are open now."""
        return len(self._open)

    def _wait(self) -> float:
        now = self.monotonic()
        first = min((exchange.deadline for exchange in self._open.values()), default=now + TICK)
        if self._accept_at is not None:
            first = min(first, self._accept_at)
        return max(0.0, min(TICK, first - now))

    def _accept(self, selector: selectors.BaseSelector) -> None:
        # Each connection is read as soon as it is accepted: one that waited in the kernel's queue
        # behind a flood has its request there already, is answered, and so is not idle; the cap
        # then drops idle ones (the flood's), oldest first.
        for _ in range(self.max_connections):
            try:
                sock, _peer = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in _OUT_OF_FILES:
                    return  # e.g. ECONNABORTED: that client is gone, the listener is not
                # The waiting client stays in the kernel's backlog; free a descriptor for it.
                if not self._starved:
                    log.warning("HTTP API: out of file descriptors (%s); dropping idle connections", exc)
                    self._starved = True
                if self._open:
                    self._close(selector, self._oldest_idle())
                else:
                    self._stop.wait(TICK)
                return
            self._starved = False
            while len(self._open) >= self.max_connections:
                self._close(selector, self._oldest_idle())  # the oldest idle one makes room
            sock.setblocking(False)
            self._open[sock.fileno()] = _Exchange(sock, sock.fileno(), self.monotonic() + self.timeout)
            selector.register(sock, selectors.EVENT_READ)
            self._step(selector, sock.fileno())
        # A full burst: more are waiting. Pause accepting a moment (the kernel holds them).
        self._accept_at = self.monotonic() + ACCEPT_GAP
        selector.unregister(self.socket)

    def _oldest_idle(self) -> int:
        """The connection to drop for a new one: the oldest idle, else the oldest."""
        return next((fd for fd, exchange in self._open.items() if exchange.idle), next(iter(self._open)))

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
        exchange.inbox = b""
        request = _parse(head)
        if isinstance(request, Reply):
            exchange.outbox = _response(request)
        else:
            exchange.head_only = request.method == "HEAD"
            exchange.outbox = self._answer(exchange, request)
            if not exchange.outbox:
                selector.unregister(exchange.sock)  # waits for the worker: nothing to read or write
                return
        selector.modify(exchange.sock, selectors.EVENT_WRITE)

    def _answer(self, exchange: _Exchange, request: Request) -> bytes:
        """The whole response to ``request``; empty when deferred to the worker."""
        try:
            reply = self.handler(request)
        except Exception:
            log.exception("HTTP API: %s failed", request.path)
            reply = Reply(500, TEXT, b"internal error\n")
        if isinstance(reply, Deferred):
            if self._pending >= self.max_pending:
                return _response(Reply(503, TEXT, b"busy: too many requests waiting\n", (("Retry-After", "1"),)))
            self._pending += 1
            self._work.put((exchange, request.path, reply.work))
            exchange.deadline = self.monotonic() + self.deferred_timeout
            exchange.waiting = True
            return b""
        return _response(reply, head_only=exchange.head_only)

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


def _parse(head: bytes | None) -> Request | Reply:
    """The request in ``head`` (None: too large); a Reply when it is refused as it stands."""
    if head is None:
        return Reply(431, TEXT, b"request too large\n")
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    words = lines[0].split()
    if len(words) != 3 or not words[2].startswith(b"HTTP/"):
        return Reply(400, TEXT, b"bad request\n")
    method, target = words[0], words[1].split(b"?", 1)[0].decode("latin-1")
    if method not in (b"GET", b"HEAD"):
        return Reply(405, TEXT, b"GET or HEAD only\n", (("Allow", "GET, HEAD"),))
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return Request(method.decode("ascii"), target, headers)


def _response(reply: Reply, head_only: bool = False) -> bytes:
    reason = _REASONS.get(reply.status, "Internal Server Error")
    lines = [
        f"HTTP/1.1 {reply.status} {reason}",
        f"Content-Type: {reply.content_type}",
        f"Content-Length: {len(reply.body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in reply.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else reply.body)
