"""The sshd_config every test sshd shares: keys only, root by key, no PAM, DNS or motd, room for
many sessions at once (the lab and the SSH tests open many)."""

from __future__ import annotations

from pathlib import Path


def sshd_config(listen: str, host_key: Path, pid_file: str, authorized_keys: Path, log_level: str, *extra: str) -> str:
    """The text of an sshd_config listening on ``listen`` (``host:port``); ``extra``: more lines."""
    lines = [
        f"ListenAddress {listen}",
        f"HostKey {host_key}",
        f"PidFile {pid_file}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "MaxStartups 100:30:200",
        "MaxSessions 100",
        f"LogLevel {log_level}",
        *extra,
    ]
    return "".join(f"{line}\n" for line in lines)
