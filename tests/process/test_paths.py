"""Nothing the controller opens for writing sits where another user can place a link, and nothing
another user can write says what it runs. Each case: ``nobody`` owns a directory the config
points into and links a file there to a root-only file, or owns the config; the command refuses
in one line (exit 2) and the root-only file is untouched, nothing is run.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.process.harness import SFC, Cluster

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
SECRET = "root only\n"


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory of nobody's, where nobody can reach it (pytest's tmp_path is root's, 0700)."""
    if os.geteuid() != 0:
        pytest.skip("acting as nobody needs root")
    public = Path(tempfile.mkdtemp(prefix="sfc-public-"))
    try:
        public.chmod(0o755)
        mine = public / "nobody"
        mine.mkdir(mode=0o755)
        os.chown(mine, pwd.getpwnam("nobody").pw_uid, -1)
        yield mine
    finally:
        shutil.rmtree(public)


def _root_only(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    target.write_text(SECRET)
    target.chmod(0o600)
    return target


def _link_as_nobody(target: Path, link: Path) -> None:
    subprocess.run([*NOBODY, "ln", "-s", str(target), str(link)], check=True, cwd="/")


def _run(cluster: Cluster, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """A command as root; ``start`` that does not refuse is stopped after 15 s (exit -15)."""
    proc = subprocess.Popen(
        [*SFC, *args], env=env or cluster.env("n1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    return proc.returncode, out.strip()


def _refused(code: int, out: str, *needles: str) -> None:
    assert code == 2, out
    assert len(out.splitlines()) == 1 and "Traceback" not in out, out
    for needle in needles:
        assert needle in out, out


def test_a_log_file_linked_by_another_user_is_refused(
    make_cluster: Callable[..., Cluster], tmp_path: Path, nobody_dir: Path
) -> None:
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    target = _root_only(tmp_path, "shadow")
    _link_as_nobody(target, nobody_dir / "scheduler_failover_controller.log")
    cluster.config.write_text(cluster.config.read_text() + f"logging_dir = {nobody_dir}\n")
    code, out = _run(cluster, "--config", str(cluster.config), "start")
    _refused(code, out, "logging_dir", "belongs to nobody")
    assert target.read_text() == SECRET
    # The same link in a directory of root's (planted before it changed hands): not followed.
    private = tmp_path / "logs"
    private.mkdir(mode=0o700)
    (private / "scheduler_failover_controller.log").symlink_to(target)
    cluster.config.write_text(
        cluster.config.read_text().replace(f"logging_dir = {nobody_dir}", f"logging_dir = {private}")
    )
    code, out = _run(cluster, "--config", str(cluster.config), "start")
    _refused(code, out, "logging_file_name", "symbolic link")
    assert target.read_text() == SECRET


def test_init_does_not_follow_another_users_airflow_cfg_link(
    make_cluster: Callable[..., Cluster], tmp_path: Path, nobody_dir: Path
) -> None:
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    target = _root_only(tmp_path, "shadow")
    _link_as_nobody(target, nobody_dir / "airflow.cfg")
    env = {**cluster.env("n1"), "AIRFLOW_HOME": str(nobody_dir)}
    code, out = _run(cluster, "init", env=env)
    _refused(code, out, "airflow.cfg", "nobody")
    assert target.read_text() == SECRET


def test_a_sqlite_metastore_where_another_user_can_link_is_refused(
    make_cluster: Callable[..., Cluster], tmp_path: Path, nobody_dir: Path
) -> None:
    target = tmp_path / "private" / "created-by-root"
    target.parent.mkdir(mode=0o700)
    _link_as_nobody(target, nobody_dir / "metastore.db")
    cluster = make_cluster(f"sqlite:///{nobody_dir / 'metastore.db'}", 1)
    code, out = _run(cluster, "--config", str(cluster.config), "start")
    _refused(code, out, "metadata_service_sql_conn", "nobody")
    assert not target.exists()


def test_a_config_another_user_can_write_runs_none_of_its_commands(
    make_cluster: Callable[..., Cluster], tmp_path: Path, nobody_dir: Path
) -> None:
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    marker = tmp_path / "ran-as-root"
    text = cluster.config.read_text().replace(
        "airflow_scheduler_start_command = ", f"airflow_scheduler_start_command = touch {marker}; "
    )
    assert str(marker) in text
    # A config of nobody's (written by nobody), and one of root's that everyone may write.
    theirs = nobody_dir / "sfc.cfg"
    subprocess.run([*NOBODY, "sh", "-c", f"cat > {theirs}"], input=text, text=True, check=True, cwd="/")
    code, out = _run(cluster, "--config", str(theirs), "start")
    _refused(code, out, str(theirs), "belongs to nobody")
    shared = tmp_path / "shared.cfg"
    shared.write_text(text)
    shared.chmod(0o666)
    code, out = _run(cluster, "--config", str(shared), "start")
    _refused(code, out, str(shared), "writable by other users")
    assert not marker.exists()


@pytest.fixture(autouse=True)
def _no_inherited_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))
