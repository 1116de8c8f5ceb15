"""This machine's scheduler processes, probed: which count, in what state, whether leashed.

Which command lines are a scheduler's is :mod:`.matching`'s rule; whose processes count,
:mod:`.ownership`'s (below a live leash of the node, or of the expected user); the tree is walked
by :mod:`.process_tree`. The same rules applied to another node's ``ps`` listing are
:mod:`.nodes.ssh.ps_table`'s; the leash registrations that tell a leashed scheduler are
:mod:`.leash.records`'.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import psutil

from .boot import since_boot, uptime
from .leash.records import LeashRecord, below_leashes, live_leashes, starting_detail, starting_leashes
from .matching import scan_schedulers
from .ownership import expected_uid, split_procs
from .probe_result import ForeignProcess, ProbeResult, SchedulerState
from .process_tree import PpidOf, below, kernel_ppid

# Carries the process match to ``probe``/``kill_local`` run on another node over SSH, so that the
# match words never appear in a command line there (a concurrent listing would see them).
MATCH_ENV = "SFC_PROCESS_MATCH"
# Carries ``state_dir`` to ``probe``/``kill_local`` run over SSH: where the node's leashes register.
STATE_DIR_ENV = "SFC_STATE_DIR"


_UNHEALTHY = (psutil.STATUS_ZOMBIE, psutil.STATUS_STOPPED, psutil.STATUS_DEAD, "tracing-stop")


def classify(
    node: str, roots: Sequence[tuple[int, str, float]], leashed: bool = False, starting: Sequence[LeashRecord] = ()
) -> ProbeResult:
    """The probe result for the (pid, status, create time) of each scheduler tree's root.

    With no root, a leash still ``starting`` its scheduler (see :func:`.leash.records.starting_leashes`)
    makes the node UNHEALTHY, never STOPPED: whatever reads it as empty would start a second one.
    """
    if not roots and starting:
        return ProbeResult(node, SchedulerState.UNHEALTHY, detail=starting_detail(starting), leashed=True)
    if not roots:
        return ProbeResult(node, SchedulerState.STOPPED)
    pids = tuple(pid for pid, _status, _created in roots)
    times = tuple(created for _pid, _status, created in roots)
    bad = [f"pid {pid} is {status}" for pid, status, _created in roots if status in _UNHEALTHY]
    if bad:
        return ProbeResult(node, SchedulerState.UNHEALTHY, pids, "; ".join(bad), times, leashed)
    detail = "" if len(pids) == 1 else f"{len(pids)} scheduler processes"
    return ProbeResult(node, SchedulerState.RUNNING, pids, detail, times, leashed)


def all_leashed(roots: Sequence[int], ppid_of: PpidOf, leashes: Sequence[LeashRecord]) -> bool:
    """Whether every root runs under one of ``leashes``: a tree-mode leash among its ancestors
    (``ppid_of``: where the parents come from), or a watch-mode leash. False without roots."""
    if not roots:
        return False
    if any(r.mode == "watch" for r in leashes):
        return True
    tree_leashes = {r.pid for r in leashes if r.mode == "tree"}
    return all(below(pid, ppid_of, tree_leashes) for pid in roots)


def leashed_roots(roots: Sequence[psutil.Process], leashes: Sequence[LeashRecord]) -> bool:
    """:func:`all_leashed`, the parents asked of the kernel (False when one cannot be read)."""
    try:
        return all_leashed([r.pid for r in roots], kernel_ppid(roots), leashes)
    except psutil.Error:
        return False


def _state_dir(state_dir: Path | None) -> Path | None:
    if state_dir is None and os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    return state_dir


def owned_schedulers(
    node: str, match: str, state_dir: Path | None = None, uid: int | None = None
) -> tuple[list[psutil.Process], list[ForeignProcess], frozenset[tuple[int, float]], list[LeashRecord]]:
    """This machine's scheduler roots of ``node`` that count (oldest first), the foreign ones,
    what was below a root (see :func:`scan_schedulers`), and the node's live leashes.

    ``state_dir`` (default ``$SFC_STATE_DIR``): where the node's leashes register; ``uid``: the
    expected user (default: ``$SFC_SCHEDULER_USER``, else this process's own; ValueError when
    that names no user).
    """
    expected = expected_uid() if uid is None else uid
    roots, hidden = scan_schedulers(match)
    where = _state_dir(state_dir)
    leashes = live_leashes(where, node) if where is not None else []
    owned, foreign = split_procs(roots, expected, below_leashes(leashes))
    return owned, foreign, hidden, leashes


def stop_targets(node: str, match: str, state_dir: Path | None = None, uid: int | None = None) -> list[psutil.Process]:
    """What a stop of ``node`` ends (arguments: see :func:`owned_schedulers`): its scheduler roots
    that count, and its leashes still starting one (ended, a leash stops its tree), so that no
    scheduler comes up after the stop found the node empty."""
    roots, _foreign, _hidden, leashes = owned_schedulers(node, match, state_dir, uid)
    out = list(roots)
    for record in starting_leashes(leashes, uptime()):
        try:
            out.append(psutil.Process(record.pid))
        except psutil.Error:
            continue
    return out


def probe_local(node: str, match: str, state_dir: Path | None = None, uid: int | None = None) -> ProbeResult:
    """Look at this machine's processes for ``node``'s scheduler (arguments: see
    :func:`owned_schedulers`); without a ``state_dir`` no scheduler counts as leashed."""
    looked_at = time.monotonic()
    try:
        roots, foreign, hidden, leashes = owned_schedulers(node, match, state_dir, uid)
    except (psutil.Error, OSError) as exc:
        return ProbeResult(node, SchedulerState.UNKNOWN, detail=f"cannot list processes: {exc}")
    except ValueError as exc:
        return ProbeResult(node, SchedulerState.UNKNOWN, detail=f"scheduler_user: {exc}")
    seen: list[tuple[int, str, float]] = []
    alive: list[psutil.Process] = []
    for proc in roots:
        status: str
        try:
            status = proc.status()
            created = since_boot(proc.pid)
        except psutil.NoSuchProcess:
            continue
        except psutil.Error:
            status, created = "?", 0.0
        seen.append((proc.pid, status, created))
        alive.append(proc)
    leashed = bool(alive) and leashed_roots(alive, leashes)
    result = classify(node, seen, leashed, starting_leashes(leashes, uptime()))
    return replace(result, hidden=hidden, looked_at=looked_at, foreign=tuple(foreign))
