"""Self mode with real processes: a second controller incarnation of a node that cannot see the
first one's scheduler (a force-deleted pod's replacement, a restored snapshot) never makes two.

n2's controller is frozen (SIGSTOP) while its scheduler runs under its leash; a new controller is
started as n2 with its own state directory and a scheduler match that does not find the frozen
one's scheduler, as in another container. The observer samples the process table every ~50 ms.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable

import psutil
import pytest

from tests.process.harness import FAKE, Cluster
from tests.process.test_self_mode import finish, self_cluster, switch_to
from tests.support.waiting import wait_for

pytestmark = pytest.mark.process


def test_a_second_incarnation_that_cannot_see_the_first_ones_scheduler_never_runs_another(
    make_cluster: Callable[..., Cluster], mariadb_url: str
) -> None:
    # A lease long enough for the second controller to start and report before the frozen one's
    # leash stops its scheduler: the window in which a second scheduler could start.
    cluster = self_cluster(make_cluster, mariadb_url, poll=1.0, ttl=15.0)
    pid = switch_to(cluster, "n2")
    cluster.signal("n2", signal.SIGSTOP)
    frozen = time.monotonic()
    cluster.procs["n2-frozen"] = cluster.procs.pop("n2")  # thawed and stopped by the cluster's close
    pod = f"fake_scheduler.py --cluster {cluster.token} --node n2 --pod b"
    cluster.extra_env.update(
        {
            "AIRFLOW__SCHEDULER_FAILOVER__STATE_DIR": str(cluster.tmp / "pod-b"),
            "AIRFLOW__SCHEDULER_FAILOVER__SCHEDULER_PROCESS_MATCH": pod,
            "AIRFLOW__SCHEDULER_FAILOVER__AIRFLOW_SCHEDULER_START_COMMAND": (
                f"exec {sys.executable} {FAKE} --cluster {cluster.token} --node n2 --pod b"
            ),
        }
    )
    mark = len(cluster.log("n2"))
    cluster.start("n2")
    cluster.extra_env.clear()
    said = "may still run a scheduler"
    wait_for(lambda: said in cluster.log("n2")[mark:] or not psutil.pid_exists(pid), 30, "n2's second controller")
    # The frozen controller's leash stops its scheduler by the placement deadline; then a scheduler
    # runs again (anywhere) within a lease, the report's staleness and a start.
    wait_for(lambda: not psutil.pid_exists(pid), 2 * cluster.ttl, "the frozen controller's leash to stop its scheduler")
    wait_for(lambda: [s.pid != pid for s in cluster.observer.current()] == [True], 2 * cluster.ttl + 10, "a new one")
    back = time.monotonic() - frozen
    # the frozen one's placement expires a lease after its last renewal; then a move and a start
    assert back < cluster.ttl + 10, f"a scheduler again {back:.1f}s after the freeze"
    finish(cluster)
    assert "previous controller of this node" in cluster.log("n2")[mark:]
