"""Rolling upgrades in the lab (``make upgrade-lab``, as root; manual: a few minutes each).

A cluster of three hosts starts on a previous release (a commit of this repository in a
virtualenv of its own, tests/lab/releases.py), with the scheduler running. Each master in turn is
upgraded to the working tree as an operator would (stop its controller, switch its virtualenv,
start it), then each is downgraded back the same way. Asserted: never two schedulers (the lab's
50 ms observer), at most one span without a scheduler per master's step (its controller's
graceful hand-over when it ran the scheduler), and, with the first master switched and the
others not (on the way up and on the way down, so under an active of each release), every CLI
command of either release works against the mixed cluster.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import subprocess
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import MariaDB
from tests.lab.conftest import RESULTS, _labs
from tests.lab.network import Network
from tests.lab.releases import STARTING_POINTS, installed, working_tree
from tests.lab.scenarios import finish
from tests.lab.sites import MariaDBSite
from tests.lab.tools import METASTORE_IP, PYTHON
from tests.lab.upgrade import Step, UpgradeLab
from tests.lab.upgrade_cli import check_release

pytestmark = pytest.mark.manual

# Longer than the lab's 3 s lease: its ssh_timeout (0.6 s) is missed now and then by a loaded
# machine, failing an SSH start that a switchover then reports as failed. Nothing here waits for
# a lease to run out: a graceful hand-over takes a poll.
TIMING = {"lease_ttl": "8", "scheduler_start_timeout": "6"}
HOOK_PORT = 8787
# A webhook that answers every POST with 200: send-test-email of both releases has somewhere to go.
HOOK = (
    "import http.server, sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_POST(self):\n"
    "        self.rfile.read(int(self.headers.get('Content-Length') or 0))\n"
    "        self.send_response(200); self.end_headers()\n"
    "    def log_message(self, *a): pass\n"
    "http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()\n"
)


@contextlib.contextmanager
def webhook(net: Network) -> Iterator[str]:
    """The sink on the metastore host; ended by its pid, also when the test fails."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", net.meta_ns, PYTHON, "-c", HOOK, METASTORE_IP, str(HOOK_PORT)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://{METASTORE_IP}:{HOOK_PORT}/hook"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def upgrade_labs(
    request: pytest.FixtureRequest, lab_network: tuple[Network, MariaDB]
) -> Iterator[Callable[..., UpgradeLab]]:
    commit: str = request.param
    old, new = installed(commit), working_tree()
    site = MariaDBSite(lab_network[1], lab_network[0])
    with webhook(lab_network[0]) as hook:
        made = _labs(request, lab_network[0], site, STARTING_POINTS[commit])
        maker = next(made)

        def make() -> UpgradeLab:
            kind = functools.partial(UpgradeLab, old=old, new=new)
            lab = maker(config={"alert_webhook_url": hook, **TIMING}, kind=kind)
            assert isinstance(lab, UpgradeLab)
            return lab

        yield make
        with contextlib.suppress(StopIteration):
            next(made)  # its teardown: every lab closed, nothing left on the bridge


def _record(lab: UpgradeLab, steps: list[Step], note: str) -> None:
    for step in steps:
        RESULTS.append(
            {
                "scenario": f"upgrade {lab.old.name}: {step.host} -> {step.release}",
                "recovery": max(step.gaps, default=0.0),
                "bound": None,
                "two": 0.0,
                "none": sum(step.gaps),
                "pace": lab.observer.mean_interval(),
                "note": f"{len(step.gaps)} gap(s)",
            }
        )
    gaps = sorted(g for s in steps for g in s.gaps)
    print(
        f"upgrade from {lab.old.name} [{lab.node_control}]: {len(gaps)} of {len(steps)} steps moved the scheduler; "
        f"gap median {statistics.median(gaps or [0.0]):.2f} s, max {max(gaps, default=0.0):.2f} s; {note}"
    )


@pytest.mark.parametrize("upgrade_labs", list(STARTING_POINTS), indirect=True)
def test_rolling_upgrade_and_back(upgrade_labs: Callable[..., UpgradeLab]) -> None:
    lab = upgrade_labs()
    lab.boot_release()
    steps: list[Step] = []
    checked = []
    for release in (lab.new, lab.old):  # up, then down
        for i, host in enumerate(lab.hosts):
            steps.append(lab.replace(host, release))
            if i == 0:  # a mixed cluster: h1 switched, the others not
                checked += [check_release(lab, lab.new), check_release(lab, lab.old)]
    note = "; ".join(
        f"{c.release} CLI, {c.active} active: {len(c.ran)} run, --help only: {c.help_only}" for c in checked
    )
    _record(lab, steps, note)
    finish(lab, f"rolling upgrade from {lab.old.name} and back", note=note)
    config = lab.config()  # a lost host's bound, as the lab's (scenarios.takeover_bound), at these timings
    bound = config.lease_ttl + 2 * config.poll_frequency + config.ssh_timeout + config.scheduler_start_timeout
    for step in steps:
        assert len(step.gaps) <= 1, f"{step.host} -> {step.release}: {len(step.gaps)} gaps {step.gaps}"
        assert max(step.gaps, default=0.0) <= bound, f"{step.host} -> {step.release}: a gap of {step.gaps}"
