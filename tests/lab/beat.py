"""A real ``celery beat`` on the lab's hosts, and the ticks it sent (tests/lab/test_lab_services.py).

The beat (examples/celery/sfc_beat_app.py, run by ``.venv-celery``, which scripts/setup.sh builds)
sends one task per wall-clock second through kombu's ``filesystem://`` transport into a folder every
host shares; nothing consumes them. Each message file names its sender (``origin``,
``gen<pid>@<host>``) and the second it was sent in: :func:`read_ticks` reads them back and
:func:`tally` counts, over a span of seconds, the ticks lost (a second no beat sent) and the ticks
doubled (a second sent more than once, which two beats at once do).
"""

from __future__ import annotations

import ast
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.lab.daemons import Daemon
from tests.lab.tools import ROOT

CELERY_VENV = Path(os.environ.get("SFC_CELERY_VENV", str(ROOT / ".venv-celery")))
APP_DIR = ROOT / "examples" / "celery"


def available() -> bool:
    return (CELERY_VENV / "bin" / "celery").exists()


def beat_daemon(base: Path, settings: dict[str, str] | None = None) -> Daemon:
    """The beat as the service ``beat``: messages into ``base/beat``, matched by its ``-s`` path
    (``base/<node>/beat-schedule``, a path the in-memory scheduler never writes)."""
    folder = base / "beat"
    (folder / "processed").mkdir(parents=True, exist_ok=True)
    celery = CELERY_VENV / "bin" / "celery"
    match = f"celery -A sfc_beat_app beat -s {base}/{{node}}/beat-schedule"
    env = ["env", f"SFC_BEAT_FOLDER={folder}", f"PYTHONPATH={APP_DIR}"]
    start = (
        f"exec {shlex.join(env)} {celery} -A sfc_beat_app beat -s {base}/{{node}}/beat-schedule"
        " -S celery.beat:Scheduler --loglevel INFO"
    )
    return Daemon("beat", start, match, "beat", dict(settings or {}))


@dataclass(frozen=True, order=True)
class Tick:
    """One message the beat sent: the wall-clock time, and who sent it (``gen<pid>@<host>``)."""

    sent: float
    origin: str

    @property
    def second(self) -> int:
        return int(self.sent)

    @property
    def host(self) -> str:
        return self.origin.rpartition("@")[2]


def read_ticks(base: Path) -> list[Tick]:
    """Every tick sent so far, in time order (a message file still being written is left out)."""
    ticks = []
    for path in (base / "beat").glob("*.msg"):
        try:
            headers = json.loads(path.read_bytes())["headers"]
        except (OSError, ValueError, KeyError):
            continue
        (sent,) = ast.literal_eval(headers["argsrepr"])
        ticks.append(Tick(float(sent), str(headers["origin"])))
    return sorted(ticks)


@dataclass(frozen=True)
class Tally:
    """The ticks of the seconds ``first`` to ``last`` (both included)."""

    first: int
    last: int
    lost: tuple[int, ...]  # seconds no beat sent
    doubled: tuple[tuple[int, tuple[str, ...]], ...]  # seconds sent more than once, with the senders

    @property
    def seconds(self) -> int:
        return self.last - self.first + 1


def tally(ticks: list[Tick], first: int | None = None, last: int | None = None) -> Tally:
    """Lost and doubled ticks between ``first`` and ``last`` (default: the first and last tick sent)."""
    by_second: dict[int, list[str]] = {}
    for tick in ticks:
        by_second.setdefault(tick.second, []).append(tick.origin)
    if not by_second:
        return Tally(0, -1, (), ())
    lo = min(by_second) if first is None else first
    hi = max(by_second) if last is None else last
    lost = tuple(s for s in range(lo, hi + 1) if s not in by_second)
    doubled = tuple((s, tuple(o)) for s, o in sorted(by_second.items()) if lo <= s <= hi and len(o) > 1)
    return Tally(lo, hi, lost, doubled)
