"""The CLI parts of SSH control: ``probe`` and ``kill_local`` (run on a node by the SSH runner, with
no config file there), and ``test_connection`` for an SSH node against the real sshd of conftest.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from click.testing import Result

from scheduler_failover_controller.cli import main
from scheduler_failover_controller.config import CONFIG_ENV
from scheduler_failover_controller.probe import MATCH_ENV
from tests.ssh.conftest import FAKE, NODE, PYTHON, Env
from tests.support.clirunner import cli_runner
from tests.support.waiting import wait_for


def invoke(*args: str, home: Path, **env: str | None) -> Result:
    clean: dict[str, str | None] = {name: None for name in os.environ if name.startswith("AIRFLOW__")}
    clean.update({CONFIG_ENV: None, "AIRFLOW_HOME": str(home), MATCH_ENV: None})
    clean.update(env)
    return cli_runner().invoke(main, list(args), env=clean)


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[tuple[str, psutil.Process]]:
    token = os.urandom(6).hex()
    proc = subprocess.Popen([PYTHON, str(FAKE), "--cluster", token, "--node", "n1"])
    ps = psutil.Process(proc.pid)
    try:
        wait_for(lambda: bool(ps.children()), 10, "the stand-in's child")
        yield f"fake_scheduler.py --cluster {token} --node {{node}}", ps
    finally:
        for child in ps.children(recursive=True) if ps.is_running() else []:
            child.kill()
        proc.kill()
        proc.wait()


def test_probe_without_a_config_file(tmp_path: Path, scheduler: tuple[str, psutil.Process]) -> None:
    match, proc = scheduler
    home = tmp_path / "no_airflow_home"  # no airflow.cfg anywhere
    result = invoke("probe", "--json", "--node", "n1", "--match", match, home=home)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "node": "n1",
        "state": "running",
        "pids": [proc.pid],
        "detail": "",
        "leashed": False,
        "foreign": [],
    }
    text = invoke("probe", "--node", "n2", "--match", match, home=home)
    assert text.exit_code == 0
    assert text.output.strip() == "n2: stopped"


def test_probe_takes_the_match_from_the_environment(tmp_path: Path, scheduler: tuple[str, psutil.Process]) -> None:
    match, proc = scheduler
    result = invoke("probe", "--json", "--node", "n1", home=tmp_path, **{MATCH_ENV: match})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["pids"] == [proc.pid]


def test_probe_with_a_bad_config_and_no_match_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "sfc.cfg"
    config.write_text("[scheduler_failover]\npoll_frequency = soon\n")
    result = invoke("--config", str(config), "probe", home=tmp_path)
    assert result.exit_code == 2
    assert result.output.startswith("Error:") and "poll_frequency" in result.output
    # with --match the config is not read at all
    assert invoke("--config", str(config), "probe", "--match", "nothing_matches_this", home=tmp_path).exit_code == 0


def test_probe_defaults_from_the_config(tmp_path: Path, scheduler: tuple[str, psutil.Process]) -> None:
    match, proc = scheduler
    config = tmp_path / "sfc.cfg"
    config.write_text(
        f"[scheduler_failover]\ncurrent_host = n1\nscheduler_nodes_in_cluster = n1\n"
        f"scheduler_process_match = {match}\nstate_dir = {tmp_path / 'state'}\n"
    )
    result = invoke("--config", str(config), "probe", "--json", home=tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "node": "n1",
        "state": "running",
        "pids": [proc.pid],
        "detail": "",
        "leashed": False,
        "foreign": [],
    }


def test_kill_local_kills_the_tree_and_prints_a_probe(tmp_path: Path, scheduler: tuple[str, psutil.Process]) -> None:
    match, proc = scheduler
    child = proc.children()[0]
    result = invoke("kill-local", "--json", "--node", "n1", "--timeout", "2", home=tmp_path, **{MATCH_ENV: match})
    assert result.exit_code == 0, result.output
    stopped = {"node": "n1", "state": "stopped", "pids": [], "detail": "", "leashed": False, "foreign": []}
    assert json.loads(result.output) == stopped
    for gone in (proc, child):
        assert not gone.is_running() or gone.status() == psutil.STATUS_ZOMBIE


# --- test_connection over SSH ----------------------------------------------------------------------


def write_config(env: Env, **overrides: object) -> Path:
    path = env.tmp / "sfc.cfg"
    lines = [f"{key} = {value}" for key, value in env.settings(**overrides).items()]
    path.write_text("[scheduler_failover]\n" + "\n".join(lines) + "\n")
    return path


def test_test_connection_reports_the_ssh_node(env: Env, mariadb_url: str) -> None:
    config = write_config(env, metadata_service_sql_conn=mariadb_url)
    result = invoke("--config", str(config), "test_connection", home=env.tmp)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "node controller (local): ok: scheduler stopped" in out
    assert f"node {NODE} (remote): ok: scheduler stopped" in out
    assert f"  ssh root@{NODE}:{env.sshd.port}: reachable" in out
    assert "  host key: known (ssh-ed25519 SHA256:" in out
    assert "  auth: ok" in out
    assert "  project on the node: installed (" in out
    assert "  tools (ps, flock): ok" in out
    assert ": ok (epoch" in out  # the metastore


def test_test_connection_without_the_project_on_the_node(env: Env, mariadb_url: str) -> None:
    config = write_config(env, metadata_service_sql_conn=mariadb_url, ssh_remote_command="sfc_no_such_command")
    result = invoke("--config", str(config), "test_connection", home=env.tmp)
    assert result.exit_code == 0, result.output  # the ps fallback works: not a failure
    assert "  project on the node: not installed (sfc_no_such_command not found): probing with ps" in result.output


def test_test_connection_unknown_host_key_fails(env: Env) -> None:
    empty = env.tmp / "empty_known_hosts"
    empty.write_text("")
    config = write_config(env, ssh_known_hosts_file=empty, metastore_timeout="0.5")
    result = invoke("--config", str(config), "test_connection", home=env.tmp)
    assert result.exit_code == 1, result.output
    out = result.output
    assert f"node {NODE} (remote): FAILED" in out
    assert f"  ssh root@{NODE}:{env.sshd.port}: reachable" in out
    assert "  host key: unknown: host key of" in out and "ssh_host_key_policy = reject" in out
    assert "  auth: not tried" in out
    assert "Traceback" not in out


def test_test_connection_wrong_key_fails(env: Env) -> None:
    config = write_config(env, ssh_key_file=env.sshd.wrong_key, metastore_timeout="0.5")
    result = invoke("--config", str(config), "test_connection", home=env.tmp)
    assert result.exit_code == 1, result.output
    assert "  host key: known" in result.output
    assert "  auth: FAILED: authentication as root" in result.output


def test_test_connection_unreachable_node_fails(env: Env) -> None:
    from tests.support.ports import free_port

    config = write_config(env, ssh_port=free_port(), metastore_timeout="0.5")
    result = invoke("--config", str(config), "test_connection", home=env.tmp)
    assert result.exit_code == 1, result.output
    assert f"node {NODE} (remote): FAILED: cannot connect" in result.output
    assert ": UNREACHABLE: cannot connect" in result.output


def test_is_scheduler_running_over_ssh(env: Env) -> None:
    config = write_config(env)
    from tests.ssh.conftest import spawn_remote

    spawn_remote(env.sshd, f"{PYTHON} {FAKE} --cluster {env.token} --node {NODE}")
    wait_for(lambda: bool(env.schedulers()), 10, "the stand-in")
    [root] = env.schedulers()
    result = invoke("--config", str(config), "is_scheduler_running", "--json", home=env.tmp)
    assert result.exit_code == 0, result.output
    states = {p["node"]: (p["state"], p["pids"]) for p in json.loads(result.output)}
    assert states == {"controller": ("stopped", []), NODE: ("running", [root.pid])}


def test_console_script_probe_json_is_one_object(tmp_path: Path) -> None:
    """What the SSH runner parses: the real console script, no config, match from the environment."""
    script = Path(sys.executable).parent / "scheduler_failover_controller"
    out = subprocess.run(
        [str(script), "probe", "--json", "--node", "x"],
        env={**os.environ, MATCH_ENV: "no_such_process_anywhere", "AIRFLOW_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    stopped = {"node": "x", "state": "stopped", "pids": [], "detail": "", "leashed": False, "foreign": []}
    assert json.loads(out) == stopped


def test_test_connection_refuses_a_known_hosts_file_another_user_owns(env: Env) -> None:
    import pwd
    import shutil

    theirs = env.tmp / "their_known_hosts"
    shutil.copy(env.sshd.known_hosts, theirs)
    os.chown(theirs, pwd.getpwnam("nobody").pw_uid, -1)
    config = write_config(env, ssh_known_hosts_file=theirs, metastore_timeout="0.5")
    result = invoke("--config", str(config), "test_connection", home=env.tmp)
    assert result.exit_code == 1, result.output
    assert f"node {NODE} (remote): FAILED" in result.output
    assert "  host key: unknown: refused: known_hosts file" in result.output
    assert "not to this user or root" in result.output
    assert "Traceback" not in result.output


def test_test_connection_refuses_a_key_file_others_may_write(env: Env) -> None:
    import shutil

    key = env.tmp / "shared_key"
    shutil.copy(env.sshd.client_key, key)
    key.chmod(0o666)
    config = write_config(env, ssh_key_file=key, metastore_timeout="0.5")
    result = invoke("--config", str(config), "test_connection", home=env.tmp)
    assert result.exit_code == 1, result.output
    assert "  auth: FAILED: refused: ssh_key_file" in result.output
    assert "writable by other users (mode 0666)" in result.output


def test_a_linked_known_hosts_file_makes_the_node_unknown(env: Env) -> None:
    from scheduler_failover_controller.probe_result import SchedulerState

    link = env.tmp / "linked_known_hosts"
    link.symlink_to(env.sshd.known_hosts)
    result = env.runner(ssh_known_hosts_file=link).probe()
    assert result.state is SchedulerState.UNKNOWN
    assert f"refused: known_hosts file {link} is a symbolic link" in result.detail


def test_test_connection_names_a_state_dir_another_user_owns(env: Env) -> None:
    state = env.tmp / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    config = write_config(env, metastore_timeout="0.5")
    result = invoke("--config", str(config), "test_connection", home=env.tmp)
    assert result.exit_code == 1, result.output
    line = f"node {NODE} (remote): FAILED: state_dir there refused: {state} belongs to uid 65534"
    assert line in result.output, result.output
    assert "Traceback" not in result.output
