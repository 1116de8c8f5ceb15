"""Every CLI command of a release, run against a cluster of mixed releases (the upgrade lab).

Each command its ``--help`` lists is run as an operator would, from a host that does not run the
scheduler (``kill-local`` and ``probe`` act on their own host), and must exit 0 with output that
parses: JSON for ``--json``, a non-empty text without a traceback otherwise. ``switchover`` must
report the outcome the active controller recorded (never "no outcome recorded") and leave the
scheduler on its target; ``pause`` must show in ``status`` and ``resume`` lift it. A command this
module has no plan for is run with ``--help`` only and named in the result, so a new command is
seen, not silently skipped.
"""

from __future__ import annotations

import configparser
import json
import subprocess
from dataclasses import dataclass, field
from typing import Any

from tests.lab.releases import Release
from tests.lab.upgrade import UpgradeHost, UpgradeLab
from tests.support.waiting import wait_for

# Commands not run against the live cluster, and why.
SKIPPED = {
    "start": "the daemon itself: every step of the upgrade starts it",
    "clear-metadata": "wipes the live cluster's lease, placement and history (no operator runs it on a live cluster)",
}
# Commands run with these argument lists, each on its own (more in ``check_release``).
PLAIN: dict[str, list[list[str]]] = {
    "version": [[]],
    "get-current-host": [[]],
    "test-connection": [[]],
    "probe": [[], ["--json"]],
    "kill-local": [[]],
    "is-scheduler-running": [[], ["--json"]],
    "metadata": [[], ["--json"]],
    "status": [[], ["--json"]],
    "history": [[], ["--json"]],
    "send-test-email": [[]],
}
# test-connection starts the project on every node over SSH (a Python start-up), within ssh_timeout:
# the lab's is 0.6 s (lease 3 s), which a loaded machine misses. An operator's call may take the
# most the timing rules allow (below lease_ttl - renewal interval = 2.5 s).
ENV = {"test-connection": {"AIRFLOW__SCHEDULER_FAILOVER__SSH_TIMEOUT": "2.4"}}
SEQUENCED = ("pause", "resume", "node-control", "drain", "undrain", "switchover", "init")


@dataclass
class Checked:
    """What one release's commands did: the commands run, and those only asked for ``--help``."""

    release: str
    active: str  # the release of the active controller meanwhile
    ran: list[str] = field(default_factory=list)
    help_only: list[str] = field(default_factory=list)


def _ok(done: subprocess.CompletedProcess[str], what: str, as_json: bool = False) -> Any:
    out = f"{what}: exit {done.returncode}\nstdout: {done.stdout[-1500:]}\nstderr: {done.stderr[-1500:]}"
    assert done.returncode == 0, out
    assert "Traceback" not in done.stdout + done.stderr, out
    if as_json:
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise AssertionError(f"{what}: not JSON\n{out}") from None
    assert done.stdout.strip(), f"{what}: printed nothing\n{out}"
    return done.stdout


def _where(lab: UpgradeLab, release: Release) -> UpgradeHost:
    """A host that does not run the scheduler, running ``release`` if one does."""
    running = {s.node for s in lab.observer.current()}
    free = [h for h in lab.hosts if h.name not in running]
    assert free, "every host runs a scheduler"
    return next((h for h in free if h.release == release), free[0])


def check_release(lab: UpgradeLab, release: Release) -> Checked:
    """Run every command of ``release`` against the lab's (mixed) cluster; fail at the first that does not work."""
    active = (lab.status() or {}).get("active_controller")
    checked = Checked(release.name, next((h.release.name for h in lab.hosts if h.name == active), "none"))
    commands = [c.replace("_", "-") for c in release.commands]
    for command in commands:
        if command in SKIPPED or command in SEQUENCED:
            continue
        host = _where(lab, release)
        if command not in PLAIN:
            _ok(host.cli(release, command, "--help"), f"{release.name} {command} --help")
            checked.help_only.append(command)
            continue
        for args in PLAIN[command]:
            what = f"{release.name} {command} {' '.join(args)} on {host.name}"
            found = _ok(host.cli(release, command, *args, env=ENV.get(command)), what, as_json="--json" in args)
            if command == "get-current-host":
                assert found.strip() == host.name, f"{what}: {found!r}"
            if command == "status" and args:
                assert found["active_controller"] and found["scheduler_node"], f"{what}: {found}"
            checked.ran.append(f"{command} {' '.join(args)}".strip())
    host = _where(lab, release)
    # pause, (node-control,) resume: each shows in status.
    _ok(host.cli(release, "pause"), f"{release.name} pause")
    assert (lab.status(host) or {}).get("paused") is True, "paused, but status does not say so"
    checked.ran.append("pause")
    if "node-control" in commands:  # the cluster's own value again: refused unless paused
        _ok(host.cli(release, "node-control", lab.node_control), f"{release.name} node-control")
        checked.ran.append("node-control")
    _ok(host.cli(release, "resume"), f"{release.name} resume")
    assert (lab.status(host) or {}).get("paused") is False, "resumed, but status says paused"
    checked.ran.append("resume")
    if "drain" in commands and "undrain" in commands:  # a node that runs no scheduler: nothing moves
        spare = next(h.name for h in lab.hosts if h.name not in {s.node for s in lab.observer.current()})
        _ok(host.cli(release, "drain", spare), f"{release.name} drain {spare}")
        _ok(host.cli(release, "undrain", spare), f"{release.name} undrain {spare}")
        checked.ran += ["drain", "undrain"]
    # init writes a new config file where it is told to; it must parse as one.
    written = host.dir / f"init-{release.name}.cfg"
    written.unlink(missing_ok=True)  # from the check on the way up (init refuses to overwrite)
    _ok(host.cli(release, "init", config=str(written)), f"{release.name} init")
    parser = configparser.RawConfigParser()
    parser.read_string(written.read_text())
    assert parser.has_section("scheduler_failover"), f"{release.name} init wrote no [scheduler_failover]"
    checked.ran.append("init")
    # switchover, to a host that does not run the scheduler, from a host that does not either.
    (now,) = lab.observer.current()
    target = next(h.name for h in lab.hosts if h.name != now.node)
    host = _where(lab, release)
    asked = f"{release.name} switchover to {target}"
    said = _ok(host.cli(release, "switchover", "--to", target, "--wait", "30"), asked)
    assert "no outcome recorded" not in said, f"{release.name} switchover to {target}: the outcome was lost: {said}"
    wait_for(lambda: lab.settled() and lab.observer.current()[0].node == target, 30, f"the scheduler on {target}")
    checked.ran.append("switchover")
    left = [c for c in commands if c not in SKIPPED and c not in checked.ran and c not in checked.help_only]
    assert not [c for c in left if c not in SEQUENCED], f"{release.name}: commands not run: {left}"
    return checked
