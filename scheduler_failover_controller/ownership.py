"""Whose processes count as the scheduler.

A process whose arguments match the scheduler's is the scheduler only when it runs below a live
leash of its node (whatever user the start command switched to: ``su - airflow -c ...``,
``runuser``), or as the expected user: ``scheduler_user``, by default the controller's own (its
real and effective uid both). Any other matching process is *foreign*: it is never adopted,
counted or signalled, only reported (log, ``status``), so that a scheduler another user runs by
hand is seen, and a local user cannot make the controller kill the real one or adopt theirs.
"""

from __future__ import annotations

import logging
import os
import pwd
import threading
from collections.abc import Iterable, Sequence

import psutil

from .probe_result import ForeignProcess, describe_foreign
from .process_tree import below, kernel_ppid

# Carries ``scheduler_user`` to ``probe``/``kill_local`` run on another node over SSH.
SCHEDULER_USER_ENV = "SFC_SCHEDULER_USER"

_MAX_UID = 2**32 - 2  # (uid_t)-1 means "no user"


def resolve_user(value: str) -> int:
    """The uid a ``scheduler_user`` value names: a user name of this machine, or a uid."""
    text = value.strip()
    if text.isdigit():
        uid = int(text)
        if uid > _MAX_UID:
            raise ValueError(f"must be a user name or a uid (uid {text} is out of range)")
        return uid
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise ValueError(f"must name a user of this machine (there is no user {text!r})") from None


def expected_uid(user: str | None = None) -> int:
    """The uid whose processes count: ``user`` (a name or uid; default ``$SFC_SCHEDULER_USER``),
    else this process's own effective uid. ValueError when ``user`` names no user."""
    if user is None:
        user = os.environ.get(SCHEDULER_USER_ENV, "")
    return resolve_user(user) if user.strip() else os.geteuid()


def user_name(uid: int | None) -> str:
    """A uid as a person reads it: the user's name, else ``uid N``."""
    if uid is None:
        return "unknown user"
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return f"uid {uid}"


def counts(uids: Sequence[int] | None, expected: int, leashed: bool) -> bool:
    """Whether a process with (real, effective) ``uids`` is the scheduler: below a live leash of
    its node, or running as the expected user (both uids: a set-uid program run by another user
    does not pass)."""
    if leashed:
        return True
    return uids is not None and len(uids) >= 2 and uids[0] == expected and uids[1] == expected


def split_procs(
    roots: Sequence[psutil.Process], expected: int, leashes: set[int]
) -> tuple[list[psutil.Process], list[ForeignProcess]]:
    """``roots`` as (those that count, those that are foreign); ``leashes``: pids of the node's live
    tree-mode leashes. A process gone meanwhile is in neither."""
    owned: list[psutil.Process] = []
    foreign: list[ForeignProcess] = []
    for proc in roots:
        try:
            uids = proc.uids()
            leashed = below(proc.pid, kernel_ppid([proc]), leashes)
        except psutil.NoSuchProcess:
            continue
        except psutil.Error:
            uids, leashed = None, False
        if counts(uids, expected, leashed):
            owned.append(proc)
        else:
            foreign.append(ForeignProcess(proc.pid, user_name(uids[0] if uids else None)))
    return owned, sorted(foreign)


class ForeignLog:
    """Logs each node's foreign schedulers when they appear and when they are gone, not every cycle.

    Both threads' looks at the own node come here: ``seen`` is read and written under ``_lock``.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.log = logger
        self._lock = threading.Lock()
        self.seen: dict[str, frozenset[ForeignProcess]] = {}

    def note(self, node: str, foreign: Iterable[ForeignProcess]) -> None:
        now = frozenset(foreign)
        with self._lock:
            before = self.seen.get(node, frozenset())
            if now:
                self.seen[node] = now
            else:
                self.seen.pop(node, None)
        new = sorted(now - before)
        if new:
            self.log.warning(
                "%s: a process that looks like the scheduler but runs as another user and not under "
                "this controller's leash: %s; it is neither counted nor signalled (see `status`)",
                node,
                describe_foreign(new),
            )
        if before and not now:
            self.log.info("%s: no foreign scheduler process any more", node)
