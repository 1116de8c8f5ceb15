"""The demo's DAG (``scripts/run.sh``): a quick task every minute, so a working scheduler shows.

Runs on Airflow 2 (2.4 and later) and Airflow 3: the decorators come from ``airflow.sdk`` when it
exists (Airflow 3), else from ``airflow.decorators``. Its runs are listed by
``airflow dags list-runs sfc_heartbeat``; every successful run proves that the scheduler that the
controller keeps alive is scheduling, and that tasks run and report.
"""

from __future__ import annotations

import datetime
import os
import socket

try:  # Airflow 3
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2
    from airflow.decorators import dag, task


@dag(
    dag_id="sfc_heartbeat",
    schedule="* * * * *",
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    max_active_runs=3,
    dagrun_timeout=datetime.timedelta(minutes=5),
    default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=5)},
    tags=["scheduler_failover_controller"],
)
def sfc_heartbeat() -> None:
    @task
    def beat() -> str:
        message = f"heartbeat from {socket.gethostname()} (task pid {os.getpid()})"
        print(message)
        return message

    beat()


sfc_heartbeat()
