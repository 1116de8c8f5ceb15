"""The keys of the SSH runner: how another master's node is reached and what runs there.

Assembled by :mod:`.keys`, in this order.
"""

from __future__ import annotations

from . import parsers as p
from .key import DERIVED_TIMEOUT, Key

SSH_KEYS = (
    Key(
        "ssh_user",
        p.text,
        "",
        "SSH to other master nodes (see README): the user. Empty: the current user.",
        "SSH to the other masters (key auth only): the user",
        shown_default="current user",
    ),
    Key(
        "ssh_port",
        p.tcp_port,
        "22",
        "SSH port of the other master nodes.",
        "SSH port",
    ),
    Key(
        "ssh_key_file",
        p.text,
        "",
        "Private key file for SSH (key authentication only). Empty: the SSH agent and the default keys.",
        "SSH private key file",
        shown_default="agent/default keys",
    ),
    Key(
        "ssh_host_key_policy",
        p.choice("reject", "warn", "auto_add"),
        "reject",
        """\
reject (default): unknown host keys are refused; warn: accepted with a warning;
auto_add: accepted and saved. A changed host key is always refused.""",
        "unknown host keys: `reject`, `warn` (accept for this run) or `auto_add` (append); a changed key is "
        "always refused",
    ),
    Key(
        "ssh_timeout",
        p.positive,
        None,
        """\
Seconds an SSH step may take: connecting (TCP, banner, key exchange, authentication), opening
a channel, a remote command; a whole probe fits in it. A node that does not answer in time is
"unknown". Must be < lease_ttl - renewal interval. Default: min(10, (lease_ttl - renewal interval) / 4).""",
        "each SSH step and a whole remote probe",
        shown_default=DERIVED_TIMEOUT.format(cap=10),
    ),
    Key(
        "ssh_known_hosts_file",
        p.text,
        "",
        """\
known_hosts file to check host keys against (auto_add appends to it).
Empty: ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts.""",
        "where host keys are checked",
        shown_default="`~/.ssh/known_hosts` + `/etc/ssh/ssh_known_hosts`",
    ),
    Key(
        "ssh_remote_command",
        p.command_words,
        "scheduler_failover_controller",
        """\
This project's command on the other masters, used to probe and kill there with psutil
(an absolute path when its virtualenv is not on the SSH session's PATH). When it is not
found there, or this is empty, a POSIX shell fallback (ps, kill) is used instead.""",
        "this project on the other masters (empty: always the POSIX `ps`/`kill` fallback)",
    ),
)
