"""The lab's network: a bridge in a namespace of its own, and what a killed run left behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import uuid
from pathlib import Path

import psutil

from tests.conftest import MariaDB
from tests.lab.tools import (
    METASTORE_IP,
    sh,
)

# --- the network ------------------------------------------------------------------------------


RECORDS = Path("/run/sfc-lab")  # what each run created, so that a later run can sweep up after a killed one


def sweep_stale() -> list[str]:
    """Remove what a lab run that was killed (SIGKILL, timeout) left behind; return what went.

    Each run records, under /run/sfc-lab, its pid, its namespaces, its MariaDB and its temp
    directories. For a run that is gone: its namespaces' remaining processes are killed by pid,
    the namespaces deleted, its MariaDB (pid checked against its datadir) killed, its directories
    removed. Runs still alive are left alone, so concurrent runs never touch each other.
    """
    swept: list[str] = []
    for path in sorted(RECORDS.glob("*.json")) if RECORDS.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        try:
            alive = psutil.Process(record["owner"]).create_time() == record["owner_started"]
        except psutil.Error:
            alive = False
        if alive:
            continue
        for ns in record.get("namespaces", []):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)
            swept.append(f"namespace {ns}")
        server = record.get("mariadb")
        if server:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(server["pid"])
                if f"--datadir={server['base']}/data" in proc.cmdline():
                    proc.kill()
                    proc.wait(timeout=30)
                    swept.append(f"mariadbd {server['pid']}")
            record.setdefault("dirs", []).append(server["base"])
        for directory in record.get("dirs", []):
            shutil.rmtree(directory, ignore_errors=True)
            swept.append(directory)
        for cgroup in record.get("cgroups", []):  # emptied when its host's processes died
            with contextlib.suppress(OSError):
                os.rmdir(cgroup)
                swept.append(f"cgroup {cgroup}")
        path.unlink(missing_ok=True)
    return swept


class Network:
    """A bridge in a namespace of its own, and the metastore's namespace on it (198.18.0.2)."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex[:6]
        self.bridge_ns = f"sfcbr-{self.token}"
        self.meta_ns = f"sfcm-{self.token}"
        self.namespaces: list[str] = []
        self.dirs: list[str] = []
        self.mariadb: dict[str, object] | None = None
        self.cgroups: list[str] = []
        self.record = RECORDS / f"{self.token}.json"

    def _save(self) -> None:
        """Keep this run's record current (see sweep_stale)."""
        me = psutil.Process()
        data = {
            "owner": me.pid,
            "owner_started": me.create_time(),
            "namespaces": self.namespaces,
            "dirs": self.dirs,
            "mariadb": self.mariadb,
            "cgroups": self.cgroups,
        }
        RECORDS.mkdir(mode=0o700, exist_ok=True)
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.record)

    def keep_track(
        self,
        directory: Path | None = None,
        mariadb: MariaDB | None = None,
        done: bool = False,
        cgroup: Path | None = None,
    ) -> None:
        """Record a temp directory, a CPU cgroup or the MariaDB server of this run (``done``: it is gone again)."""
        for kept, path in ((self.dirs, directory), (self.cgroups, cgroup)):
            if path is None:
                continue
            if done:
                with contextlib.suppress(ValueError):
                    kept.remove(str(path))
            else:
                kept.append(str(path))
        if mariadb is not None:
            self.mariadb = None if done else {"pid": mariadb.pid, "base": str(mariadb.base)}
        self._save()

    def add_namespace(self, name: str) -> None:
        self.namespaces.append(name)
        self._save()  # before it exists: a run killed right after still has it on record
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def create(self) -> None:
        for what in sweep_stale():
            print(f"lab: removed what a killed run left: {what}", file=sys.stderr)
        self.add_namespace(self.bridge_ns)
        sh("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
        self.add_namespace(self.meta_ns)
        self.attach(self.meta_ns, METASTORE_IP, f"vm{self.token}")

    def attach(self, ns: str, address: str, port: str) -> None:
        """Connect namespace ``ns`` to the bridge: its eth0 gets ``address``, the bridge port is ``port``."""
        assert len(port) <= 15, port
        sh("ip", "link", "add", port, "netns", self.bridge_ns, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def set_port(self, port: str, up: bool) -> None:
        sh("ip", "-n", self.bridge_ns, "link", "set", port, "up" if up else "down")

    def delete_namespace(self, name: str, port: str | None = None) -> None:
        """Delete a namespace and cut it off the bridge first.

        ``ip netns del`` only drops the name: a namespace lives on while anything still refers
        to it, e.g. the orphaned TCP sockets of its killed processes that keep retransmitting to
        a peer that dropped their packets. Its eth0 would stay on the bridge with its address,
        and the next lab's host of that address would share it with a ghost (ARP answers from
        both). Deleting the bridge end of the veth pair deletes both ends at once.
        """
        if port is not None:
            sh("ip", "-n", self.bridge_ns, "link", "del", port, check=False)
        sh("ip", "netns", "del", name, check=False)
        if name in self.namespaces:
            self.namespaces.remove(name)
            self._save()

    def forget_neighbours(self) -> None:
        """A new host may reuse an old host's address with a new MAC: start from clean caches."""
        sh("ip", "-n", self.meta_ns, "neigh", "flush", "all", check=False)

    def ports(self) -> list[str]:
        """The bridge's ports (veth ends), e.g. to check that a lab left none behind."""
        out = sh("ip", "-n", self.bridge_ns, "-o", "link", "show", "master", "br0").stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]

    def close(self) -> None:
        for name in reversed(list(self.namespaces)):
            self.delete_namespace(name)
        self.record.unlink(missing_ok=True)
