"""The compose example (examples/compose/docker-compose.yml) run for real on the lab's dockerd.

:class:`ComposeLab` runs the example file as it is, with one override file of the lab's own: the
project's network is ``internal`` (it reaches nothing but its members and the host's end of the
bridge), the controllers get short lab timings, and the ledger DAG runs every few seconds. It
reads the ledger from the ``shared`` volume's directory on the host, so that a paused or
disconnected master does not stop the reading.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.containers.dockerd import PrivateDockerd
from tests.containers.observer import ContainerObserver
from tests.lab.airflow_records import LedgerEntry, read_ledger
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "examples" / "compose" / "docker-compose.yml"
COMPOSE = "/usr/bin/docker-compose"
MASTERS = ("master1", "master2", "master3")
LEDGER_INTERVAL = 5.0
LEDGER = "/opt/airflow/shared/ledger"
# The lab's controller timings: a renewal lands before the leash starts stopping
# (poll 1 + 2 x metastore_timeout 1 + stop 5 + margin <= lease_ttl 10).
TIMINGS = {
    "POLL_FREQUENCY": "1",
    "LEASE_TTL": "10",
    "METASTORE_TIMEOUT": "1",
    "SCHEDULER_START_TIMEOUT": "90",
    "SCHEDULER_STOP_TIMEOUT": "5",
}


@dataclass
class ComposeLab:
    """One compose project of the example on ``dockerd``; :meth:`up`, then :meth:`down` in a finally."""

    dockerd: PrivateDockerd
    masters: tuple[str, ...] = MASTERS
    project: str = field(default_factory=lambda: f"sfclab{secrets.token_hex(3)}")
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sfc-compose-")))
    observer: ContainerObserver | None = None
    thawed: set[int] = field(default_factory=set)  # schedulers of a paused master, unpaused since

    @property
    def services(self) -> list[str]:
        """The services this lab starts: PostgreSQL, the migration, and each master's three."""
        found = ["postgres", "migrate"]
        for master in self.masters:
            found += [master, f"{master}-dag-processor", f"{master}-api-server"]
        return found

    def override(self) -> dict[str, object]:
        env = {f"AIRFLOW__SCHEDULER_FAILOVER__{k}": v for k, v in TIMINGS.items()}
        env["AIRFLOW__SCHEDULER_FAILOVER__SCHEDULER_NODES_IN_CLUSTER"] = ",".join(self.masters)
        env["SFC_LEDGER_INTERVAL"] = f"{LEDGER_INTERVAL:g}"
        env["AIRFLOW__SCHEDULER_FAILOVER__AIRFLOW_SCHEDULER_START_COMMAND"] = (
            f"exec env SFC_LEDGER={LEDGER} SFC_LEDGER_INTERVAL={LEDGER_INTERVAL:g} airflow scheduler"
        )
        env["AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC"] = "2"
        env["AIRFLOW__CORE__PARALLELISM"] = "4"
        env["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"] = "10"
        airflow = [s for s in self.services if s != "postgres"]
        return {
            "networks": {"default": {"internal": True}},
            "services": {name: {"environment": env} for name in airflow},
        }

    def compose(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        override = self.work / "lab.override.yml"
        if not override.exists():
            override.write_text(json.dumps(self.override(), indent=1))  # JSON is YAML
        argv = [COMPOSE, "-p", self.project, "-f", str(COMPOSE_FILE), "-f", str(override), "--ansi", "never", *args]
        result = subprocess.run(
            argv, env=self.dockerd.env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} exited {result.returncode}: {result.stderr[-3000:]}")
        return result.stdout

    def container(self, service: str) -> str:
        """The container name of ``service`` (compose's ``<project>_<service>_1``)."""
        return f"{self.project}_{service}_1"

    @property
    def network(self) -> str:
        return f"{self.project}_default"

    def up(self, timeout: float = 600) -> float:
        """Starts the services (migration first, by the file's depends_on); returns the seconds it took."""
        began = time.monotonic()
        try:
            self.compose("up", "-d", "--no-build", *self.services, timeout=timeout)
        except AssertionError as exc:
            logs = "".join(f"\n--- {s}:\n{self.logs(s, 25)}" for s in ("postgres", "migrate"))
            raise AssertionError(f"{exc}{logs}") from None
        return time.monotonic() - began

    def down(self) -> None:
        """Removes the project's containers, network and volumes (bounded: 30 s grace per container)."""
        self.compose("down", "-v", "--remove-orphans", "-t", "30", timeout=300, check=False)

    def logs(self, service: str, lines: int = 60) -> str:
        return self.dockerd.docker("logs", "--tail", str(lines), self.container(service), check=False, timeout=30)

    # --- the ledger

    @property
    def ledger(self) -> Path:
        point = self.dockerd.docker("volume", "inspect", "--format", "{{.Mountpoint}}", f"{self.project}_shared")
        return Path(point) / "ledger"

    def entries(self) -> list[LedgerEntry]:
        path = self.ledger
        return read_ledger(path) if path.exists() else []

    def wait_run_after(self, since: float, timeout: float) -> LedgerEntry:
        """The first ledger entry written after wall-clock ``since`` (waits for it, bounded)."""
        got: list[LedgerEntry] = []

        def ran() -> bool:
            got[:] = [e for e in self.entries() if e.time > since]
            return bool(got)

        wait_for(ran, timeout, f"a DAG run after {time.strftime('%H:%M:%S', time.gmtime(since))} UTC", interval=0.5)
        return min(got, key=lambda e: e.time)

    def executed_twice(self) -> list[tuple[str, int]]:
        """(run_id, try) pairs the ledger holds more than once: a task try run twice."""
        seen: dict[tuple[str, int], int] = {}
        for e in self.entries():
            seen[(e.run_id, e.try_number)] = seen.get((e.run_id, e.try_number), 0) + 1
        return sorted(k for k, n in seen.items() if n > 1)

    def cleanup(self) -> None:
        for path in sorted(self.work.glob("*")):
            path.unlink()
        os.rmdir(self.work)
