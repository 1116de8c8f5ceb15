"""Which processes' command lines are a scheduler's, and the tops of their process trees.

A scheduler is a process whose arguments contain the words of ``scheduler_process_match``
(the first word compared by basename, so ``/venv/bin/airflow scheduler`` matches
``airflow scheduler`` but ``grep "airflow scheduler"`` does not). Only the top of each
matching process tree counts: Airflow's own children carry the same words (the tree is walked by
:mod:`.process_tree`). Who runs them is :mod:`.ownership`'s concern.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex

import psutil

from .boot import since_boot
from .process_tree import ancestors, kernel_ppid, parent_lookup, root_pids

#: The process names (``comm``) the leash, its watcher and its SSH helper give themselves:
#: never schedulers.
LEASH_NAMES = frozenset({"sfc-leash", "sfc-leash-w", "sfc-leash-s"})


def _argv(proc: psutil.Process) -> list[str]:
    return split_title(proc.cmdline())


def split_title(argv: list[str]) -> list[str]:
    """``argv`` as matched: a process title set with setproctitle is one argument, split on spaces."""
    if len(argv) == 1 and " " in argv[0]:
        return argv[0].split()
    return argv


# Programs that run another program named by their arguments: the kernel turns a script's
# "#!/venv/bin/python" into ``python /venv/bin/airflow scheduler``.
_INTERPRETER = re.compile(r"(python|pypy)[0-9.]*|(ba|da|k|z)?sh|perl[0-9.]*|ruby[0-9.]*|node")
_OPTION_WITH_VALUE = {"-X", "-W", "-Q"}


def program_index(argv: list[str]) -> int | None:
    """Where the program a process runs is named in ``argv``: 0, or the script an interpreter runs.

    ``python -u /venv/bin/airflow scheduler`` runs ``airflow`` (index 2); ``python -m airflow
    scheduler`` too (index 2); ``python -c ...`` runs no named program (None).
    """
    if not argv:
        return None
    if not _INTERPRETER.fullmatch(os.path.basename(argv[0])):
        return 0
    i = 1
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        if argv[i] == "-m":
            return i + 1 if i + 1 < len(argv) else None
        if argv[i] == "-c":
            return None
        i += 2 if argv[i] in _OPTION_WITH_VALUE else 1
    return i if i < len(argv) else None


def matches(argv: list[str], words: list[str]) -> bool:
    """Whether ``argv`` runs the program ``words[0]`` (by path or basename) with ``words[1:]`` as its
    first arguments.

    The program, not any word of the line: ``grep airflow scheduler``, ``watch airflow scheduler``
    or an observer whose own arguments name the match are not schedulers.
    """
    if not words:
        return False
    first, rest = words[0], words[1:]
    where = {0, program_index(argv)}
    for i in sorted(w for w in where if w is not None and w < len(argv)):
        arg = argv[i]
        if (arg == first or os.path.basename(arg) == first) and argv[i + 1 : i + 1 + len(rest)] == rest:
            return True
    return False


def _own_lineage() -> set[int]:
    """This process and its ancestors: never schedulers, never to be killed."""
    pids = {os.getpid()}
    with contextlib.suppress(psutil.Error):
        pids.update(list(ancestors(os.getpid(), kernel_ppid())))
    return pids


def find_schedulers(match: str) -> list[psutil.Process]:
    """The root processes of every scheduler tree matching ``match``, oldest first."""
    return scan_schedulers(match)[0]


def scan_schedulers(match: str) -> tuple[list[psutil.Process], frozenset[tuple[int, float]]]:
    """The roots of every scheduler tree matching ``match`` (oldest first), and the (pid, create
    time) of every matching process below a root."""
    words = shlex.split(match)
    skip = _own_lineage()
    found: dict[int, psutil.Process] = {}
    parents: dict[int, int] = {}
    for proc in psutil.process_iter(["pid", "ppid"]):
        try:
            if proc.pid in skip or not matches(_argv(proc), words) or proc.name() in LEASH_NAMES:
                continue
            found[proc.pid] = proc
            parents[proc.pid] = proc.info["ppid"]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue

    tops = root_pids(found, parent_lookup(parents))
    roots = [proc for pid, proc in found.items() if pid in tops]

    def created(proc: psutil.Process) -> float:
        return since_boot(proc.pid)

    hidden = frozenset((pid, created(proc)) for pid, proc in found.items() if pid not in tops)
    return sorted(roots, key=created), hidden
