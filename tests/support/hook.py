"""A webhook stand-in on 127.0.0.1: answers each request with the next scripted reply, and keeps
the bodies it was sent (the alerts that reached it)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

GARBAGE = b"this is no HTTP\r\n\r\n"
OK = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"


class ScriptedHook:
    """Replies to the n-th request with ``replies[n]`` (the last one from then on), then closes."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self.bodies: list[bytes] = []
        self.paths: list[str] = []  # the request target of each request
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ScriptedHook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                head, body = self._read_request(conn)
                words = head.split(b"\r\n", 1)[0].split()
                self.paths.append(words[1].decode("latin-1") if len(words) > 1 else "")
                reply = self.replies[min(len(self.bodies), len(self.replies) - 1)]
                self.bodies.append(body)
                with contextlib.suppress(OSError):
                    conn.sendall(reply)

    @staticmethod
    def _read_request(conn: socket.socket) -> tuple[bytes, bytes]:
        """The request's head and body (by its Content-Length), within 5 s."""
        data = b""
        until = time.monotonic() + 5
        while time.monotonic() < until:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip() or 0)
                if len(body) >= length:
                    return head, body
            try:
                chunk = conn.recv(65536)
            except OSError:
                return data, b""
            if not chunk:
                return data, b""
            data += chunk
        return data, b""
