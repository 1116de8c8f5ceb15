"""Helpers of the config tests (tests/unit/test_config_*.py): a config file's text, loading it with
an explicit ``env`` dict and hostname, the one-line error a bad one gives, and the 2016 controller's
section (also run for real by tests/process/test_2016_section.py).

The real environment is never read: every load passes ``env=`` and ``hostname=``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from scheduler_failover_controller.config import Config, load_config
from scheduler_failover_controller.exceptions import ConfigError

HOST = "node-a"
SECTION = "scheduler_failover"
ENV = "AIRFLOW__SCHEDULER_FAILOVER__"


def _hostname() -> str:
    return HOST


def render(keys: Mapping[str, str | None], extra: str = "") -> str:
    """A config file text: the [scheduler_failover] keys (None leaves a key out), then ``extra``."""
    lines = [f"[{SECTION}]"]
    lines += [f"{key} = {value}" for key, value in keys.items() if value is not None]
    return "\n".join(lines) + "\n" + (f"\n{extra.strip()}\n" if extra else "")


def load(path: Path | str | None, env: Mapping[str, str], hostname: Callable[[], str] = _hostname) -> Config:
    return load_config(None if path is None else str(path), env=env, hostname=hostname)


def expect_error(path: Path | str | None, env: Mapping[str, str], *needles: str) -> str:
    """Loading fails with ONE line that contains every needle (key, file or env var)."""
    with pytest.raises(ConfigError) as info:
        load(path, env)
    message = str(info.value)
    assert message, "empty error message"
    assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


# --- the 2016 controller's section, and airflow.cfg read the way Airflow reads it ---------------

SECTION_2016 = """\
[core]
sql_alchemy_conn = mysql+pymysql://airflow:p%%40ss@db.example:3306/airflow

[scheduler_failover]
scheduler_nodes_in_cluster = localhost
metadata_service_type = SQLMetadataService
metadata_service_zookeeper_nodes = localhost:2181
poll_frequency = 60
airflow_scheduler_start_command = {start}
airflow_scheduler_stop_command = {stop}
logging_level = INFO
logging_dir =  /home/airflow/airflow/logs/scheduler_failover/
logging_file_name = scheduler_failover_controller.log
logs_rotate_when = midnight
logs_rotate_backup_count = 7
retry_count_before_alerting = 5
alert_to_email = airflow@airflow.com
alert_email_subject = Airflow Alert - Scheduler Failover Controller Failed to Startup Scheduler
""".format(  # the two long lines, verbatim
    start="export AIRFLOW_HOME=/home/airflow/airflow;;nohup airflow scheduler >> ~/airflow/logs/scheduler.logs &",
    stop="""for pid in `ps -ef | grep "airflow scheduler" | awk '{print $2}'` \\; do kill -9 $pid \\; done""",
)
