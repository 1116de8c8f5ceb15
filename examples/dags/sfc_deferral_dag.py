"""The lab's deferral DAG (tests/lab/triggerer.py): one deferrable task per run, resumed by the
triggerer.

Defined only when ``SFC_TRIGGER_LEDGER`` names the ledger (a file every master can write). Every
``SFC_DEFERRAL_INTERVAL`` seconds (default 10) a run's task writes ``defer <run>/<try>`` and defers
to a :class:`sfc_lab_triggers.GridTrigger`; the trigger writes ``fire <run>/<try>`` when it fires,
and the task, resumed, writes ``resume <run>/<try>``. A key fired twice is one trigger run twice; a
key resumed twice, one task resumed twice. Runs on Airflow 2 (2.4 and later) and Airflow 3.
"""

from __future__ import annotations

import datetime
import os
import time
from typing import Any

try:  # Airflow 3
    from airflow.sdk import BaseOperator, dag
except ImportError:  # Airflow 2
    from airflow.decorators import dag
    from airflow.models.baseoperator import BaseOperator

LEDGER = os.environ.get("SFC_TRIGGER_LEDGER", "")
INTERVAL = float(os.environ.get("SFC_DEFERRAL_INTERVAL", "10") or "10")

if LEDGER:
    from sfc_lab_triggers import GridTrigger, append, next_moment

    class GridDeferral(BaseOperator):  # type: ignore[misc]
        """Defers to a GridTrigger; resumed with the trigger's event (its key)."""

        def execute(self, context: Any) -> None:
            key = f"{context['run_id']}/{int(context['ti'].try_number)}"
            append(LEDGER, "defer", key)
            trigger = GridTrigger(key=key, moment=next_moment(time.time()), ledger=LEDGER)
            self.defer(trigger=trigger, method_name="resume")

        def resume(self, context: Any, event: Any = None) -> str:
            append(LEDGER, "resume", str(event))
            return str(event)

    @dag(
        dag_id="sfc_deferral",
        schedule=datetime.timedelta(seconds=INTERVAL),
        start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
        catchup=False,
        max_active_runs=16,
        dagrun_timeout=datetime.timedelta(minutes=10),
        default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=2)},
        tags=["scheduler_failover_controller"],
    )
    def sfc_deferral() -> None:
        GridDeferral(task_id="wait")

    sfc_deferral()
