"""The lab's trigger (examples/dags/sfc_deferral_dag.py, tests/lab/triggerer.py): it waits for a
moment of a 10-second grid (seconds ending in 5) and, when it fires, appends a ledger line naming
the trigger and the triggerer process that ran it.

A module of its own (not the DAG file) so that the triggerer can import it by its class path; the
lab puts the dags folder on ``PYTHONPATH``. Runs on Airflow 2 and 3.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

GRID, OFFSET = 10, 5  # every trigger fires at a time whose seconds end in 5


def next_moment(now: float) -> float:
    """The first grid moment more than a second after ``now``."""
    moment = (int(now) // GRID) * GRID + OFFSET
    while moment <= now + 1:
        moment += GRID
    return float(moment)


def append(ledger: str, kind: str, key: str) -> None:
    """One ``kind key host pid time`` line, written with one ``write`` on an ``O_APPEND`` descriptor."""
    line = f"{kind} {key} {socket.gethostname()} {os.getpid()} {time.time():.3f}\n"
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class GridTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires once at ``moment``, after writing ``fire <key>`` to the ledger."""

    def __init__(self, key: str, moment: float, ledger: str) -> None:
        super().__init__()
        self.key, self.moment, self.ledger = key, moment, ledger

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("sfc_lab_triggers.GridTrigger", {"key": self.key, "moment": self.moment, "ledger": self.ledger})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        delay = self.moment - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        append(self.ledger, "fire", self.key)
        yield TriggerEvent(self.key)
