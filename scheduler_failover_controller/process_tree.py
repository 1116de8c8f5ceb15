"""Walking a process tree: the one walk up and the one walk down that every scan uses.

The parents come from wherever the processes were listed: the kernel here (psutil), /proc as the
leash reads it, or a ``ps`` table of another node (its listed ppids). Whether a scheduler runs
below a leash, whether a matching process is the top of its tree, and which processes are this
one's own lineage are asked of :func:`ancestors`; what runs below a leash or a scheduler (to watch
or to end it) of :func:`descendant_levels`.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from typing import Optional

import psutil

#: ``ppid_of``: a process's parent pid, or None (or 0) when it has none or it cannot be known
PpidOf = Callable[[int], Optional[int]]  # evaluated at import: no `X | None` before Python 3.10

#: how far up a walk goes: deeper than any real tree, and a bound should the parents loop
MAX_DEPTH = 256


def ancestors(pid: int, ppid_of: PpidOf, limit: int = MAX_DEPTH) -> Iterator[int]:
    """``pid``'s ancestors, nearest first, at most ``limit`` of them. Whatever ``ppid_of`` raises
    is raised here."""
    parent, depth = ppid_of(pid), 0
    while parent and depth < limit:
        yield parent
        parent, depth = ppid_of(parent), depth + 1


def below(pid: int, ppid_of: PpidOf, ancestors_of: set[int], limit: int = MAX_DEPTH) -> bool:
    """Whether one of ``ancestors_of`` is an ancestor of ``pid``."""
    return bool(ancestors_of) and any(p in ancestors_of for p in ancestors(pid, ppid_of, limit))


def descendant_levels(
    parents: Mapping[int, int], roots: Iterable[int], exclude: Container[int] = ()
) -> list[list[int]]:
    """The processes below ``roots`` (not the roots), level by level, nearest first; the subtrees
    of ``exclude`` pruned. ``parents``: pid -> ppid of every process listed."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    levels: list[list[int]] = []
    level = list(roots)
    seen = set(level)
    while level:
        level = [c for p in level for c in children.get(p, []) if c not in seen and c not in exclude]
        seen.update(level)
        if level:
            levels.append(level)
    return levels


def root_pids(matching: Iterable[int], ppid_of: PpidOf) -> set[int]:
    """The pids of ``matching`` with no ancestor in ``matching`` (the tops of scheduler trees).

    ``ppid_of`` gives a process's parent pid, or None when it cannot be known.
    """
    found = set(matching)
    return {pid for pid in found if not below(pid, ppid_of, found, limit=64)}


def parent_lookup(parents: dict[int, int]) -> PpidOf:
    """``ppid_of`` for :func:`root_pids`: the parents listed already, else asked of the kernel."""

    def ppid_of(pid: int) -> int | None:
        if pid in parents:
            return parents[pid]
        try:
            return psutil.Process(pid).ppid()
        except psutil.Error:
            return None

    return ppid_of


def kernel_ppid(procs: Iterable[psutil.Process] = ()) -> PpidOf:
    """``ppid_of`` asked of the kernel through psutil's ``parent()``: a "parent" that started after
    its child is a recycled pid, and no parent. ``procs`` are asked as they are (so a recycled pid
    of one of them raises NoSuchProcess); psutil.Error when a process on the way cannot be read.
    """
    known = {p.pid: p for p in procs}

    def ppid_of(pid: int) -> int | None:
        proc = known.get(pid) or psutil.Process(pid)
        parent = proc.parent()
        return None if parent is None else parent.pid

    return ppid_of
