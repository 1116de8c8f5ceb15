"""Fixtures of the container lab (make container-lab; never run by .ci/run: every test is ``manual``).

One private dockerd per session (tests/containers/dockerd.py) with the images built on it, and
one compose project of the example (three masters and PostgreSQL) per module. Teardown removes
the project, ends the daemon and restores the host also when a test failed, then fails if
anything was left behind.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.containers.build import ROOT, build_images
from tests.containers.compose_lab import COMPOSE, ComposeLab
from tests.containers.dockerd import DOCKER, DOCKERD, PrivateDockerd
from tests.containers.observer import ContainerObserver, scheduler_roots

CACHE = Path(os.environ.get("SFC_CONTAINER_CACHE", "/var/cache/sfc-container-lab"))
FIGURES: list[str] = []


def _require() -> None:
    if os.geteuid() != 0:
        pytest.skip("the container lab needs root (its own dockerd)")
    lacking = [str(p) for p in (DOCKERD, DOCKER, Path(COMPOSE)) if not p.exists()]
    lacking += [tool for tool in ("debootstrap",) if shutil.which(tool) is None]
    if lacking:
        pytest.skip(
            f"missing {', '.join(lacking)} (make container-lab installs docker.io, docker-compose, debootstrap)"
        )
    if not (ROOT / ".venv-airflow" / "bin" / "airflow").exists():
        pytest.skip(".venv-airflow has no Airflow (scripts/setup.sh builds it; the image pins its packages)")


@pytest.fixture(scope="session")
def dockerd() -> Iterator[PrivateDockerd]:
    _require()
    daemon = PrivateDockerd(CACHE / "docker")
    try:
        daemon.start()
        FIGURES.append(f"images built in {build_images(daemon, CACHE):.0f} s")
        yield daemon
    finally:
        left = daemon.stop()
        print("\n".join(["", "container lab:", *FIGURES]))
    assert left == [], f"left behind by the lab's dockerd: {left}"


@pytest.fixture(scope="module")
def compose_lab(dockerd: PrivateDockerd) -> Iterator[ComposeLab]:
    lab = ComposeLab(dockerd)
    observer = ContainerObserver(match="airflow scheduler", named=False, interval=0.1, dockerd=dockerd)
    lab.observer = observer
    try:
        observer.start()
        FIGURES.append(f"compose up (3 masters, PostgreSQL, migration) in {lab.up():.0f} s")
        yield lab
    finally:
        observer.stop()
        lab.down()
        lab.cleanup()
    left = dockerd.docker("ps", "-aq").split() + dockerd.docker("volume", "ls", "-q").split()
    assert left == [], f"containers or volumes left after compose down: {left}"
    assert scheduler_roots() == {}, "a container's scheduler outlived the compose project"
