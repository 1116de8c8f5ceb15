"""The drop-in alert rules (deploy/monitoring/) checked and unit-tested by a real ``promtool``
(Debian's ``prometheus`` package, which scripts/setup.sh installs): missing, it is a skip locally
and a failure in CI."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import missing
from tests.process.harness import ROOT

MONITORING = ROOT / "deploy" / "monitoring"


@pytest.mark.parametrize(
    "args", [["check", "rules", "sfc-alerts.yml"], ["test", "rules", "sfc-alerts.test.yml"]], ids=["check", "test"]
)
def test_promtool_accepts_the_rules_and_their_tests_pass(args: list[str]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool (Debian's prometheus package)")
    done = subprocess.run([promtool, *args], cwd=MONITORING, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout, done.stdout
