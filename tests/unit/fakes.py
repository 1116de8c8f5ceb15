"""In-memory fakes for unit tests: a config, an alerter that records, and a small ``Cluster`` of them.

The clock, the metastore and the node runner live in :mod:`.fakes_clock`, :mod:`.fakes_store` and
:mod:`.fakes_nodes`; they are importable from here too. ``FakeStore`` keeps the contract written on
:class:`Metastore` exactly, judging expiry by its own server clock ``server_now``: link it to a
:class:`FakeClock` so that both move together, then shift either one alone to make the controller
and the server disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from scheduler_failover_controller.airflow_job import SchedulerJobReader
from scheduler_failover_controller.alerts import Alerter
from scheduler_failover_controller.config import ENV_PREFIX, Config, load_config
from scheduler_failover_controller.controller.cycle import Controller
from scheduler_failover_controller.nodes.base import NodeRunner
from tests.unit.fakes_clock import FakeClock
from tests.unit.fakes_nodes import FakeRunner
from tests.unit.fakes_store import FakeStore

__all__ = ["NODES", "Cluster", "FakeClock", "FakeRunner", "FakeStore", "RecordingAlerter", "make_config"]

# --- config and alerts --------------------------------------------------------------------

NODES = ("n1", "n2", "n3")
TEST_HOME = "/nonexistent/sfc-unit-tests"  # never created: load_config only names paths in it
DEFAULTS: dict[str, object] = {
    "node_control": "ssh",  # the fakes' runners reach every node; self mode's tests say so
    "poll_frequency": 1,
    "lease_ttl": 5,
    "metastore_timeout": 0.5,
    "scheduler_start_timeout": 3,
    "max_restart_attempts": 3,
    "retry_count_before_alerting": 5,
    # Never connected (the tests use FakeStore); a shared URL because the nodes are separate hosts.
    "metadata_service_sql_conn": "mysql+pymysql://sfc@metastore.invalid/sfc",
}


def make_config(host: str = "n1", nodes: Iterable[str] = NODES, **settings: object) -> Config:
    """A validated Config built by ``load_config`` from ``AIRFLOW__SCHEDULER_FAILOVER__*`` variables.

    Defaults: nodes n1,n2,n3, poll_frequency 1, lease_ttl 5, metastore_timeout 0.5,
    scheduler_start_timeout 3 (any key of config.KEYS can be overridden).
    """
    values = {**DEFAULTS, **settings, "scheduler_nodes_in_cluster": ",".join(nodes), "current_host": host}
    env = {"AIRFLOW_HOME": TEST_HOME}
    env.update({ENV_PREFIX + key.upper(): str(value) for key, value in values.items()})
    return load_config(None, env=env, hostname=lambda: host)


class RecordingAlerter(Alerter):
    """Records alerts instead of sending them."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.sent: list[tuple[str, str]] = []

    def notify(self, summary: str, body: str) -> None:
        self.sent.append((summary, body))

    @property
    def summaries(self) -> list[str]:
        return [summary for summary, _body in self.sent]


# --- a small cluster: shared store, clock and runners; one controller per host -------------


@dataclass
class Cluster:
    """Nodes with fake runners, one fake store and one clock; ``controller(host)`` adds a controller."""

    nodes: tuple[str, ...] = NODES
    server_now: float = 1_700_000_000.0
    settings: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clock = FakeClock()
        self.store = FakeStore(self.server_now, clock=self.clock)
        self.actions: list[tuple[str, str]] = []
        self.runners: dict[str, FakeRunner] = {n: FakeRunner(n, actions=self.actions) for n in self.nodes}
        self.controllers: dict[str, Controller] = {}
        self.alerters: dict[str, RecordingAlerter] = {}

    def controller(
        self,
        host: str = "n1",
        *,
        clock_offset: float = 0.0,
        job_reader: SchedulerJobReader | None = None,
        **settings: object,
    ) -> Controller:
        """A controller on ``host``; ``clock_offset`` shifts its monotonic clock (another host's);
        ``job_reader`` stands in for Airflow's job table (with ``scheduler_job_heartbeat_timeout``)."""
        config = make_config(host, self.nodes, **{**self.settings, **settings})
        alerter = RecordingAlerter(config)
        clock = self.clock

        def monotonic() -> float:
            return clock.monotonic() + clock_offset

        runners: dict[str, NodeRunner] = dict(self.runners)
        controller = Controller(
            config,
            self.store,
            runners,
            alerter,
            monotonic=monotonic,
            sleep=clock.sleep,
            pid=len(self.controllers) + 1,
            job_reader=job_reader,
        )
        self.controllers[host] = controller
        self.alerters[host] = alerter
        return controller

    def running(self) -> list[str]:
        """The nodes where a scheduler process exists (the truth)."""
        return [n for n, r in self.runners.items() if r.running]

    def close(self) -> None:
        for controller in self.controllers.values():
            controller._pool.shutdown(wait=True)
            controller._renewal_pool.shutdown(wait=True)
