"""A real Airflow triggerer as a service beside the real Airflow scheduler (tests/lab/test_lab_services.py).

On top of :class:`tests.lab.airflow_harness.AirflowLab`: every host's Airflow also gets the deferral
DAG (examples/dags/sfc_deferral_dag.py) and its trigger module (examples/dags/sfc_lab_triggers.py,
importable by the triggerer: the dags folder is on ``PYTHONPATH``), a trigger ledger every host
writes, and a ``[triggerer]`` section that hands a dead triggerer's triggers on within 10 s. The
triggerer is the service ``triggerer``: ``airflow triggerer --pid <base>/<node>/triggerer.pid``
(the match: the ``--pid`` path names the node).

The ledger's lines are ``kind key host pid time``: ``defer`` (the task deferred), ``fire`` (the
trigger fired, in the triggerer process ``pid``), ``resume`` (the task resumed with the event).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

from tests.lab.airflow_harness import AirflowLab
from tests.lab.airflow_settings import Flavor
from tests.lab.daemons import Daemon, add_services
from tests.lab.harness import Lab
from tests.lab.network import Network
from tests.lab.sites import LabMetastore
from tests.lab.tools import ROOT

DEFERRAL_DAG = ROOT / "examples" / "dags" / "sfc_deferral_dag.py"
TRIGGERS = ROOT / "examples" / "dags" / "sfc_lab_triggers.py"
TRIGGERER_CFG = "\n[triggerer]\njob_heartbeat_sec = 2\ntriggerer_health_check_threshold = 10\n"


@dataclass(frozen=True)
class Line:
    """One line of the trigger ledger."""

    kind: str
    key: str
    host: str
    pid: int
    time: float


class TriggererLab(AirflowLab):
    """An AirflowLab whose controllers also keep one Airflow triggerer (on ``triggerer_nodes``)."""

    triggerer_nodes: tuple[str, ...] = ()  # the nodes the triggerer may run on (all: empty)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.trigger_ledger = self.base / "trigger-ledger"
        self.trigger_ledger.touch(mode=0o666)
        os.chmod(self.trigger_ledger, 0o666)
        for source in (DEFERRAL_DAG, TRIGGERS):
            shutil.copy(source, self.dags / source.name)

    def env_words(self, node: str) -> list[str]:
        return [
            *super().env_words(node),
            f"SFC_TRIGGER_LEDGER={self.trigger_ledger}",
            "SFC_DEFERRAL_INTERVAL=10",
            f"PYTHONPATH={self.dags}",
        ]

    def triggerer(self) -> Daemon:
        pid = f"{self.base}/{{node}}/triggerer.pid"
        env = " ".join(shlex.quote(w) for w in self.env_words("{node}"))
        settings = {"start_timeout": "30"}  # it stops as the scheduler does (5 s)
        if self.triggerer_nodes:
            settings["nodes"] = ", ".join(self.triggerer_nodes)
        return Daemon(
            "triggerer",
            f"exec {env} {self.flavor.airflow} triggerer --pid {pid}",
            f"airflow triggerer --pid {pid}",
            "triggerer",
            settings,
        )

    def make_lab(self) -> Lab:
        lab = super().make_lab()
        add_services(lab, [self.triggerer()])
        for host in lab.hosts:
            cfg = self.node_dir(host.name) / "airflow.cfg"
            cfg.write_text(cfg.read_text() + TRIGGERER_CFG)
        return lab

    def ledger_lines(self) -> list[Line]:
        found = []
        for text in self.trigger_ledger.read_text().splitlines():
            parts = text.split()
            if len(parts) == 5:
                found.append(Line(parts[0], parts[1], parts[2], int(parts[3]), float(parts[4])))
        return found

    def twice(self, kind: str, leave_out: list[Line] | None = None) -> list[tuple[str, list[str]]]:
        """Keys with more than one ``kind`` line (but those in ``leave_out``), with the ``host:pid`` of each."""
        seen: dict[str, list[str]] = {}
        for line in self.ledger_lines():
            if line.kind == kind and line not in (leave_out or []):
                seen.setdefault(line.key, []).append(f"{line.host}:{line.pid}")
        return sorted((k, v) for k, v in seen.items() if len(v) > 1)


@contextlib.contextmanager
def triggerer_lab(
    net: Network, site: LabMetastore, flavor: Flavor, nodes: tuple[str, ...], size: int = 3
) -> Iterator[TriggererLab]:
    """A TriggererLab (migrated, not booted) in self mode, torn down on exit; its logs printed if the block raised."""
    alab = TriggererLab(net, site, flavor, size=size, interval=10.0, node_control="self")
    alab.triggerer_nodes = nodes
    keep = os.environ.get("SFC_LAB_KEEP", "") == "1"
    try:
        alab.make_lab()
        alab.migrate()
        yield alab
    except BaseException:
        alab.close(failed=True, keep=keep)
        raise
    alab.close(keep=keep)
