"""``init`` and the files the controller creates: a config that loads, never overwritten unasked, private.

The environment is cleared of SCHEDULER_FAILOVER_CONTROLLER_CONFIG and AIRFLOW__* and AIRFLOW_HOME
points at a tmp dir. Network use is limited to 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from scheduler_failover_controller.config import CONFIG_ENV, load_config

from .cli_support import HOST, Cli, assert_one_error_line

# --- init --------------------------------------------------------------------------------------


def test_init_writes_a_config_that_loads(cli: Cli) -> None:
    target = cli.tmp_path / "etc" / "sfc.cfg"
    result = cli("init", config=target)
    assert result.exit_code == 0, result.output
    assert str(target) in result.output
    config = load_config(str(target), env={"AIRFLOW_HOME": str(cli.home)})
    assert config.nodes == (socket.gethostname(),)
    assert config.current_host == socket.gethostname()
    assert config.lease_ttl == 8.0
    shown = cli("get_current_host", config=target)
    assert shown.exit_code == 0, shown.output
    assert shown.output.strip() == socket.gethostname()


def test_init_refuses_to_overwrite_without_force(cli: Cli) -> None:
    cli.config.write_text("# mine\n", encoding="utf-8")
    refused = cli("init")
    assert_one_error_line(refused, 1, str(cli.config), "--force")
    assert cli.config.read_text(encoding="utf-8") == "# mine\n"

    forced = cli("init", "--force")
    assert forced.exit_code == 0, forced.output
    assert "[scheduler_failover]" in cli.config.read_text(encoding="utf-8")
    assert load_config(str(cli.config), env={"AIRFLOW_HOME": str(cli.home)}).nodes == (socket.gethostname(),)


def test_init_uses_env_config_path(cli: Cli) -> None:
    target = cli.tmp_path / "from-env.cfg"
    result = cli("init", config=None, **{CONFIG_ENV: str(target)})
    assert result.exit_code == 0, result.output
    assert target.exists()
    assert not (cli.home / "airflow.cfg").exists()


def test_init_appends_section_to_airflow_cfg_once(cli: Cli) -> None:
    airflow_cfg = cli.home / "airflow.cfg"
    original = "[core]\ndags_folder = /opt/dags\nexecutor = LocalExecutor\n\n[smtp]\nsmtp_host = mail\n"
    airflow_cfg.write_text(original, encoding="utf-8")

    result = cli("init", config=None)

    assert result.exit_code == 0, result.output
    assert "added [scheduler_failover]" in result.output
    text = airflow_cfg.read_text(encoding="utf-8")
    assert text.startswith(original.rstrip("\n"))
    assert text.count("[scheduler_failover]") == 1
    config = load_config(None, env={"AIRFLOW_HOME": str(cli.home)})
    assert config.source == str(airflow_cfg)
    assert config.smtp.host == "mail"
    loaded = cli("get_current_host", config=None)
    assert loaded.exit_code == 0, loaded.output

    again = cli("init", config=None)
    assert_one_error_line(again, 1, str(airflow_cfg), "already has")
    assert airflow_cfg.read_text(encoding="utf-8") == text


def test_init_keeps_a_symlinked_airflow_cfg_a_link_with_its_owner_and_mode(cli: Cli) -> None:
    """An airflow.cfg kept elsewhere (a config repository) and linked in stays linked."""
    repo = cli.tmp_path / "repo"
    repo.mkdir()
    real = repo / "airflow.cfg"
    real.write_text("[core]\nexecutor = LocalExecutor\n", encoding="utf-8")
    real.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(real, 0, 65534)  # group nogroup: kept too
    before = real.stat()
    link = cli.home / "airflow.cfg"
    link.symlink_to(real)
    result = cli("init", config=None)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and Path(os.readlink(link)) == real
    after = real.stat()
    assert "[scheduler_failover]" in real.read_text(encoding="utf-8")
    assert (after.st_mode & 0o7777, after.st_uid, after.st_gid) == (0o640, before.st_uid, before.st_gid)
    assert sorted(p.name for p in repo.iterdir()) == ["airflow.cfg"]  # no temporary file left


def test_init_creates_a_new_config_private(cli: Cli) -> None:
    path = cli.tmp_path / "new" / "sfc.cfg"
    result = cli("init", config=path)
    assert result.exit_code == 0, result.output
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("problem", ["mode", "owner", "parent"])
def test_start_refuses_a_state_dir_others_can_write(cli: Cli, problem: str) -> None:
    """Its files decide which processes get SIGKILL: nobody else may write them."""
    parent = cli.tmp_path / "shared"
    parent.mkdir()
    state = parent / "state"
    state.mkdir(mode=0o700)
    if problem == "mode":
        state.chmod(0o777)
        needle = "writable by other users"
    elif problem == "owner":
        if os.geteuid() != 0:
            pytest.skip("needs root to give the directory to another user")
        os.chown(state, 65534, 65534)
        needle = "belongs to"
    else:
        parent.chmod(0o777)  # anyone could rename state away and put their own in its place
        needle = "writable by everyone without the sticky bit"
    cli.write(state_dir=str(state), metadata_service_sql_conn=f"sqlite:///{cli.tmp_path / 'm.db'}")
    result = cli("start")
    assert_one_error_line(result, 2, "state_dir", needle)


def test_files_the_controller_creates_are_private(cli: Cli) -> None:
    from scheduler_failover_controller.config import load_config as load
    from scheduler_failover_controller.nodes.local import LocalNodeRunner

    script = cli.tmp_path / "quick_scheduler.py"
    script.write_text("import time\ntime.sleep(30)\n")
    cli.write(
        scheduler_process_match=script.name,
        airflow_scheduler_start_command=f"exec {sys.executable} {script}",
        scheduler_start_timeout="10",
    )
    config = load(str(cli.config), env={"AIRFLOW_HOME": str(cli.home)})
    runner = LocalNodeRunner(HOST, config)
    try:
        runner.start(time.monotonic() + 20)
        state = cli.tmp_path / "state"
        for path in [state / "scheduler.log", state / "locks" / f"{HOST}.lock", state / "locks" / f"{HOST}.session"]:
            assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))
    finally:
        runner.stop()


def test_init_creates_missing_airflow_cfg(cli: Cli) -> None:
    result = cli("init", config=None)
    assert result.exit_code == 0, result.output
    airflow_cfg = cli.home / "airflow.cfg"
    assert airflow_cfg.exists()
    assert load_config(None, env={"AIRFLOW_HOME": str(cli.home)}).source == str(airflow_cfg)


def test_init_with_undecodable_airflow_cfg_is_one_line(cli: Cli) -> None:
    airflow_cfg = cli.home / "airflow.cfg"
    airflow_cfg.write_bytes(b"[core]\ndags_folder = /opt/d\xe9gs\n")
    result = cli("init", config=None)
    assert_one_error_line(result, 2, str(airflow_cfg))
    assert airflow_cfg.read_bytes() == b"[core]\ndags_folder = /opt/d\xe9gs\n"
