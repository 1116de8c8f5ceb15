"""deploy/monitoring/: every metric its alert rules and its dashboard use is one the controller's
/metrics endpoint really exports (read from the endpoint's own exposition, on fakes)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from scheduler_failover_controller.metastore.events import EventKind
from scheduler_failover_controller.metrics import Metrics

from .fakes import Cluster

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
# Metric names in PromQL: ours (sfc_) and the process collector's; `up` is Prometheus's own.
METRIC = re.compile(r"\b((?:sfc|process)_[a-z_]+)\b")


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((MONITORING / "sfc-alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((MONITORING / "sfc-dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


@pytest.fixture
def exported(cluster: Cluster) -> set[str]:
    """The sample names a controller's endpoint serves, with every family holding a sample."""
    c1 = cluster.controller("n1")
    c1.run_cycle()
    c1.hooks.emit(EventKind.FENCE, "stopped", node="n1")
    metrics = Metrics(c1)
    metrics.observe_cycle(0.1)
    _type, body = metrics.exposition()
    return {s.name for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def test_the_rules_cover_every_alert_the_issue_names() -> None:
    names = {rule["alert"] for rule in _rules()}
    assert names == {
        "SfcNoScheduler",
        "SfcTwoControllersActive",
        "SfcLeaseFlapping",
        "SfcSelfFence",
        "SfcNodeUnknown",
        "SfcSchedulerRestartLoop",
        "SfcControllerDown",
        "SfcControllerStuck",
    }
    tests = yaml.safe_load((MONITORING / "sfc-alerts.test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert tested == names


def test_every_metric_the_rules_use_is_exported(exported: set[str]) -> None:
    exprs = [rule["expr"] for rule in _rules()]
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert "sfc_scheduler_running" in used and "sfc_events_total" in used
    assert used - exported == set(), sorted(exported)


def test_every_metric_the_dashboard_uses_is_exported(exported: set[str]) -> None:
    used = {name for expr in _dashboard_exprs() for name in METRIC.findall(expr)}
    assert "sfc_cycle_duration_seconds_bucket" in used
    assert used - exported == set(), sorted(exported)
