"""Chaos soak on the multi-host lab: seeded random faults, one after another, for a while (as root).

    .venv/bin/python benchmarks/soak.py [--metastore mariadb|postgresql|zookeeper] [--seconds 3600] [--seed 1]
                                        [--node-control self|ssh]

Three lab hosts (tests/lab/harness.py: own network/PID/UTS/mount namespaces, one controller
each, poll_frequency 0.5 s, lease_ttl 3 s; in ssh mode an sshd each, in self mode, the default,
none) around the metastore on 198.18.0.2, and
the 50 ms observer. Until ``--seconds`` have passed, a random fault (seeded: ``--seed`` replays
the same sequence of kinds, targets and durations) is injected, held for a random while, lifted,
and the cluster is given up to 60 s to become healthy again (every host up with its controller,
exactly one scheduler, placed where it runs, no stray) before a short calm and the next fault:

  scheduler_kill     SIGKILL of the running scheduler
  controller_kill    SIGKILL of a controller, kept down 0-2 leases, started again
  controller_stop    SIGSTOP of a controller for 1-3 leases, then SIGCONT
  host_crash         every process of a host killed at once (its PID 1), rebooted 0.5-2 leases later
  partition          a host's link down for 1-3 leases
  one_way            a host drops everything another host sends it, 1-3 leases
  sshd_freeze        SIGSTOP of every sshd of a host (listener and sessions), 1-3 leases (ssh mode)
  metastore_freeze   SIGSTOP of the metastore server (all of it), 0.5-2.5 leases
  metastore_restart  the metastore server stopped, down 0-1 lease, started again
  stray              a stand-in scheduler started by hand on a standby host
  cpu_starve         a host starved of CPU (busy loops at nice -20 in a 1-CPU cgroup), 1-3 leases

Targets are drawn among the scheduler's host, the active controller's host and any host. Every
wait is bounded; the soak stops by itself (after at most ``--seconds`` plus one fault and its
recovery window). It prints, for the seed: seconds with two schedulers (must be 0), seconds
with none, availability, and per fault kind the count, the longest outage (a span without a
scheduler during the fault's window) and the longest settle (lift -> healthy). Exit status: 1
if two schedulers were ever seen, 2 if a fault's window ended without the cluster healthy
again, else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.lab.harness import Lab  # noqa: E402
from tests.lab.hosts import Host  # noqa: E402
from tests.lab.network import Network  # noqa: E402
from tests.lab.sites import LabMetastore, MariaDBSite, network_with_mariadb, postgresql_on, zookeeper_on  # noqa: E402

TTL = 3.0  # lease_ttl of the lab's config (poll_frequency 0.5)
SETTLE_TIMEOUT = 60.0  # the longest a fault's window waits for the cluster to be healthy again
CALM = (1.0, 3.0)  # seconds of calm between two faults
KINDS = (
    "scheduler_kill",
    "controller_kill",
    "controller_stop",
    "host_crash",
    "partition",
    "one_way",
    "sshd_freeze",
    "metastore_freeze",
    "metastore_restart",
    "stray",
    "cpu_starve",
)
SELF_KINDS = tuple(k for k in KINDS if k != "sshd_freeze")  # self mode: no host runs an sshd


@dataclass
class KindStats:
    count: int = 0
    longest_outage: float = 0.0
    longest_settle: float = 0.0
    two: float = 0.0
    none: float = 0.0
    unsettled: int = 0


@dataclass
class SoakResult:
    seed: int
    metastore: str
    node_control: str = "self"
    seconds: float = 0.0
    faults: int = 0
    two: float = 0.0
    none: float = 0.0
    observed: float = 0.0  # seconds since the first scheduler appeared
    pace: float = 0.0
    kinds: dict[str, KindStats] = field(default_factory=lambda: {k: KindStats() for k in KINDS})
    doubled: list[str] = field(default_factory=list)  # what was seen, per fault that doubled
    unsettled: list[str] = field(default_factory=list)

    @property
    def availability(self) -> float:
        return 1.0 - self.none / self.observed if self.observed else 0.0

    @property
    def exit_status(self) -> int:
        if self.two > 0:
            return 1
        return 2 if self.unsettled else 0

    def table(self) -> str:
        lines = [
            f"seed {self.seed}, metastore {self.metastore}, node_control {self.node_control}: "
            f"{self.faults} faults in {self.seconds:.0f}s "
            f"(observer every {self.pace * 1e3:.0f} ms on average)",
            f"  seconds with two schedulers: {self.two:.2f}",
            f"  seconds with none:           {self.none:.2f}",
            f"  availability:                {100 * self.availability:.3f}%",
            "",
            f"  {'fault':<18} {'count':>5} {'longest outage s':>16} {'longest settle s':>16} "
            f"{'two s':>6} {'none s':>7} {'unsettled':>9}",
        ]
        for kind, k in self.kinds.items():
            if kind == "sshd_freeze" and self.node_control == "self":
                continue
            lines.append(
                f"  {kind:<18} {k.count:>5} {k.longest_outage:>16.2f} {k.longest_settle:>16.2f} "
                f"{k.two:>6.2f} {k.none:>7.2f} {k.unsettled:>9}"
            )
        lines += [f"  TWO SCHEDULERS: {d}" for d in self.doubled]
        lines += [f"  NOT HEALTHY AGAIN: {u}" for u in self.unsettled]
        return "\n".join(lines)


class Soak:
    """One lab and a seeded sequence of faults on it."""

    def __init__(self, lab: Lab, seed: int, log: Callable[[str], None]) -> None:
        self.lab = lab
        self.rng = random.Random(seed)
        self.kinds = SELF_KINDS if lab.node_control == "self" else KINDS
        self.log = log
        self.began = time.monotonic()

    # what the cluster looks like

    def scheduler_host(self) -> Host | None:
        seen = self.lab.observer.one()
        return self.lab.host(seen.node) if seen else None

    def active_host(self) -> Host | None:
        try:
            name = self.lab.active()
        except Exception:  # noqa: BLE001 - the store may be down
            return None
        return self.lab.host(name) if name else None

    def pick(self) -> Host:
        """A target: the scheduler's host, the active controller's host or any host."""
        choice = self.rng.choice(("scheduler", "active", "any"))
        found = self.scheduler_host() if choice == "scheduler" else self.active_host() if choice == "active" else None
        return found or self.rng.choice(self.lab.hosts)

    def hold(self, low: float = 1.0, high: float = 3.0) -> float:
        return self.rng.uniform(low, high) * TTL

    def healthy(self) -> bool:
        lab = self.lab
        if not all(h.alive and h.controller_running() for h in lab.hosts):
            return False
        seen = lab.observer.current()
        if len(seen) != 1 or lab.observer.strays():
            return False
        try:
            state = lab.state()
            registered = len(lab.store.controllers())
        except Exception:  # noqa: BLE001 - the store is still coming back
            return False
        return (
            state.lease.valid
            and state.placement.valid
            and state.placement.node == seen[0].node
            and registered >= len(lab.hosts)
        )

    def wait_healthy(self, timeout: float) -> float | None:
        """Seconds until healthy twice, 1 s apart; None if not within ``timeout``."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if self.healthy():
                time.sleep(1.0)
                if self.healthy():
                    return time.monotonic() - began - 1.0
            time.sleep(0.2)
        return None

    def repair(self) -> None:
        """After a window that did not settle: every host up, every controller running."""
        for host in self.lab.hosts:
            with contextlib.suppress(Exception):
                if not host.alive:
                    host.reboot()
                if not host.controller_running():
                    host.restart_controller()

    # the faults: each injects, holds, lifts (also when interrupted); returns what it did

    def scheduler_kill(self) -> str:
        seen = self.lab.observer.one()
        if seen is None:
            return "no scheduler to kill"
        with contextlib.suppress(ProcessLookupError):
            os.kill(seen.pid, signal.SIGKILL)
        return f"scheduler on {seen.node} killed"

    def controller_kill(self) -> str:
        host, down = self.pick(), self.rng.uniform(0, 2 * TTL)
        host.kill_controller()
        try:
            time.sleep(down)
        finally:
            host.restart_controller()
        return f"{host.name}'s controller killed, down {down:.1f}s"

    def controller_stop(self) -> str:
        host, held = self.pick(), self.hold()
        host.signal_controller(signal.SIGSTOP)
        try:
            time.sleep(held)
        finally:
            host.signal_controller(signal.SIGCONT)
        return f"{host.name}'s controller stopped {held:.1f}s"

    def host_crash(self) -> str:
        host, down = self.pick(), self.rng.uniform(0.5, 2) * TTL
        host.crash()
        try:
            time.sleep(down)
        finally:
            host.reboot()
            host.restart_controller()
        return f"{host.name} crashed, rebooted after {down:.1f}s"

    def partition(self) -> str:
        host, held = self.pick(), self.hold()
        self.lab.partition(host.name)
        try:
            time.sleep(held)
        finally:
            self.lab.heal(host.name)
        return f"{host.name} partitioned {held:.1f}s"

    def one_way(self) -> str:
        at, held = self.pick(), self.hold()
        source = self.rng.choice([h for h in self.lab.hosts if h is not at])
        self.lab.drop(at=at.name, source=source.name)
        try:
            time.sleep(held)
        finally:
            self.lab.drop(at=at.name, source=source.name, on=False)
        return f"{at.name} dropped what {source.name} sent it for {held:.1f}s"

    def sshd_freeze(self) -> str:
        host, held = self.pick(), self.hold()
        host.freeze_sshd()
        try:
            time.sleep(held)
        finally:
            host.thaw_sshd()
        return f"{host.name}'s sshd frozen {held:.1f}s"

    def metastore_freeze(self) -> str:
        held = self.hold(0.5, 2.5)
        self.lab.site.freeze()
        try:
            time.sleep(held)
        finally:
            self.lab.site.thaw()
        return f"metastore frozen {held:.1f}s"

    def metastore_restart(self) -> str:
        down = self.rng.uniform(0, TTL)
        self.lab.site.restart(down)
        return f"metastore restarted, down {down:.1f}s"

    def stray(self) -> str:
        where = self.scheduler_host()
        host = self.rng.choice([h for h in self.lab.hosts if h is not where])
        host.spawn_scheduler(stray=True)
        return f"stray scheduler started on {host.name}"

    def cpu_starve(self) -> str:
        host, held = self.pick(), self.hold()
        with host.starved(seconds=held + 5):
            time.sleep(held)
        return f"{host.name} starved of CPU {held:.1f}s"

    # the loop

    def run(self, seconds: float, result: SoakResult) -> None:
        obs = self.lab.observer
        deadline = self.began + seconds
        for _ in range(int(seconds) + 1):  # bounded in count too: every fault takes more than a second
            if time.monotonic() >= deadline:
                break
            kind = self.rng.choice(self.kinds)
            stats = result.kinds[kind]
            two0, none0, start = obs.seconds_two_or_more, obs.seconds_none, time.monotonic()
            what = getattr(self, kind)()
            lifted = time.monotonic()
            settle = self.wait_healthy(SETTLE_TIMEOUT)
            end = time.monotonic()
            outage = longest_outage(obs.history, start, end)
            stats.count += 1
            result.faults += 1
            stats.longest_outage = max(stats.longest_outage, outage)
            stats.two += obs.seconds_two_or_more - two0
            stats.none += obs.seconds_none - none0
            at = f"t+{start - self.began:.0f}s {kind}: {what}"
            if obs.seconds_two_or_more > two0:
                seen = [f"+{t - start:.2f}s {[s.node for s in real]}" for t, real in obs.doubled if t >= start]
                result.doubled.append(f"{at}: {seen[:5]}")
            if settle is None:
                stats.unsettled += 1
                result.unsettled.append(f"{at}: not healthy {SETTLE_TIMEOUT:g}s after the lift")
                self.log(f"{at}: NOT HEALTHY after {SETTLE_TIMEOUT:g}s; repairing")
                self.repair()
            else:
                stats.longest_settle = max(stats.longest_settle, settle)
            self.log(
                f"{at}; held {lifted - start:.1f}s, outage {outage:.2f}s, "
                f"settled {'-' if settle is None else f'{settle:.2f}s'} after the lift"
                + (f", TWO SCHEDULERS {obs.seconds_two_or_more - two0:.2f}s" if obs.seconds_two_or_more > two0 else "")
            )
            time.sleep(self.rng.uniform(*CALM))


def longest_outage(
    history: Sequence[tuple[float, tuple[object, ...], tuple[object, ...]]], start: float, end: float
) -> float:
    """The longest span without a scheduler that overlaps [start, end] (from the observer's changes)."""
    longest, empty_since = 0.0, None
    for t, real, _ in history:
        if t > end and empty_since is None:
            break
        if not real and empty_since is None:
            empty_since = t
        elif real and empty_since is not None:
            if t >= start:
                longest = max(longest, t - max(empty_since, start))
            empty_since = None
            if t > end:
                break
    if empty_since is not None:
        longest = max(longest, end - max(empty_since, start))
    return longest


def run_soak(
    net: Network,
    site: LabMetastore,
    seconds: float,
    seed: int,
    log: Callable[[str], None] | None = None,
    node_control: str = "self",
) -> SoakResult:
    """Boot a 3-host lab on ``site`` and soak it for ``seconds``; the lab is torn down on return."""
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    result = SoakResult(seed, site.kind, node_control)
    lab = Lab(net, site, config={"node_control": node_control})
    keep = False
    try:
        lab.boot()
        soak = Soak(lab, seed, say)
        say(f"soak: seed {seed}, {site.kind}, node_control {node_control}, {seconds:g}s, lab {lab.token} in {lab.dir}")
        soak.run(seconds, result)
        result.seconds = time.monotonic() - soak.began
    finally:
        obs = lab.observer
        obs.stop()
        result.two, result.none, result.pace = obs.seconds_two_or_more, obs.seconds_none, obs.mean_interval()
        first = next((t for t, real, _ in obs.history if real), None)
        result.observed = (obs.stopped - first) if first is not None else 0.0
        keep = result.exit_status != 0 or bool(os.environ.get("SFC_LAB_KEEP"))
        if keep:
            say(lab.report())
            say(f"soak: logs kept in {lab.dir}")
        lab.close(keep=keep)
    return result


@contextlib.contextmanager
def soak_site(metastore: str) -> Iterator[tuple[Network, LabMetastore]]:
    """The lab network and the chosen metastore on it; all removed on exit."""
    with contextlib.ExitStack() as stack:
        net, db = stack.enter_context(network_with_mariadb())
        if metastore == "zookeeper":
            site: LabMetastore = stack.enter_context(zookeeper_on(net))
        elif metastore == "postgresql":
            site = stack.enter_context(postgresql_on(net))
        else:
            site = MariaDBSite(db, net)
        yield net, site


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metastore", choices=("mariadb", "postgresql", "zookeeper"), default="mariadb")
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--node-control", choices=("self", "ssh"), default="self")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("the lab needs root (network, PID and UTS namespaces)")
    with soak_site(args.metastore) as (net, site):
        result = run_soak(net, site, args.seconds, args.seed, node_control=args.node_control)
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"settings: 3 lab hosts, node_control={args.node_control}, poll_frequency=0.5s lease_ttl=3s")
    print(result.table())
    return result.exit_status


if __name__ == "__main__":
    sys.exit(main())
