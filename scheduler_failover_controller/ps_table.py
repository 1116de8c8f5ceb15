"""The POSIX ``ps`` listing a node without this project is probed with, and its parsing.

The rows become :class:`~scheduler_failover_controller.probe.ProcessEntry` values, to which
:func:`~scheduler_failover_controller.probe.probe_table` applies the same matching and root rules
as the psutil probe.
"""

from __future__ import annotations

import time

from .probe import ProcessEntry

#: The listing: POSIX ``ps`` fields plus ``uid``/``ruid`` (effective and real uid: whose process
#: it is, see :mod:`.ownership`) and ``stat`` (procps, BSD) and ``-ww`` (no truncation of the
#: arguments).
PS_LISTING = "ps -A -ww -o pid=,ppid=,uid=,ruid=,stat=,etime=,args="

#: ``ps`` STAT letters to psutil's status names (the rest count as running).
_STAT_NAMES = {
    "R": "running",
    "S": "sleeping",
    "D": "disk-sleep",
    "I": "idle",
    "Z": "zombie",
    "T": "stopped",
    "t": "tracing-stop",
    "X": "dead",
    "W": "waking",
    "P": "parked",
}


def parse_etime(text: str) -> float:
    """Seconds from ``ps`` etime: ``[[dd-]hh:]mm:ss``."""
    days = 0
    if "-" in text:
        head, text = text.split("-", 1)
        days = int(head)
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return float(days * 86400 + seconds)


def parse_ps(text: str, now: float | None = None, uptime: float | None = None) -> list[ProcessEntry]:
    """Rows of :data:`PS_LISTING`. Arguments are split on whitespace (ps joins them with spaces).

    ``now``: the listing host's clock (``time.time()`` here by default), start times are taken
    from it minus each row's elapsed time. ``uptime``: its seconds since boot, read just before
    the listing; each row's ``started`` is then that minus its elapsed time (``ps`` counts etime
    from boot too, so no step of the wall clock moves it).
    """
    now = time.time() if now is None else now
    rows = []
    for line in text.splitlines():
        parts = line.split(None, 6)
        if len(parts) < 6:
            continue
        try:
            pid, ppid, uid, ruid = int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3])
            elapsed = parse_etime(parts[5])
        except ValueError:
            continue
        args = parts[6] if len(parts) == 7 else ""
        status = _STAT_NAMES.get(parts[4][:1], "running")
        started = None if uptime is None else uptime - elapsed
        rows.append(
            ProcessEntry(pid, ppid, tuple(args.split()), status, now - elapsed, args, uid, ruid, started=started)
        )
    return rows


def lineage(pid: int, table: list[ProcessEntry]) -> set[int]:
    """``pid`` and its ancestors in ``table``: the listing's own shell and session."""
    parents = {e.pid: e.ppid for e in table}
    out: set[int] = set()
    while pid and pid not in out and len(out) < 256:
        out.add(pid)
        pid = parents.get(pid, 0)
    return out
