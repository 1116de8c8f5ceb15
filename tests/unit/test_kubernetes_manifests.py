"""The Kubernetes example (examples/kubernetes/) against the Kubernetes schemas, and what it must keep.

There is no Kubernetes cluster here: ``kubernetes-validate`` bundles the API's JSON schemas, and
strict mode rejects a field the API does not know (a typo would be dropped by a real API server
without a word). The checks after it are the ones the README promises: a pod per master, a
liveness exec probe on the controller, a grace period longer than the stop timeout, and a
PodDisruptionBudget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"  # an API version current clusters serve; PodDisruptionBudget is policy/v1


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


def by_kind(kind: str) -> dict[str, Any]:
    (doc,) = [d for _, d in documents() if d["kind"] == kind]
    return doc


@pytest.mark.parametrize(("name", "doc"), documents(), ids=[n for n, _ in documents()])
def test_manifest_is_valid_for_the_kubernetes_api(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_rejects_an_unknown_field() -> None:
    doc = by_kind("StatefulSet")
    broken = {**doc, "spec": {**doc["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_one_pod_per_master_with_a_liveness_probe_and_a_long_grace_period() -> None:
    masters = by_kind("StatefulSet")
    config = by_kind("ConfigMap")["data"]
    nodes = config["AIRFLOW__SCHEDULER_FAILOVER__SCHEDULER_NODES_IN_CLUSTER"].split(",")
    name = masters["metadata"]["name"]
    assert nodes == [f"{name}-{i}" for i in range(masters["spec"]["replicas"])]
    assert config["AIRFLOW__SCHEDULER_FAILOVER__NODE_CONTROL"] == "self"
    pod = masters["spec"]["template"]["spec"]
    (controller,) = [c for c in pod["containers"] if c["args"] == ["controller"]]
    assert controller["livenessProbe"]["exec"]["command"] == ["sfc-entrypoint", "alive"]
    current = {e["name"]: e for e in controller["env"]}["AIRFLOW__SCHEDULER_FAILOVER__CURRENT_HOST"]
    assert current["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    stop = float(config["AIRFLOW__SCHEDULER_FAILOVER__SCHEDULER_STOP_TIMEOUT"])
    poll = float(config["AIRFLOW__SCHEDULER_FAILOVER__POLL_FREQUENCY"])
    assert pod["terminationGracePeriodSeconds"] > stop + poll
    budget = by_kind("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"] == masters["spec"]["selector"]["matchLabels"]
    assert budget["spec"]["maxUnavailable"] == 1


def test_no_secret_in_the_config_map() -> None:
    config = by_kind("ConfigMap")["data"]
    secret_keys = set(by_kind("Secret")["stringData"])
    assert not secret_keys & set(config)
    assert not [k for k in config if "CONN" in k or "KEY" in k or "SECRET" in k or "PASSWORD" in k]
