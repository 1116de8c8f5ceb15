"""Builds the lab's images (scripts/container_image.sh) on the lab's own dockerd.

``python -m tests.containers.build [CACHE]`` (``make container-image``) starts the private dockerd,
builds, and stops it again, restoring the host; the lab's fixture calls :func:`build_images`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.containers.dockerd import PrivateDockerd

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = Path("/var/cache/sfc-container-lab")
BUILD_TIMEOUT = 3600.0  # a cold cache: debootstrap and a wheel build of Airflow's ~140 packages


def build_images(dockerd: PrivateDockerd, cache: Path) -> float:
    """Builds sfc-airflow:latest and sfc-postgres:latest; returns the seconds it took."""
    began = time.monotonic()
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "container_image.sh"), str(cache)],
        cwd=ROOT,
        env=dockerd.env(),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"building the images failed: {(result.stdout + result.stderr).strip()[-3000:]}")
    return time.monotonic() - began


def main(argv: list[str]) -> int:
    cache = Path(argv[0]) if argv else DEFAULT_CACHE
    dockerd = PrivateDockerd(cache / "docker")
    try:
        dockerd.start()
        print(f"built in {build_images(dockerd, cache):.0f} s")
    except AssertionError as exc:
        print(f"container image: {exc}", file=sys.stderr)
        return 1
    finally:
        for thing in dockerd.stop():
            print(f"left behind: {thing}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
