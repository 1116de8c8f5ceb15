"""An HTTP client whose whole exchange has one deadline, and whose answer has a size cap.

``urllib``'s timeout bounds each socket operation, not the exchange: a peer that sends its answer
one byte per second never times out. Here every connect, send and read is given only what is left
of one deadline, and an answer (status line and headers; the body is never read) longer than a cap
is refused. urllib still does the rest: proxies from the environment, redirects, TLS.
"""

from __future__ import annotations

import functools
import http.client
import io
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

#: the most of an answer read (status line and headers)
MAX_ANSWER = 64 * 1024


class ExchangeTimeout(socket.timeout):
    """The whole exchange did not end within its deadline."""


class AnswerTooLarge(OSError):
    """The answer went on past :data:`MAX_ANSWER` bytes."""


class _Budget:
    """What is left of one exchange's deadline and answer size."""

    def __init__(self, seconds: float, max_bytes: int, monotonic: Callable[[], float]) -> None:
        self.seconds = seconds
        self.deadline = monotonic() + seconds
        self.left = max_bytes
        self.max_bytes = max_bytes
        self.monotonic = monotonic

    def remaining(self) -> float:
        left = self.deadline - self.monotonic()
        if left <= 0:
            raise ExchangeTimeout(f"timed out after {self.seconds:g}s")
        return left

    def arm(self, sock: socket.socket) -> None:
        """Give ``sock``'s next operation only the time left."""
        sock.settimeout(self.remaining())

    def took(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise AnswerTooLarge(f"answer longer than {self.max_bytes} bytes")


class _BoundedReader(io.RawIOBase):
    """A socket's reads, each given only what is left of the budget."""

    def __init__(self, sock: socket.socket, budget: _Budget) -> None:
        super().__init__()
        self._sock = sock
        self._budget = budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)[: max(1, min(len(buffer), self._budget.left + 1))]
        self._budget.arm(self._sock)
        try:
            count = self._sock.recv_into(view)
        except socket.timeout:
            raise ExchangeTimeout(f"timed out after {self._budget.seconds:g}s") from None
        self._budget.took(count)
        return count


class _BoundedSocket:
    """The part of a socket ``http.client`` uses, every operation within the budget."""

    def __init__(self, sock: socket.socket, budget: _Budget) -> None:
        self.sock = sock
        self._budget = budget

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self._budget.arm(self.sock)
            try:
                sent = self.sock.send(view)
            except socket.timeout:
                raise ExchangeTimeout(f"timed out after {self._budget.seconds:g}s") from None
            view = view[sent:]

    def makefile(self, mode: str = "rb", *_args: object, **_kwargs: object) -> io.BufferedReader:
        return io.BufferedReader(_BoundedReader(self.sock, self._budget))

    def setsockopt(self, *args: Any) -> None:
        self.sock.setsockopt(*args)

    def close(self) -> None:
        self.sock.close()


def _open(host: str, port: int | None, budget: _Budget, source: tuple[str, int] | None) -> socket.socket:
    try:
        sock = socket.create_connection((host, port or 80), budget.remaining(), source)
    except socket.timeout:
        raise ExchangeTimeout(f"timed out after {budget.seconds:g}s") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _Connection(http.client.HTTPConnection):
    def __init__(self, *args: Any, budget: _Budget, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget = budget

    def connect(self) -> None:
        raw = _open(self.host, self.port, self.budget, self.source_address)  # type: ignore[attr-defined]
        self.sock = _BoundedSocket(raw, self.budget)
        if self._tunnel_host:  # type: ignore[attr-defined]
            self._tunnel()  # type: ignore[attr-defined]


class _TLSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, budget: _Budget, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget = budget

    def connect(self) -> None:
        raw = _open(self.host, self.port, self.budget, self.source_address)  # type: ignore[attr-defined]
        tunnel: str | None = self._tunnel_host  # type: ignore[attr-defined]
        if tunnel:
            self.sock = _BoundedSocket(raw, self.budget)
            self._tunnel()  # type: ignore[attr-defined]
        self.budget.arm(raw)  # the handshake as a whole gets what is left
        try:
            tls = self._context.wrap_socket(raw, server_hostname=tunnel or self.host)  # type: ignore[attr-defined]
        except socket.timeout:
            raw.close()
            raise ExchangeTimeout(f"timed out after {self.budget.seconds:g}s") from None
        self.sock = _BoundedSocket(tls, self.budget)


class _Handler(urllib.request.HTTPHandler):
    def __init__(self, budget: _Budget) -> None:
        super().__init__()
        self.budget = budget

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_Connection, budget=self.budget), req)


class _TLSHandler(urllib.request.HTTPSHandler):
    def __init__(self, budget: _Budget) -> None:
        super().__init__()
        self.budget = budget

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        conn = functools.partial(_TLSConnection, budget=self.budget)
        return self.do_open(conn, req, context=self._context)  # type: ignore[attr-defined]


def request(
    url: str,
    timeout: float,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    max_bytes: int = MAX_ANSWER,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """Send one request (POST when ``data`` is given) and return the answer's HTTP status.

    Raises :class:`OSError` (:class:`ExchangeTimeout` past ``timeout`` seconds in all,
    :class:`AnswerTooLarge`), :class:`http.client.HTTPException` for an answer that is no HTTP,
    :class:`ValueError` for a URL that is not http(s); :func:`describe` makes any of them one line.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url.split(':', 1)[0]}:...")
    budget = _Budget(timeout, max_bytes, monotonic)
    opener = urllib.request.build_opener(_Handler(budget), _TLSHandler(budget))
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with opener.open(req, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:  # a 4xx/5xx answer: its status is the answer
        exc.close()
        return int(exc.code)
    except urllib.error.URLError as exc:
        why = exc.reason
        raise why if isinstance(why, BaseException) else OSError(str(why)) from None


def describe(exc: BaseException) -> str:
    """``exc`` from :func:`request` as a short, never empty, single line."""
    text = " ".join(str(exc).split())[:200]
    name = type(exc).__name__
    if isinstance(exc, (socket.timeout, TimeoutError)) and not text:  # distinct classes before 3.10
        return "timed out"
    if not text or text in ("''", '""'):
        return name
    return text if isinstance(exc, (OSError, ValueError)) else f"{name}: {text}"


def check_health(url: str, timeout: float) -> str | None:
    """GET a scheduler health URL: None when it answers 2xx within ``timeout`` seconds in all,
    else why not (one line). An answer that is no HTTP is a failed check, not a broken probe."""
    try:
        status = request(url, timeout)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return f"health check failed: {describe(exc)}"
    return None if 200 <= status < 300 else f"health check answered HTTP {status}"
