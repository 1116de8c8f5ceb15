"""Real daemons run as services of the lab's controllers (tests/lab/test_lab_services.py).

A :class:`Daemon` is one singleton service beside the scheduler: the start command and process
match its ``[scheduler_failover_service_NAME]`` section gives the controllers (``{node}`` in both),
and a :class:`RootsObserver` that counts its process-tree roots on every host, by the node its
command line names. :func:`add_services` writes the services into every host's config.

With a checkout whose controllers do not run services yet (no service sections loaded), the test
plays the controller itself (:class:`ByHand`): it starts the daemon inside a host, restarts it in
place after a kill, and starts it elsewhere once the old one is gone, so that the daemons, the
faults and the counting still run for real.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
from dataclasses import dataclass, field

import psutil

from scheduler_failover_controller.matching import matches, split_title
from scheduler_failover_controller.process_tree import parent_lookup, root_pids
from tests.lab.harness import Lab
from tests.lab.hosts import Host
from tests.support.observer import Observer, Seen
from tests.support.waiting import wait_for


class RootsObserver(Observer):
    """Counts, every ``interval`` from the root namespace, the roots of the process trees whose
    command line runs ``words[node]`` (a child forked before it renames itself has a matching
    ancestor and does not count); each is attributed to the node its words name."""

    def __init__(self, hint: str, words: dict[str, list[str]], interval: float = 0.1) -> None:
        super().__init__(match=hint, interval=interval)
        self.hint = hint
        self.words = words

    def sample(self) -> list[Seen]:
        found: dict[int, str] = {}
        parents: dict[int, int] = {}
        # Fresh Process objects, not psutil.process_iter's: those are shared between threads, and
        # another observer's iteration would overwrite their ``info`` under this one (a process missed).
        for pid in psutil.pids():
            try:
                proc = psutil.Process(pid)
                argv = split_title(proc.cmdline())
                if self.hint not in argv:
                    continue
                ppid = proc.ppid()
            except psutil.Error:
                continue
            for node, words in self.words.items():
                if matches(argv, words):
                    found[pid] = node
                    parents[pid] = ppid
        tops = root_pids(found, parent_lookup(parents))
        return [Seen(node, pid) for pid, node in found.items() if pid in tops]


@dataclass
class Daemon:
    """One real singleton daemon as a service of the lab's controllers."""

    name: str
    start_command: str  # {node}: the node it starts on
    process_match: str  # {node}: the node whose daemon it is
    hint: str  # a word of every matching command line (the observer's quick filter)
    settings: dict[str, str] = field(default_factory=dict)  # more keys of its section

    def words(self, node: str) -> list[str]:
        return self.process_match.replace("{node}", node).split()

    def observer(self, nodes: list[str]) -> RootsObserver:
        return RootsObserver(self.hint, {node: self.words(node) for node in nodes})

    def section(self) -> str:
        keys = {"start_command": self.start_command, "process_match": self.process_match, **self.settings}
        return f"\n[scheduler_failover_service_{self.name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())


def add_services(lab: Lab, daemons: list[Daemon]) -> None:
    """Name the daemons in ``services`` and give each its section, in every host's config."""
    names = ", ".join(d.name for d in daemons)
    for host in lab.hosts:
        text = host.config.read_text()
        assert text.startswith("[scheduler_failover]\n"), f"{host.name}: unexpected config"
        head = "[scheduler_failover]\n"
        body = text[len(head) :]
        host.config.write_text(head + f"services = {names}\n" + body + "".join(d.section() for d in daemons))


def controlled(lab: Lab, name: str) -> bool:
    """Whether the controllers run the service ``name``, or the test plays the controller.

    ``SFC_LAB_SERVICES=hand`` or ``=controllers`` says which; by default the controllers do when
    this checkout loads the service's section and its daemon runs services (``daemon_services``)."""
    mode = os.environ.get("SFC_LAB_SERVICES", "")
    if mode in ("hand", "controllers"):
        return mode == "controllers"
    assert not mode, f"SFC_LAB_SERVICES must be hand or controllers, not {mode!r}"
    if importlib.util.find_spec("scheduler_failover_controller.daemon_services") is None:
        return False
    specs = getattr(lab.config(), "service_specs", ())
    return any(getattr(spec, "name", "") == name for spec in specs)


class ByHand:
    """The test in the controller's place for one daemon: start in a host, and nothing else."""

    def __init__(self, lab: Lab, daemon: Daemon) -> None:
        self.lab = lab
        self.daemon = daemon

    def start(self, host: Host) -> None:
        """Start the daemon inside ``host``, detached (re-parented to its PID 1), as a start command runs."""
        command = self.daemon.start_command.replace("{node}", host.name)
        log = host.dir / f"{self.daemon.name}-by-hand.log"
        subprocess.run(
            host.enter("/bin/sh", "-c", f"( {command} ) >> {log} 2>&1 < /dev/null &"),
            env=host.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=True,
            start_new_session=True,
        )

    def fence(self, seen: Seen) -> None:
        """What a leash does to a daemon cut off from the metastore: ends it (by pid, from the root namespace)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(seen.pid, signal.SIGKILL)
        wait_for(lambda: not psutil.pid_exists(seen.pid), 10, f"{self.daemon.name} {seen.pid} gone")
