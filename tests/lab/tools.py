"""What every part of the lab shares: paths, addresses, the tools it needs, and ``sh``."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TypeVar

from scheduler_failover_controller.config import KEYS

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "support" / "fake_scheduler.py"
HOSTINIT = Path(__file__).resolve().parent / "hostinit.py"
FAKETIME_SHIM = Path(__file__).resolve().parent / "faketime_shim"
PYTHON = sys.executable
VENV_BIN = Path(sys.executable).parent
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SUBNET = "198.18.0"
METASTORE_IP = f"{SUBNET}.2"

TOOLS = {
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "setpriv": "util-linux",
    "iptables": "iptables",
    "faketime": "faketime",
    "ssh-keygen": "openssh-client",
}


def libfaketime() -> str | None:
    """The libfaketime preload library (Debian package libfaketime, a dependency of faketime)."""
    for pattern in ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def missing_tools() -> list[str]:
    """Debian packages the lab needs that are not installed."""
    lacking = [package for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if not os.path.exists("/usr/sbin/sshd"):
        lacking.append("openssh-server")
    if libfaketime() is None:
        lacking.append("faketime")
    return sorted(set(lacking))


def ssh_available() -> bool:
    """Whether this checkout has SSH control of other masters (nodes/ssh/ and its config keys)."""
    here = ROOT / "scheduler_failover_controller" / "nodes" / "ssh" / "runner.py"
    return here.exists() and "ssh_known_hosts_file" in KEYS


def sh(*argv: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a short command, bounded in time; fail with its output."""
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip() or result.stdout}")
    return result
