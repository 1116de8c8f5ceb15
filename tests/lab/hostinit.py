"""PID 1 of one simulated master host of the lab (see harness.py).

Run as ``ip netns exec NS unshare --pid --fork --kill-child --mount-proc --uts -- python
hostinit.py SPEC``: sets the host name (own UTS namespace); bind-mounts the host's own
/etc/hosts and state directory and gives it a /dev/shm of its own (own mount namespace);
starts ``sshd -D`` on the host's address; writes a ``ready`` file; then reaps every orphan of
the namespace until it is killed. SIGKILL of this process from the root namespace kills every
process of the host at once: that is the lab's "host crash". SIGTERM stops the host's
processes more gently (SIGTERM to all, then exit, which kills whatever is left).

The controllers and stray schedulers are started later by the harness with ``nsenter`` so that
each scenario chooses its order and wrappers (``faketime``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType


def _wait_listening(address: str, port: int, sshd: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sshd.poll() is not None:
            return False
        with socket.socket() as sock:
            sock.settimeout(0.5)
            try:
                sock.connect((address, port))
                return True
            except OSError:
                pass
        time.sleep(0.05)
    return False


def _reap() -> None:
    """Reap every exited child (our own and the orphans the namespace hands to PID 1)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    socket.sethostname(spec["hostname"])
    subprocess.run(["mount", "--bind", spec["hosts_file"], "/etc/hosts"], check=True, timeout=10)
    for source, target in spec.get("binds", []):  # private directories at paths every host shares
        subprocess.run(["mount", "--bind", source, target], check=True, timeout=10)
    for target in spec.get("tmpfs", []):  # e.g. a /dev/shm of its own, gone with the host
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777,size=64m", "tmpfs", target], check=True, timeout=10)
    stopping = False

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    started: dict[str, int] = {"init": os.getpid()}
    if spec["sshd"]:  # none on a self-mode lab's hosts
        with open(spec["sshd_log"], "ab") as log:
            sshd = subprocess.Popen(spec["sshd"], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if not _wait_listening(spec["address"], 22, sshd, timeout=15):
            print(f"{spec['hostname']}: sshd did not come up (see {spec['sshd_log']})", file=sys.stderr)
            return 1
        started["sshd"] = sshd.pid
    ready = Path(spec["ready_file"])
    ready.with_suffix(".tmp").write_text(json.dumps(started))
    ready.with_suffix(".tmp").replace(ready)
    while not stopping:
        _reap()
        time.sleep(0.1)
    # SIGTERM: ask every process of the namespace to stop, reap for a while, then leave (the
    # kernel kills whatever is left when PID 1 exits).
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break  # nothing left
        if pid == 0:
            time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
