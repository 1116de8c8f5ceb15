"""Faults of a real server for the tests: frozen processes, and a network path that drops packets.

Black-holing happens only inside a network namespace the tests create (``namespace``): the server
runs there on that namespace's own 127.0.0.1, the client calls run in threads that entered it
(tests/support/netns.py), and ``iptables -j DROP`` goes into that namespace's INPUT chain. The root
namespace's firewall is never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterable, Iterator

PREFIX = "sfct"  # sfct-<pid of the test process>-<random>: a later run sweeps what a killed one left


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=30, check=check)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(name: str) -> None:
    """Kill what still runs in namespace ``name`` (processes this test run started there) and delete it."""
    for pid in _ip("netns", "pids", name, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGCONT)
            os.kill(int(pid), signal.SIGKILL)
    _ip("netns", "del", name, check=False)


def sweep_stale() -> list[str]:
    """Delete the namespaces of test runs that are gone (killed before they could clean up)."""
    swept = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        found = re.fullmatch(rf"{PREFIX}-(\d+)-[0-9a-f]+", name)
        if found and not _alive(int(found.group(1))):
            _remove(name)
            swept.append(name)
    return swept


@contextlib.contextmanager
def namespace() -> Iterator[str]:
    """A fresh network namespace with only ``lo`` (up); deleted again, with what runs in it, on exit."""
    sweep_stale()
    name = f"{PREFIX}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        _remove(name)


def _iptables(ns: str, *args: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", ns, "iptables", "-w", "5", *args], check=True, capture_output=True, timeout=30
    )


@contextlib.contextmanager
def blackholed(ns: str, ports: Iterable[int]) -> Iterator[None]:
    """Inside namespace ``ns``, every TCP packet to ``ports`` is silently dropped until exit."""
    rules = [("INPUT", "-p", "tcp", "--dport", str(port), "-j", "DROP") for port in ports]
    added = []
    try:
        for rule in rules:
            _iptables(ns, "-A", *rule)
            added.append(rule)
        yield
    finally:
        for rule in added:
            _iptables(ns, "-D", *rule)


@contextlib.contextmanager
def frozen(pids: Iterable[int]) -> Iterator[None]:
    """SIGSTOP the given processes (servers the tests started) until exit, then SIGCONT them."""
    stopped = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
