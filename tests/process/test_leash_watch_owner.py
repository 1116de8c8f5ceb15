"""A watching leash (its start command handed the scheduler to e.g. systemd) watches and stops
only the node's processes that count: those of the expected user, not a look-alike of another."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import psutil
import pytest

from tests.process.test_leash import FAKE, PY, Lab, gone
from tests.support.waiting import holds_for, wait_until

pytestmark = pytest.mark.process


def test_a_watching_leash_stops_the_expected_users_scheduler_and_not_a_look_alike(lab: Lab) -> None:
    """The handed-off scheduler runs as this user, a look-alike with the same command line as
    ``nobody``: at the deadline the leash stops the first, and leaves the other alone."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv")
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else PY  # one nobody may run
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
    other = lab.spawn([*as_nobody, python, str(FAKE), "--cluster", lab.token, "--node", "n1"])
    unit = lab.spawn([PY, str(FAKE), "--cluster", lab.token, "--node", "n1"])
    wait_until(lambda: len(lab.schedulers()) == 2, 10, "both schedulers")
    spec = lab.spec("true", deadline_in=5.0, stop_timeout=1.0, user=str(os.geteuid()))
    leash = lab.leash(spec)
    wait_until(lambda: "watching the node's schedulers" in lab.log(), 8, f"the hand-off\n{lab.log()}")
    wait_until(lambda: gone([psutil.Process(unit.pid)]), spec.deadline + 3 - time.monotonic(), "the scheduler")
    assert leash.wait(spec.deadline + 5 - time.monotonic()) == 0, lab.log()
    holds_for(lambda: other.poll() is None, 1.0, f"nobody's look-alike to live on\n{lab.log()}")
    assert "not permitted" not in lab.log(), lab.log()
