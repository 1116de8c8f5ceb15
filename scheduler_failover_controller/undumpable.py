"""Keep the controller's memory and environment from processes of its own user.

A scheduler run as the controller's user (and every DAG it parses) could otherwise read
``/proc/<controller>/environ`` and ``/proc/<controller>/mem``, which hold the metastore password,
the ZooKeeper digest and the webhook URL. ``PR_SET_DUMPABLE 0`` makes those files root's and
forbids ptrace by anyone but root, and it writes no core file. It lasts until the process
``exec``s: the leash and the scheduler it starts are dumpable again, and get none of these secrets.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _prctl(option: int, arg: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)  # the interpreter's own symbols include libc's prctl
    return int(libc.prctl(option, arg, 0, 0, 0))


def forbid_dumps() -> bool:
    """Make this process non-dumpable (Linux); True if it now is. Never raises."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        if _prctl(PR_SET_DUMPABLE, 0) != 0:
            log.warning("could not make the controller non-dumpable (errno %d)", ctypes.get_errno())
            return False
        return _prctl(PR_GET_DUMPABLE, 0) == 0
    except (OSError, AttributeError) as exc:
        log.warning("could not make the controller non-dumpable: %s", exc)
        return False
