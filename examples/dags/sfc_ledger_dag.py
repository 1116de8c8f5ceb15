"""The lab's ledger DAG (tests/lab/test_airflow_lab.py, benchmarks/airflow.py): one short task per run
that appends ``run_id try host time`` to a ledger file.

Defined only when ``SFC_LEDGER`` names the ledger (a file every master can write; the lab's hosts
share a filesystem), so that a dags folder holding this file elsewhere (scripts/run.sh's demo)
gets no DAG from it. ``SFC_LEDGER_INTERVAL`` is the schedule in seconds (default 10);
``SFC_LEDGER_TASK_SECONDS`` keeps each task running that long after its line (default 0), so that a
fault finds tasks in flight (benchmarks/airflow.py ``--task-seconds``).

Each line is written with one ``write`` on an ``O_APPEND`` descriptor, so lines from tasks on
different hosts never interleave. Two lines with the same ``run_id`` and try number are one task
try executed twice, which a single scheduler never does. Runs on Airflow 2 (2.4 and later) and
Airflow 3: the decorators come from ``airflow.sdk`` when it exists, else from ``airflow.decorators``.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
from typing import Any

try:  # Airflow 3
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2
    from airflow.decorators import dag, task

LEDGER = os.environ.get("SFC_LEDGER", "")
INTERVAL = float(os.environ.get("SFC_LEDGER_INTERVAL", "10") or "10")
TASK_SECONDS = float(os.environ.get("SFC_LEDGER_TASK_SECONDS", "0") or "0")


def ledger_line(run_id: str, try_number: int, host: str, when: float) -> str:
    return f"{run_id} {try_number} {host} {when:.3f}\n"


if LEDGER:

    @dag(
        dag_id="sfc_ledger",
        schedule=datetime.timedelta(seconds=INTERVAL),
        start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
        catchup=False,
        max_active_runs=16,
        dagrun_timeout=datetime.timedelta(minutes=10),
        default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=2)},
        tags=["scheduler_failover_controller"],
    )
    def sfc_ledger() -> None:
        @task
        def record(**context: Any) -> str:
            line = ledger_line(context["run_id"], int(context["ti"].try_number), socket.gethostname(), time.time())
            fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
            print(line, end="")
            time.sleep(TASK_SECONDS)
            return line.strip()

        record()

    sfc_ledger()
