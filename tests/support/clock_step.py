"""What a step of the wall clock does to process start times, without touching the machine's clock.

The kernel derives its boot time (``btime`` in /proc/stat) from the wall clock, and psutil adds it
to each process's start ticks on every call: a step moves every create time by as much. A process
shown a /proc/stat whose btime is off (bind-mounted over it in a mount namespace of its own) sees
the create times it would have seen before such a step.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def stepped_stat(tmp: Path, seconds: int) -> Path:
    """This machine's /proc/stat with ``btime`` moved by ``seconds``, written under ``tmp``."""
    lines = []
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            line = f"btime {int(line.split()[1]) + seconds}"
        lines.append(line)
    path = tmp / "stat"
    path.write_text("\n".join(lines) + "\n")
    return path


def under_stat(fake: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` exec'd (same pid) in a private mount namespace that shows ``fake`` as /proc/stat (root)."""
    inner = 'mount --bind "$0" /proc/stat && exec "$@"'
    return ["unshare", "-m", "--propagation", "private", "/bin/sh", "-c", inner, str(fake), *argv]
