"""One raw HTTP exchange on loopback: the request as given, the whole answer until the server closes."""

from __future__ import annotations

import socket


def ask(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send ``request`` to 127.0.0.1:``port`` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
