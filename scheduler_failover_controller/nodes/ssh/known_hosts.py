"""Host keys: the known_hosts files read (lines paramiko cannot parse skipped) and appended to, and fingerprints."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from pathlib import Path

import paramiko

from ...trust import open_trusted

log = logging.getLogger(__name__.rpartition(".")[0])  # the SSH package's logger, as transport.py's


def fingerprint(key: paramiko.PKey) -> str:
    """``ssh-keygen -l`` style: ``ssh-ed25519 SHA256:...``."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def _trusted_fd(path: Path, what: str) -> int:
    """:func:`~scheduler_failover_controller.trust.open_trusted`, root's files allowed: whoever can
    write a known_hosts file adds a host key for any master, and whoever can write the key file
    chooses our identity."""
    return open_trusted(path, what, root_too=True)


def check_key_file(path: Path) -> None:
    """Refuse an ``ssh_key_file`` another user could have written (:class:`UntrustedFile`, OSError)."""
    os.close(_trusted_fd(path, "ssh_key_file"))


def load_known_hosts(keys: paramiko.HostKeys, path: Path) -> int:
    """Add the entries of a known_hosts file to ``keys``; lines paramiko cannot parse are skipped
    (as OpenSSH does), so one bad line does not make every node unreachable. Returns the count.

    paramiko compares host names exactly (hashed names too): no wildcards, no @cert-authority,
    no @revoked. A file another user could have written is refused (:class:`UntrustedFile`).
    """
    try:
        fd = _trusted_fd(path, "known_hosts file")
    except FileNotFoundError:
        return 0
    count = 0
    with os.fdopen(fd, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
                for name in entry.hostnames if entry is not None else []:
                    if name.startswith("|1|"):
                        paramiko.HostKeys.hash_host("check", name)  # a malformed hash fails later otherwise
            except Exception as exc:  # noqa: BLE001 - InvalidHostKey, bad base64, bad hash, key type ...
                log.warning("%s line %d: skipped (%s)", path, number, type(exc).__name__)
                continue
            if entry is None or entry.key is None:
                continue
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)
            count += 1
    return count


def append_known_host(path: Path, hostname: str, key: paramiko.PKey) -> bool:
    """Append one known_hosts line (never rewrite the file: paramiko would drop what it cannot parse)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "a", encoding="ascii") as handle:
            handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        return True
    except OSError as exc:
        log.warning("could not add the host key of %s to %s: %s", hostname, path, exc)
        return False
