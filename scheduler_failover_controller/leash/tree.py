"""The supervisor's looks at the processes it answers for: the tree below it, or (after a hand-off)
the node's matching schedulers, and which of them it may not signal."""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Callable

from ..matching import matches
from .procs import DENIED, SENT, Proc, ProcessTable, descendants
from .records import LEASH_MODULE
from .spec import Spec
from .voice import Say

Procs = list[tuple[int, int]]  # (pid, start ticks): a process's identity


class TreeView:
    """What the last look saw. ``changed`` is called when what the leash registers changes: a
    scheduler shown below it (its start is over), or a process it may not signal seen or gone."""

    def __init__(self, spec: Spec, pid: int, table: ProcessTable, say: Say, changed: Callable[[], None]) -> None:
        self.spec = spec
        self.pid = pid
        self.table = table
        self.say = say
        self.changed = changed
        self.words = shlex.split(spec.match) if spec.match else []
        self.uid = spec.uid  # whose matching processes a watching leash watches (see ownership)
        self.tree: Procs = []  # below the leash, the watcher excepted
        self.matches = False  # a scheduler is among them
        self.matched_ever = False
        self.ran: list[str] = []  # the first command lines seen below the leash while nothing matched
        self.watched: Procs = []  # after a hand-off: the node's scheduler trees
        self.watched_ever = False
        self.denied: dict[str, dict[int, str]] = {}  # "tree"/"watch" -> {pid: user} it may not signal

    @property
    def any_denied(self) -> bool:
        return any(self.denied.values())

    def scan_tree(self, exclude: set[int], skip: int = 0) -> dict[int, Proc]:
        """Look below the leash (pruning ``exclude``; ``skip``: a pid that is no scheduler, the stop
        command); the table it read."""
        table = self.table.table()
        below = descendants(table, [self.pid], exclude)
        self.tree = [(pid, table[pid].start) for pid in below if pid in table]
        argvs = {pid: self.table.argv(pid) for pid, _start in self.tree if pid != skip}
        self.matches = bool(self.words) and any(matches(argv, self.words) for argv in argvs.values())
        if self.matches and not self.matched_ever:
            self.matched_ever = True
            self.changed()  # its start is over: a probe no longer reads the node as starting
        if not self.matched_ever:  # what ran, to say so should nothing matching ever show
            for pid, argv in argvs.items():
                if LEASH_MODULE in argv:
                    continue  # a child of ours between its fork and its exec of the start command
                line = shlex.join([os.path.basename(w) if w.startswith("/") else w for w in argv])[:100]
                if (line or f"pid {pid}") not in self.ran and len(self.ran) < 5:
                    self.ran.append(line or f"pid {pid}")
        self.check_signalable("tree", self.tree)
        return table

    def scan_watch(self, table: dict[int, Proc] | None = None) -> None:
        """After a hand-off: the node's matching scheduler trees, wherever they run."""
        table = table if table is not None else self.table.table()
        try:
            roots = self.table.schedulers(self.spec.match)
        except Exception:  # noqa: BLE001 - psutil/OS trouble: keep the last list
            return
        roots = [pid for pid in roots if pid in table and self.table.owned(pid, self.uid)]
        below = descendants(table, roots, {self.pid})
        self.watched = [(pid, table[pid].start) for pid in roots + below if pid in table]
        self.watched_ever |= bool(self.watched)
        self.check_signalable("watch", [(pid, table[pid].start) for pid in roots])

    def forget_tree(self) -> None:
        """The tree has been ended (a hand-off): nothing of it counts any more."""
        self.tree = []
        self.denied.pop("tree", None)

    def check_signalable(self, kind: str, procs: Procs) -> None:
        """Note the processes this leash may not signal (another user's): while there are any, it
        registers as "denied" (a probe does not count them leashed) and says so, loudly, once each."""
        denied = {pid: self.table.user(pid) for pid in self.unsignalable(procs)}
        before = self.any_denied
        new = {pid: user for pid, user in denied.items() if pid not in self.denied.get(kind, {})}
        self.denied[kind] = denied
        if before != self.any_denied:
            self.changed()  # first: once said, it holds
            if not denied:
                self.say("every scheduler process may be signalled again: leashed")
        if new:
            self.say(
                f"not permitted to signal {listing(new)}: this leash cannot stop it at the deadline; "
                "the node's scheduler counts as not leashed",
                logging.WARNING,
            )

    def unsignalable(self, procs: Procs) -> list[int]:
        """The pids of ``procs`` this leash may not signal."""
        return [pid for pid, start in procs if self.table.signal(pid, start, 0) == DENIED]

    def send(self, procs: Procs, signum: int) -> int:
        """Signal each of ``procs`` that is still that process; how many were signalled."""
        return sum(self.table.signal(pid, start, signum) == SENT for pid, start in procs)

    def no_match(self, within: str = "") -> str:
        """That nothing matching ran below the leash, and what did (the first few command lines seen)."""
        ran = "; ".join(self.ran[:4]) + (" ..." if len(self.ran) > 4 else "") if self.ran else "nothing"
        return (
            f"no process matching scheduler_process_match {self.spec.match!r} appeared below the leash{within}; "
            f"what ran below it: {ran}"
        )


def listing(users: dict[int, str]) -> str:
    """``pid 12 (nobody), pid 13 (uid 1001)``: pids and their users."""
    return ", ".join(f"pid {pid} ({user})" for pid, user in sorted(users.items()))
