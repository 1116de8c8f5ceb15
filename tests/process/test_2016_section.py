"""The [scheduler_failover] section the 2016 controller's ``init`` wrote runs unchanged (issue 9).

The section is the one in tests/unit/config_support.py, verbatim but for the user's own paths (its
AIRFLOW_HOME and ~ under this test's temp dir). Every 2016 command is run on it, and ``start``
keeps a scheduler (a stand-in named ``airflow``, started by the section's own ``;;``-separated
``nohup ... &`` command) and stops it with the section's own ``ps -ef | grep | kill -9`` loop.

That stop command kills every process whose line holds "airflow scheduler" on the machine, so the
whole scenario runs in a PID namespace of its own (``unshare --pid --fork --mount-proc``): there,
``ps -ef`` sees only what the test started.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scheduler_failover_controller.config import KEYS
from tests.unit.config_support import SECTION_2016

ROOT = Path(__file__).resolve().parents[2]

DRIVER = r"""
import json, os, signal, subprocess, sys, time

SFC = [sys.executable, "-m", "scheduler_failover_controller"]
out = {"commands": {}}

def run(*args, stdin=None):
    done = subprocess.run([*SFC, *args], capture_output=True, text=True, timeout=60, input=stdin)
    out["commands"][" ".join(args)] = [done.returncode, done.stdout, done.stderr]
    return done

def schedulers():
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if any(a.endswith(b"/airflow") for a in argv) and b"scheduler" in argv:
                found.append(int(pid))
    return found

run("version")
run("get_current_host")
run("init")  # the section is there already: one line, exit 1
controller = subprocess.Popen([*SFC, "start"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline and len(schedulers()) != 1:
    time.sleep(0.2)
out["scheduler_started"] = len(schedulers()) == 1
first, began = schedulers(), time.monotonic()
time.sleep(2)
run("is_scheduler_running")
run("test_connection")
run("metadata")
run("send_test_email")
# Poll 60, the default lease: renewals on their own clock keep the same scheduler past a lease.
while time.monotonic() - began < HOLD and schedulers() == first:
    time.sleep(0.2)
out["schedulers_while_running"] = schedulers()
out["same_scheduler_past_a_lease"] = schedulers() == first
controller.send_signal(signal.SIGTERM)
try:
    out["controller_log"] = controller.communicate(timeout=60)[0]
except subprocess.TimeoutExpired:
    controller.kill()
    out["controller_log"] = controller.communicate()[0]
out["controller_exit"] = controller.returncode
out["schedulers_after_stop"] = schedulers()
run("clear_metadata", stdin="y\n")  # not a terminal: refused, one line (a script must say --yes)
run("clear_metadata", "--yes")
run("is_scheduler_running")
print(json.dumps(out))
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1): the 2016 stop command must only see this test's processes")
    return tmp_path


def test_each_2016_command_runs_on_the_2016_section(home: Path) -> None:
    user_home = home / "home" / "airflow"
    airflow_home = user_home / "airflow"
    (airflow_home / "logs").mkdir(parents=True)
    section = SECTION_2016.replace("/home/airflow/airflow", str(airflow_home))
    # Airflow's own database: SQLite here, so the controller uses its embedded metastore file.
    section = section.replace(
        "mysql+pymysql://airflow:p%%40ss@db.example:3306/airflow", f"sqlite:///{airflow_home}/airflow.db"
    )
    (airflow_home / "airflow.cfg").write_text(section, encoding="utf-8")
    bin_dir = home / "bin"
    bin_dir.mkdir()
    airflow = bin_dir / "airflow"  # the stand-in: "airflow scheduler" sleeps like a scheduler
    airflow.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(600)\n")
    airflow.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.pop("SCHEDULER_FAILOVER_CONTROLLER_CONFIG", None)
    env.update(
        HOME=str(user_home),
        AIRFLOW_HOME=str(airflow_home),
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        PYTHONPATH=str(ROOT),
        # "localhost" in the list is this host, whatever its name.
    )
    driver = home / "driver.py"
    # a lease and a renewal interval (a quarter of it) at the default lease_ttl
    hold = 1.25 * float(KEYS["lease_ttl"].default or 0)
    driver.write_text(textwrap.dedent(DRIVER).replace("HOLD", f"{hold:g}"))
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, str(driver)],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    commands = out["commands"]
    log = out["controller_log"]

    for name, (_code, stdout, stderr) in commands.items():
        assert "Traceback" not in stdout + stderr, (name, stdout, stderr)
    assert commands["version"][0] == 0
    assert commands["get_current_host"][0] == 0 and commands["get_current_host"][1].strip() == "localhost"
    assert commands["init"][0] == 1 and "already has a [scheduler_failover] section" in commands["init"][2]
    assert out["scheduler_started"], log
    assert len(out["schedulers_while_running"]) == 1, log
    assert out["same_scheduler_past_a_lease"], log
    # is_scheduler_running: the first run (while the controller ran) says running, exit 0.
    assert commands["metadata"][0] == 0, commands["metadata"]
    assert "localhost" in commands["metadata"][1]
    assert commands["test_connection"][0] == 0, commands["test_connection"]
    # The placeholder address cannot be delivered (no mail server here): one line, exit 1.
    code, stdout, stderr = commands["send_test_email"]
    assert code == 1 and len((stdout + stderr).strip().splitlines()) == 1, (stdout, stderr)
    # The stop: the section's kill -9 loop, with the one warning at start that it gives no grace.
    assert out["controller_exit"] == 0, log
    assert out["schedulers_after_stop"] == [], log
    assert log.count("uses kill -9") == 1, log
    assert "ERROR" not in log and "INTERNAL" not in log, log
    assert commands["clear_metadata"][0] == 1 and "pass --yes" in commands["clear_metadata"][2]
    assert commands["clear_metadata --yes"][0] == 0, commands["clear_metadata --yes"]
    code, stdout, _ = commands["is_scheduler_running"]
    assert code == 1 and stdout.strip() == "localhost: stopped"
    # The section's logging_dir (with its leading space) got the controller's log file.
    assert (airflow_home / "logs" / "scheduler_failover" / "scheduler_failover_controller.log").exists()
    assert (user_home / "airflow" / "logs" / "scheduler.logs").exists()  # the 2016 start command's own log
