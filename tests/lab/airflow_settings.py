"""Each lab host's Airflow (tests/lab/airflow_harness.py): which Airflow (a :class:`Flavor`: a
virtualenv of this machine, shared by the hosts like the project) and its ``airflow.cfg``.

Every host has an Airflow home of its own, ``<base>/<host>/airflow.cfg``, whose Airflow metadata
database is a database of its own on the network's PostgreSQL or MariaDB (the controllers'
metastore is another one): the LocalExecutor, ``[scheduler] use_row_level_locking = False``, no
examples, DAGs unpaused at creation, and the ledger DAG (examples/dags/sfc_ledger_dag.py). On
Airflow 3 every host also runs ``airflow dag-processor`` and ``airflow api-server`` on its own
address, which its task supervisors report to (``[core] execution_api_server_url``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tests.lab.hosts import Host
from tests.lab.sites import LabMetastore, MariaDBSite, PostgreSQLSite
from tests.lab.tools import ROOT

DAG = ROOT / "examples" / "dags" / "sfc_ledger_dag.py"
API_PORT = 8080
START_STYLES = ("default", "setsid", "daemon")  # systemd: no systemd in the lab's hosts
FERNET_KEY = "3ta0v-6iDY1sKwq0Fw_oPi2AGcrxVN6rXfbeDc-RnXc="  # a fixed test key (never a secret)


@dataclass(frozen=True)
class Flavor:
    """One Airflow: its virtualenv and major version."""

    name: str
    venv: Path
    major: int

    @property
    def airflow(self) -> Path:
        return self.venv / "bin" / "airflow"

    def available(self) -> bool:
        return self.airflow.exists()

    def sql_url(self, site: LabMetastore, database: str) -> str:
        """The URL the hosts reach the Airflow database by (198.18.0.2, the driver of this virtualenv)."""
        if isinstance(site, PostgreSQLSite):
            driver = "psycopg" if self.major >= 3 else "psycopg2"
            return site.server.url(database, driver)
        assert isinstance(site, MariaDBSite), site
        # As for PostgreSQL (airflow_records.create_database): a fenced scheduler's open transaction must
        # not hold its row locks for long; MariaDB ends a session idle in a transaction for 15 s.
        return site.db.url(database) + "?init_command=SET%20SESSION%20idle_transaction_timeout%3D15"


def flavors() -> dict[str, Flavor]:
    return {
        "airflow3": Flavor("airflow3", Path(os.environ.get("SFC_AIRFLOW_VENV", ROOT / ".venv-airflow")), 3),
        "airflow2": Flavor("airflow2", Path(os.environ.get("SFC_AIRFLOW2_VENV", ROOT / ".venv-airflow2")), 2),
    }


def airflow_config(
    flavor: Flavor, home: Path, host: Host, sql_url: str, dags: Path, orphan_defaults: bool = False
) -> str:
    """The host's airflow.cfg ('%' escaped: Airflow interpolates its values); ``orphan_defaults``:
    Airflow's own scheduler_health_check_threshold (30 s) and orphaned_tasks_check_interval (300 s)."""
    base_url = f"http://{host.ip}:{API_PORT}"
    sections: dict[str, dict[str, str]] = {
        "core": {
            "dags_folder": str(dags),
            "load_examples": "False",
            "dags_are_paused_at_creation": "False",
            "executor": "LocalExecutor",
            "parallelism": "4",
            "fernet_key": FERNET_KEY,
            "simple_auth_manager_all_admins": "True",
            "execution_api_server_url": f"{base_url}/execution/",
            "hostname_callable": "socket.gethostname",
            "dagbag_import_timeout": "60",
        },
        "database": {"sql_alchemy_conn": sql_url, "sql_alchemy_pool_size": "3", "sql_alchemy_max_overflow": "5"},
        "logging": {"base_log_folder": str(home / "logs"), "worker_log_server_port": "8793"},
        "api": {"host": host.ip, "port": str(API_PORT), "base_url": base_url, "workers": "1", "secret_key": "lab"},
        "api_auth": {"jwt_secret": "sfc-lab-jwt-secret-not-a-secret"},
        "webserver": {"secret_key": "lab", "base_url": base_url},
        "scheduler": {
            # As singleton users set it: one scheduler at a time, no SELECT ... FOR UPDATE SKIP LOCKED.
            "use_row_level_locking": "False",
            # A scheduler killed or moved away leaves a SchedulerJob 'running' with a stale
            # heartbeat: the next one marks it failed (and resets its orphaned tasks) soon.
            "scheduler_health_check_threshold": "10",
            "orphaned_tasks_check_interval": "10",
            "scheduler_heartbeat_sec": "2",
            "min_file_process_interval": "10",
            "dag_dir_list_interval": "10",
            "parsing_processes": "1",
        },
        "dag_processor": {"refresh_interval": "10", "min_file_process_interval": "10", "parsing_processes": "1"},
    }
    if orphan_defaults:
        del sections["scheduler"]["scheduler_health_check_threshold"]
        del sections["scheduler"]["orphaned_tasks_check_interval"]
    if flavor.major >= 3 and sql_url.startswith("postgresql+psycopg:"):
        # Airflow 3 also opens an async engine; psycopg 3 is async too (asyncpg is not installed).
        sections["database"]["sql_alchemy_conn_async"] = sql_url
    return "".join(
        f"[{name}]\n" + "".join(f"{k} = {v.replace('%', '%%')}\n" for k, v in keys.items()) + "\n"
        for name, keys in sections.items()
    )
