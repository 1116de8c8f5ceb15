"""Property: a random graph of services (nodes, colocate_with, anti_colocate_with) loads if and only
if some placement satisfies it.

The oracle tries every placement of the scheduler and the services on their nodes: each colocated
service on its leader's node, each anti-colocated pair apart. Colocation must also be a forest
(no service colocated with itself, no cycle): it is one way, the dependent follows. Configs are
given by the environment alone (no file), as a container gives them. Bounded: a few seconds.
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass

from hypothesis import example, given, settings
from hypothesis import strategies as st

from scheduler_failover_controller.config import load_config
from scheduler_failover_controller.exceptions import ConfigError

NODES = ("n1", "n2", "n3")
NAMES = ("s1", "s2", "s3", "s4")
MAIN = "AIRFLOW__SCHEDULER_FAILOVER__"
SVC = "AIRFLOW__SCHEDULER_FAILOVER_SERVICE_"


@dataclass(frozen=True)
class Service:
    name: str
    nodes: tuple[str, ...] | None  # None: all of the cluster's
    colocate_with: str
    anti: tuple[str, ...]


@st.composite
def graphs(draw: st.DrawFn) -> tuple[tuple[str, ...], tuple[Service, ...]]:
    cluster = NODES[: draw(st.integers(1, 3))]
    names = NAMES[: draw(st.integers(1, 4))]
    others = ("scheduler", *names)
    services = []
    for name in names:
        subset = draw(st.sets(st.sampled_from(cluster), min_size=1))
        nodes = draw(st.sampled_from([None, tuple(n for n in cluster if n in subset)]))
        colocate = draw(st.sampled_from(("", "", *others)))
        anti = tuple(sorted(draw(st.sets(st.sampled_from(others), max_size=2))))
        services.append(Service(name, nodes, colocate, anti))
    return cluster, tuple(services)


def satisfiable(cluster: tuple[str, ...], services: tuple[Service, ...]) -> bool:
    """Whether colocation is a forest and some placement keeps every rule."""
    leader = {s.name: s.colocate_with for s in services if s.colocate_with}
    for name in leader:
        seen, at = {name}, leader[name]
        while at in leader:
            if at in seen:
                return False
            seen.add(at)
            at = leader[at]
        if at in seen:
            return False
    names = ["scheduler"] + [s.name for s in services]
    domains = [cluster] + [s.nodes or cluster for s in services]
    for placement in itertools.product(*domains):
        where = dict(zip(names, placement))
        if all(not s.colocate_with or where[s.name] == where[s.colocate_with] for s in services) and all(
            where[s.name] != where[o] for s in services for o in s.anti
        ):
            return True
    return False


def environment(state_dir: str, cluster: tuple[str, ...], services: tuple[Service, ...]) -> dict[str, str]:
    env = {
        "AIRFLOW_HOME": state_dir,
        MAIN + "SCHEDULER_NODES_IN_CLUSTER": ", ".join(cluster),
        MAIN + "CURRENT_HOST": cluster[0],
        MAIN + "METADATA_SERVICE_TYPE": "zookeeper",
        MAIN + "STATE_DIR": state_dir,
        MAIN + "SERVICES": ", ".join(s.name for s in services),
    }
    for s in services:
        prefix = f"{SVC}{s.name.upper()}__"
        env[prefix + "START_COMMAND"] = f"run-{s.name}"
        env[prefix + "PROCESS_MATCH"] = f"run-{s.name}"
        if s.nodes is not None:
            env[prefix + "NODES"] = ", ".join(s.nodes)
        if s.colocate_with:
            env[prefix + "COLOCATE_WITH"] = s.colocate_with
        if s.anti:
            env[prefix + "ANTI_COLOCATE_WITH"] = ", ".join(s.anti)
    return env


# Three groups kept pairwise apart on two nodes: no pair alone is stuck, the three together are.
TRIANGLE = (
    NODES[:2],
    (Service("s1", None, "", ("scheduler",)), Service("s2", None, "", ("s1", "scheduler"))),
)


@settings(max_examples=150, deadline=None)
@given(graphs())
@example(TRIANGLE)
@example((NODES[:2], (*TRIANGLE[1], Service("s3", NODES[:1], "s2", ()))))
def test_load_accepts_a_service_graph_iff_it_can_be_placed(graph: tuple[tuple[str, ...], tuple[Service, ...]]) -> None:
    cluster, services = graph
    with tempfile.TemporaryDirectory() as state_dir:
        env = environment(state_dir, cluster, services)
        try:
            config = load_config(None, env=env, hostname=lambda: cluster[0])
        except ConfigError as exc:
            assert "\n" not in str(exc)
            assert not satisfiable(cluster, services), f"refused a satisfiable graph: {exc}"
        else:
            assert satisfiable(cluster, services), "accepted a graph no placement satisfies"
            assert [s.name for s in config.service_specs] == [s.name for s in services]
