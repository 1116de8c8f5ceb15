"""Chaos soak on the multi-host lab: seeded random faults, one after another, for a while (as root).

    .venv/bin/python benchmarks/soak.py [--metastore mariadb|postgresql|zookeeper] [--seconds 3600] [--seed 1]
                                        [--node-control self|ssh] [--services 0|1]

Three lab hosts (tests/lab/harness.py: own network/PID/UTS/mount namespaces, one controller
each, poll_frequency 0.5 s, lease_ttl 3 s; in ssh mode an sshd each, in self mode, the default,
none) around the metastore on 198.18.0.2, and
the 50 ms observer. Until ``--seconds`` have passed, a random fault (seeded: ``--seed`` replays
the same sequence of kinds, targets and durations) is injected, held for a random while, lifted,
and the cluster is given up to 60 s to become healthy again (every host up with its controller,
exactly one of each service, placed where it runs, no stray) before a short calm and the next fault:

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
  service_kill       SIGKILL of the running second service (with --services 1)

With ``--services 1`` (the default) a second service, ``standin``, runs beside the scheduler: a
stand-in daemon (tests/support/fake_scheduler.py under a cluster token of its own, so its own
process match) in a ``[scheduler_failover_service_standin]`` section of every host's config,
counted by an observer of its own. ``--services 0`` runs the scheduler alone, and draws the same
sequence of faults for a seed as before the second service existed.

Targets are drawn among the scheduler's host, the active controller's host, the second service's
host and any host. Every wait is bounded; the soak stops by itself (after at most ``--seconds``
plus one fault and its recovery window). It prints, for the seed and per service: seconds with
two (must be 0), seconds with none, availability, and per fault kind the count, the longest
settle (lift -> healthy) and each service's longest outage (a span without it during the fault's
window). Exit status: 1 if two of any service were ever seen at once, 2 if a fault's window ended
without the cluster healthy again, else 0.
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
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.soak_figures import SCHEDULER, ServiceTally, SoakResult, longest_outage  # noqa: E402
from tests.lab.daemons import Daemon, RootsObserver, add_services  # noqa: E402
from tests.lab.harness import Lab  # noqa: E402
from tests.lab.hosts import Host  # noqa: E402
from tests.lab.network import Network  # noqa: E402
from tests.lab.sites import LabMetastore, MariaDBSite, network_with_mariadb, postgresql_on, zookeeper_on  # noqa: E402
from tests.lab.tools import FAKE, PYTHON  # noqa: E402
from tests.support.observer import Observer  # noqa: E402

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
SERVICE_KINDS = ("service_kill",)  # faults aimed at the second service
SECOND = "standin"  # the second service's name


def kinds_for(node_control: str, services: int) -> tuple[str, ...]:
    """The fault kinds a soak draws from: no sshd freeze in self mode (no host runs an sshd), the
    second service's faults only when it runs (so a seed's sequence without it stays the same)."""
    kinds = tuple(k for k in KINDS if node_control == "ssh" or k != "sshd_freeze")
    return kinds + (SERVICE_KINDS if services else ())


def second_service(lab: Lab) -> Daemon:
    """The second service: a stand-in daemon with a process match of its own (its cluster token)."""
    cluster = f"{lab.token}-{SECOND}"
    return Daemon(
        SECOND,
        f"exec {PYTHON} {FAKE} --cluster {cluster} --node {{node}}",
        f"fake_scheduler.py --cluster {cluster} --node {{node}}",
        cluster,
        {"start_timeout": "3"},
    )


class Soak:
    """One lab and a seeded sequence of faults on it."""

    def __init__(
        self, lab: Lab, seed: int, log: Callable[[str], None], observers: dict[str, Observer] | None = None
    ) -> None:
        self.lab = lab
        self.rng = random.Random(seed)
        # every service's observer, the scheduler's (the lab's) first
        self.observers: dict[str, Observer] = {SCHEDULER: lab.observer, **(observers or {})}
        self.kinds = kinds_for(lab.node_control, len(self.observers) - 1)
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

    def service_host(self) -> Host | None:
        seen = self.observers[SECOND].one() if SECOND in self.observers else None
        return self.lab.host(seen.node) if seen else None

    def pick(self) -> Host:
        """A target: the scheduler's host, the active controller's host, the second service's host
        (when it runs) or any host."""
        choices = ("scheduler", "active", "any") + (("service",) if SECOND in self.observers else ())
        choice = self.rng.choice(choices)
        finders = {"scheduler": self.scheduler_host, "active": self.active_host, "service": self.service_host}
        found = finders[choice]() if choice in finders else None
        return found or self.rng.choice(self.lab.hosts)

    def hold(self, low: float = 1.0, high: float = 3.0) -> float:
        return self.rng.uniform(low, high) * TTL

    def healthy(self) -> bool:
        lab = self.lab
        if not all(h.alive and h.controller_running() for h in lab.hosts):
            return False
        if lab.observer.strays():
            return False
        for name, obs in self.observers.items():
            seen = obs.current()
            if len(seen) != 1:
                return False
            try:
                state = lab.store.for_service(name).read_state()
            except Exception:  # noqa: BLE001 - the store is still coming back
                return False
            if not (state.lease.valid and state.placement.valid and state.placement.node == seen[0].node):
                return False
        try:
            return len(lab.store.controllers()) >= len(lab.hosts)
        except Exception:  # noqa: BLE001 - the store is still coming back
            return False

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

    def service_kill(self) -> str:
        seen = self.observers[SECOND].one()
        if seen is None:
            return f"no {SECOND} to kill"
        with contextlib.suppress(ProcessLookupError):
            os.kill(seen.pid, signal.SIGKILL)
        return f"{SECOND} on {seen.node} killed"

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
        deadline = self.began + seconds
        for _ in range(int(seconds) + 1):  # bounded in count too: every fault takes more than a second
            if time.monotonic() >= deadline:
                break
            kind = self.rng.choice(self.kinds)
            stats = result.kinds[kind]
            marks = {name: ServiceTally.mark(obs) for name, obs in self.observers.items()}
            start = time.monotonic()
            what = getattr(self, kind)()
            lifted = time.monotonic()
            settle = self.wait_healthy(SETTLE_TIMEOUT)
            end = time.monotonic()
            stats.count += 1
            result.faults += 1
            at = f"t+{start - self.began:.0f}s {kind}: {what}"
            said = []
            for name, obs in self.observers.items():
                two = result.services[name].record(kind, obs, marks[name], start, end, at)
                said.append(f"{name} outage {longest_outage(obs.history, start, end):.2f}s")
                if two > 0:
                    said.append(f"TWO OF {name.upper()} {two:.2f}s")
            if settle is None:
                stats.unsettled += 1
                result.unsettled.append(f"{at}: not healthy {SETTLE_TIMEOUT:g}s after the lift")
                self.log(f"{at}: NOT HEALTHY after {SETTLE_TIMEOUT:g}s; repairing")
                self.repair()
            else:
                stats.longest_settle = max(stats.longest_settle, settle)
            self.log(
                f"{at}; held {lifted - start:.1f}s, {', '.join(said)}, "
                f"settled {'-' if settle is None else f'{settle:.2f}s'} after the lift"
            )
            time.sleep(self.rng.uniform(*CALM))


def run_soak(
    net: Network,
    site: LabMetastore,
    seconds: float,
    seed: int,
    log: Callable[[str], None] | None = None,
    node_control: str = "self",
    services: int = 1,
) -> SoakResult:
    """Boot a 3-host lab on ``site`` (with the second service if ``services``) and soak it for
    ``seconds``; the lab is torn down on return."""
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    lab = Lab(net, site, config={"node_control": node_control})
    observers: dict[str, Observer] = {}
    result = SoakResult(seed, site.kind, node_control, kinds_for(node_control, services), (SCHEDULER,))
    keep = False
    try:
        if services:
            daemon = second_service(lab)
            add_services(lab, [daemon])
            words = {h.name: daemon.words(h.name) for h in lab.hosts}
            observers[SECOND] = RootsObserver(daemon.hint, words, interval=lab.observer.interval)
            result = SoakResult(seed, site.kind, node_control, result.kind_names, (SCHEDULER, SECOND))
        for obs in observers.values():
            obs.start()  # from before the boot: two at once while it boots count too
        lab.boot()
        soak = Soak(lab, seed, say, observers)
        if soak.wait_healthy(SETTLE_TIMEOUT) is None:
            raise RuntimeError(f"the lab did not become healthy within {SETTLE_TIMEOUT:g}s of its boot")
        soak.began = time.monotonic()
        say(
            f"soak: seed {seed}, {site.kind}, node_control {node_control}, services {', '.join(result.services)}, "
            f"{seconds:g}s, lab {lab.token} in {lab.dir}"
        )
        soak.run(seconds, result)
        result.seconds = time.monotonic() - soak.began
    finally:
        every = {SCHEDULER: lab.observer, **observers}
        for name, obs in every.items():
            obs.stop()
            result.services[name].finish(obs)
        keep = result.exit_status != 0 or bool(os.environ.get("SFC_LAB_KEEP"))
        if keep:
            say(lab.report())
            for name, obs in observers.items():
                say(f"{name} observer: {obs.describe()}")
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
    parser.add_argument(
        "--services", type=int, choices=(0, 1), default=1, help="1: a second service beside the scheduler"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("the lab needs root (network, PID and UTS namespaces)")
    with soak_site(args.metastore) as (net, site):
        result = run_soak(net, site, args.seconds, args.seed, node_control=args.node_control, services=args.services)
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"settings: 3 lab hosts, node_control={args.node_control}, poll_frequency=0.5s lease_ttl=3s, "
        f"services: {', '.join(result.services)}; load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(result.table())
    return result.exit_status


if __name__ == "__main__":
    sys.exit(main())
