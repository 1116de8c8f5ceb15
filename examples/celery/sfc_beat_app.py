"""The lab's celery beat (tests/lab/beat.py): one periodic task every wall-clock second, no broker server.

Run as ``celery -A sfc_beat_app beat -S celery.beat:Scheduler`` with this folder on ``PYTHONPATH``
and ``SFC_BEAT_FOLDER`` naming a folder every master shares: kombu's ``filesystem://`` transport
writes each message sent as one file there, and nothing consumes them, so the folder is the record
of every tick sent. A message's headers carry the sender (``origin``, ``gen<pid>@<host>``) and its
argument the wall-clock time it was sent at.

Each tick is one whole second of the wall clock: the entry is due once the clock has entered a
second later than the last send's, so one beat sends at most once per second and two beats at once
send two messages for one second (a tick doubled). The in-memory scheduler keeps no schedule file:
a beat started anywhere sends its first tick at the next whole second, never one already past.
"""

from __future__ import annotations

import datetime
import os
import time
from typing import Any

from celery import Celery
from celery.beat import BeatLazyFunc
from celery.schedules import schedstate, schedule

FOLDER = os.environ.get("SFC_BEAT_FOLDER", "")
TASK = "sfc_lab.tick"


class WholeSecond(schedule):  # type: ignore[misc]
    """Due once per whole second of the wall clock: the first check in a later second than the last send."""

    def __init__(self) -> None:
        super().__init__(run_every=datetime.timedelta(seconds=1))

    def is_due(self, last_run_at: datetime.datetime) -> Any:
        now = time.time()
        to_next = 1.0 - (now % 1.0) + 0.002  # just past the next whole second
        return schedstate(int(now) > int(last_run_at.timestamp()), to_next)


app = Celery("sfc_lab_beat")
app.conf.update(
    broker_url="filesystem://",
    broker_transport_options={
        "data_folder_in": FOLDER,
        "data_folder_out": FOLDER,
        "processed_folder": os.path.join(FOLDER, "processed"),
    },
    broker_connection_retry_on_startup=True,
    enable_utc=True,
    beat_max_loop_interval=1,
    beat_schedule={"tick": {"task": TASK, "schedule": WholeSecond(), "args": (BeatLazyFunc(time.time),)}},
)
