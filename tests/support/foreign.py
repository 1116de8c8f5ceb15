"""Another user's (``nobody``'s) process that looks like a stand-in scheduler.

A shell script with the stand-in's file name, run by ``sh`` as nobody: ``sh DIR/fake_scheduler.py
--cluster T --node N`` matches ``fake_scheduler.py --cluster T --node N``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from tests.support.waiting import wait_for

AS_NOBODY = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--"]
LOOP = "trap 'exit 0' TERM\nwhile :; do sleep 1; done\n"


def can_run_as_nobody() -> bool:
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


@contextmanager
def lookalike_dir() -> Iterator[Path]:
    """A directory ``nobody`` can read, with a shell script named like the stand-in scheduler."""
    path = Path(tempfile.mkdtemp(prefix="sfc-foreign-"))
    try:
        path.chmod(0o755)
        script = path / "fake_scheduler.py"
        script.write_text(LOOP)
        script.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def user_of(pid: int) -> str | None:
    """The name of ``pid``'s real user (None: gone)."""
    try:
        return pwd.getpwuid(psutil.Process(pid).uids().real).pw_name
    except (psutil.Error, KeyError):
        return None


class Lookalikes:
    """Starts nobody's look-alikes; :meth:`close` ends each by its process group."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, args: Sequence[str]) -> subprocess.Popen[bytes]:
        """``sh DIR/fake_scheduler.py ARGS...`` as nobody, once it runs as nobody."""
        proc = subprocess.Popen(
            [*AS_NOBODY, "/bin/sh", str(self.directory / "fake_scheduler.py"), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.started.append(proc)
        wait_for(lambda: user_of(proc.pid) == "nobody", 10, "nobody's process to run as nobody")
        return proc

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
