"""Two controllers on one lab behind one interface: this project's, and the 2016 one (v1.0.9).

Both run on three lab hosts (tests/lab/harness.py) around MariaDB on 198.18.0.2, with the same
stand-in scheduler (tests/support/fake_scheduler.py) watched by the lab's 50 ms observer. After
``boot`` the scheduler runs on h1 and h1's controller is the active one, for either controller.

The 2016 controller is run from a checkout the user points at, by a Python that has Airflow (its
code imports Airflow's configuration and email backend), with that checkout first on
PYTHONPATH (its package has this project's name). Each host gets what the 2016 controller expects
of a master: ``$AIRFLOW_HOME/airflow.cfg`` with its ``[scheduler_failover]`` section and
``[core] sql_alchemy_conn`` (the lab's database), the host name as its node name, and an SSH user
whose default key reaches every other host, whose host keys are already known (the 2016
controller reads the ssh client's stderr as process lines: a first-connection warning would read
as a running scheduler). Its start command starts the stand-in in the background under the words
its ``ps | grep`` looks for (``--title "airflow scheduler"``); its stop command is its own default.
"""

from __future__ import annotations

import abc
import shutil
import subprocess
import time
from pathlib import Path

import pymysql

from benchmarks.legacy_trials import HOME
from scheduler_failover_controller.config import KEYS
from tests.conftest import MariaDB
from tests.lab.harness import Lab
from tests.lab.hosts import Host
from tests.lab.network import Network
from tests.lab.sites import MariaDBSite
from tests.lab.tools import FAKE, PYTHON
from tests.support.waiting import wait_for

TITLE = "airflow scheduler"  # what the 2016 controller greps for in `ps -eaf`
LEGACY_SLEEP = 35.0  # the 2016 controller's fixed pause after every start (SCHEDULER_RESTART_SLEEP_TIME)
# The 2016 default stop command, as its `init` writes it (`\;` is its escape for `;`).
LEGACY_STOP = """for pid in `ps -ef | grep "airflow scheduler" | awk '{print $2}'` \\; do kill -9 $pid \\; done"""


def legacy_entry(checkout: Path) -> Path:
    """The 2016 controller's command-line script in a checkout."""
    return checkout / "scheduler_failover_controller" / "bin" / "scheduler_failover_controller"


class Cluster(abc.ABC):
    """One controller's cluster on a fresh lab: boot, who is active, where it placed the scheduler."""

    label = ""

    def __init__(self, lab: Lab, poll: float) -> None:
        self.lab = lab
        self.poll = poll

    @abc.abstractmethod
    def boot(self) -> None:
        """Hosts up, the scheduler on h1, h1's controller active, the others standing by."""

    @abc.abstractmethod
    def active(self) -> str | None:
        """The host whose controller is active by the metastore (None: none, or unreadable)."""

    @abc.abstractmethod
    def placed(self) -> str | None:
        """The node where the controllers believe the scheduler runs (None: unknown)."""

    @abc.abstractmethod
    def cap(self) -> float:
        """The longest a fault may take to be recovered before the trial gives up on it."""

    def settle(self) -> float:
        """How long the cluster must look healthy after a fault before the trial ends."""
        return min(self.poll, 10.0) + 5.0

    def close(self, keep: bool = False) -> None:
        self.lab.close(keep=keep)


class Ours(Cluster):
    """This project's controller, one per host, at the given settings (the lab's for the rest)."""

    label = "this controller"

    def __init__(self, net: Network, site: MariaDBSite, settings: dict[str, str]) -> None:
        self.settings = settings
        poll = float(settings.get("poll_frequency") or KEYS["poll_frequency"].default or 10)
        self.lease = float(settings.get("lease_ttl") or KEYS["lease_ttl"].default or 40)
        super().__init__(Lab(net, site, config=settings), poll)

    def boot(self) -> None:
        self.lab.boot()

    def active(self) -> str | None:
        try:
            return self.lab.active()
        except Exception:  # noqa: BLE001 - the store may not answer for a moment
            return None

    def placed(self) -> str | None:
        try:
            placement = self.lab.state().placement
        except Exception:  # noqa: BLE001
            return None
        return placement.node if placement.valid else None

    def cap(self) -> float:
        return 60.0 + 3 * (self.lease + self.poll)


class Legacy(Cluster):
    """The 2016 controller (v1.0.9) on every host, at ``poll`` seconds."""

    label = "2016 controller"

    def __init__(self, net: Network, db: MariaDB, site: MariaDBSite, checkout: Path, python: Path, poll: int) -> None:
        # The lab writes this project's config files too (unused here); ssh mode: every host has sshd.
        super().__init__(Lab(net, site, config={"node_control": "ssh"}), float(poll))
        self.db = db
        self.database = site.database
        self.sql_url = site.settings()["metadata_service_sql_conn"]
        self.checkout = checkout
        self.python = python
        self.script = self.lab.dir / "start-scheduler-2016.sh"
        self.start_command = f"nohup /bin/sh {self.script} >> {self.lab.dir / 'scheduler-2016.log'} 2>&1 < /dev/null &"
        self._prepare()

    # set-up

    def home(self, host: Host) -> Path:
        """The host's AIRFLOW_HOME (airflow.cfg and the 2016 controller's log)."""
        return host.dir / "airflow-2016"

    def _prepare(self) -> None:
        lab = self.lab
        self.script.write_text(
            "#!/bin/sh\n"
            "# The 2016 controller's start command: the lab's stand-in, under the words its ps | grep finds.\n"
            f'exec {PYTHON} {FAKE} --cluster {lab.token} --node "$(hostname)" --title "{TITLE}"\n'
        )
        nodes = ",".join(h.name for h in lab.hosts)
        for host in lab.hosts:
            home = self.home(host)
            (home / "logs").mkdir(parents=True)
            (home / "airflow.cfg").write_text(
                "[core]\n"
                f"sql_alchemy_conn = {self.sql_url}\n"
                "load_examples = False\n"
                f"dags_folder = {home / 'dags'}\n"
                "[database]\n"
                f"sql_alchemy_conn = sqlite:///{home / 'airflow.db'}\n"
                "[webserver]\n"
                "base_url = http://localhost:8080\n"
                "[email]\n"
                "email_backend = airflow.utils.email.send_email_smtp\n"
                "[scheduler_failover]\n"
                f"scheduler_nodes_in_cluster = {nodes}\n"
                "metadata_service_type = SQLMetadataService\n"
                f"poll_frequency = {int(self.poll)}\n"
                f"airflow_scheduler_start_command = {self.start_command}\n"
                f"airflow_scheduler_stop_command = {LEGACY_STOP}\n"
                "logging_level = INFO\n"
                f"logging_dir = {home / 'logs'}/\n"
                "logging_file_name = scheduler_failover_controller.log\n"
                "retry_count_before_alerting = 5\n"
                "alert_to_email =\n"
            )
            # The SSH user's default key and known hosts, in the home the host's /etc/passwd names.
            ssh = host.home / ".ssh"
            ssh.mkdir(mode=0o700)
            shutil.copyfile(lab.dir / "id_ed25519", ssh / "id_ed25519")
            (ssh / "id_ed25519").chmod(0o600)
            shutil.copyfile(lab.dir / "known_hosts", ssh / "known_hosts")

    def env(self, host: Host) -> dict[str, str]:
        env = host.env()
        env["AIRFLOW_HOME"] = str(self.home(host))
        env["PYTHONPATH"] = str(self.checkout)  # its package, not this project's of the same name
        env["HOME"] = str(host.home)
        return env

    # boot

    def boot(self) -> None:
        lab = self.lab
        lab.net.forget_neighbours()
        for host in lab.hosts:
            host.boot()
        for host in lab.hosts:
            host.wait_ready()
        lab.observer.start()
        # The scheduler first, as an operator starts it: the first controller adopts a running one
        # (starting one itself would cost its fixed 35 s pause before anything else).
        subprocess.run(
            lab.host(HOME).enter("/bin/sh", "-c", self.start_command),
            env=lab.host(HOME).env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=20,
            check=True,
            start_new_session=True,
        )
        wait_for(lambda: [s.node for s in lab.observer.current()] == [HOME], 15, "the scheduler on h1")
        self._start(lab.host(HOME))
        wait_for(lambda: self.active() == HOME and self.placed() == HOME, 60, "h1's 2016 controller active")
        for host in lab.hosts:
            if host.name != HOME:
                self._start(host)
        for host in lab.hosts:
            if host.name != HOME:
                self._wait_standby(host)
        failed = [line for line in self.log(lab.host(HOME)).splitlines() if "Process returned code" in line]
        assert not failed, f"h1's 2016 controller: a command over SSH failed at boot: {failed[0]}"
        assert [s.node for s in lab.observer.current()] == [HOME], lab.observer.describe()
        time.sleep(1.0)

    def _wait_standby(self, host: Host) -> None:
        wait_for(lambda: "on STANDBY" in self.log(host), 60, f"{host.name}'s 2016 controller standing by")

    def _start(self, host: Host) -> None:
        argv = [str(self.python), str(legacy_entry(self.checkout)), "start"]
        host.start_controller(command=argv, env=self.env(host))

    def log(self, host: Host) -> str:
        path = self.home(host) / "logs" / "scheduler_failover_controller.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # what the 2016 controller keeps in its table (read over the server's socket)

    def metadata(self) -> dict[str, str]:
        try:
            conn = pymysql.connect(
                unix_socket=str(self.db.socket_path), user="root", autocommit=True, connect_timeout=5, read_timeout=5
            )
            with conn, conn.cursor() as cur:
                cur.execute(f"SELECT `key`, `value` FROM {self.database}.scheduler_failover_controller_metadata")
                return {str(k): str(v) for k, v in cur.fetchall()}
        except pymysql.MySQLError:
            return {}

    def active(self) -> str | None:
        return self.metadata().get("active_failover_node")

    def placed(self) -> str | None:
        return self.metadata().get("active_scheduler_node")

    def cap(self) -> float:
        # Takeover after a heartbeat older than 2 polls, then a start on the old node (its pause),
        # then one elsewhere (its pause again); SSH without timeouts may add minutes.
        return 120.0 + 5 * self.poll + 2 * LEGACY_SLEEP
