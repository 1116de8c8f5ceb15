"""Real Airflow schedulers across the lab's hosts (issue 9, item 4); see tests/lab/airflow_harness.py.

Each scenario: a lab whose hosts run real ``airflow scheduler`` processes under their controllers,
the ledger DAG every few seconds, one fault on the scheduler's node; asserted: never two scheduler
roots (by argv), no task try executed twice (the ledger), a task run within the bound after the
fault, no Airflow process of the old scheduler left on its node, and one running SchedulerJob in
Airflow's ``job`` table at the end.

By default (CI) only the fast scenario runs: Airflow 3 on PostgreSQL, the scheduler SIGKILLed, two
hosts, each controller running its own node's scheduler (``node_control = self``, no sshd).
``SFC_LAB_AIRFLOW=all`` (``make lab-airflow``) runs the whole matrix: Airflow 3 and 2, on
PostgreSQL and MariaDB, every fault, every start style, in self mode and in ssh mode.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import MariaDB, missing
from tests.lab.airflow_harness import AirflowLab, airflow_lab, flavors
from tests.lab.conftest import RESULTS
from tests.lab.network import Network
from tests.lab.sites import MariaDBSite

pytestmark = pytest.mark.lab
MATRIX = os.environ.get("SFC_LAB_AIRFLOW", "") == "all"
# Seconds from the fault to the next task run: detection, Airflow's start-up on a loaded 2-core
# machine, up to one schedule interval, the task's own start-up.
BOUND = {"kill": 90.0, "crash": 120.0, "partition": 120.0, "switchover": 120.0, "restart": 120.0}

# (flavor, metastore, fault, style, hosts, node_control)
Case = tuple[str, str, str, str, int, str]
FAST: list[Case] = [("airflow3", "postgresql", "kill", "default", 2, "self")]
SHAPES = [
    ("airflow3", "postgresql", "crash", "default", 3),
    ("airflow3", "postgresql", "partition", "setsid", 3),
    ("airflow3", "postgresql", "switchover", "daemon", 2),
    ("airflow3", "postgresql", "restart", "default", 2),
    ("airflow2", "mariadb", "kill", "daemon", 2),
    ("airflow2", "mariadb", "crash", "default", 3),
    ("airflow2", "mariadb", "partition", "default", 3),
    ("airflow2", "mariadb", "switchover", "setsid", 2),
    ("airflow2", "mariadb", "restart", "default", 2),
    ("airflow2", "postgresql", "kill", "setsid", 2),
]
MATRIX_CASES: list[Case] = [
    ("airflow3", "postgresql", "kill", "default", 2, "ssh"),
    *((*shape, mode) for mode in ("self", "ssh") for shape in SHAPES),
]


def _case_id(case: Case) -> str:
    return "-".join(str(part) for part in case)


@pytest.fixture
def alab_factory(request: pytest.FixtureRequest, lab_network: tuple[Network, MariaDB]) -> Iterator[Any]:
    def make(flavor_name: str, metastore: str, style: str, size: int, node_control: str) -> Any:
        flavor = flavors()[flavor_name]
        if not flavor.available():
            missing(f"{flavor_name}'s virtualenv {flavor.venv} (scripts/setup.sh builds it)")
        net, db = lab_network
        site = request.getfixturevalue("lab_postgresql") if metastore == "postgresql" else MariaDBSite(db, net)
        return airflow_lab(net, site, flavor, size=size, style=style, node_control=node_control)

    yield make


def run_scenario(alab: AirflowLab, fault_kind: str, scenario: str) -> None:
    alab.boot("h1")
    lab = alab.lab
    assert lab is not None
    if alab.flavor.major >= 3:  # every execution API built before a task needs it (README, Airflow 3)
        cold = [h.name for h in lab.hosts if not alab.api_warmed(h)]
        assert not cold, f"api-servers that served no execution-API request before the first task: {cold}"
    alab.wait_run_after(0.0, 180)  # the scheduler works before the fault
    fault = alab.inject(fault_kind)
    recovery = alab.recover(fault, BOUND[fault_kind])
    if fault_kind == "partition":
        alab.heal(fault)
    alab.wait_run_after(fault.at + recovery, 60)  # and goes on
    alab.check_end()
    assert not lab.internal_errors(), lab.internal_errors()
    observer = lab.observer
    RESULTS.append(
        {
            "scenario": scenario,
            "recovery": recovery,
            "bound": BOUND[fault_kind],
            "two": observer.seconds_two_or_more,
            "none": observer.seconds_none,
            "pace": observer.mean_interval(),
            "note": "to the next task run",
        }
    )


@pytest.mark.parametrize("case", FAST + (MATRIX_CASES if MATRIX else []), ids=_case_id)
def test_real_airflow_schedulers(alab_factory: Any, case: Case) -> None:
    flavor, metastore, fault, style, size, node_control = case
    with alab_factory(flavor, metastore, style, size, node_control) as alab:
        run_scenario(alab, fault, f"airflow {_case_id(case)}")
