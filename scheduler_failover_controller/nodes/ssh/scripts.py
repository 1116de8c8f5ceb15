"""The shell scripts the SSH runner sends to a node, and the reading of what they print.

Pure functions: no connection, no configuration object. Scripts go to the standard input of
``/bin/sh -s`` on the node, so no value in them shows on a command line there (a concurrent
``ps`` listing would match the process-match words, and a start command may carry secrets).
Every value in them (node names, paths, commands' words) is quoted with :func:`shlex.quote`;
only the configured start and stop commands are shell code on purpose.

What the runner needs back is printed on lines that begin with a :class:`Marker`.
"""

from __future__ import annotations

import enum
import json
import math
import shlex
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path

from ...boot import BOOT_ID_PATH
from ...exceptions import CommandFailed
from ...leash.records import LeashRecord, leash_dir, leash_record_prefix, parse_leash_record
from ...probe_result import ForeignProcess, ProbeResult, SchedulerState
from . import remote_dirs
from .ps_table import PS_LISTING, ProcessEntry, lineage, parse_ps


class Marker(enum.Enum):
    """The start of an output line the runner reads; its value names it in ``@@sfc-NAME@@``."""

    LEASH = "leash"  # one of the node's leash registrations (before a listing)
    NOW = "now"  # the node's clock, ``date +%s`` (before a listing)
    BOOT = "boot"  # the node's boot id and uptime (before a listing)
    UID = "uid"  # the uid whose processes count as the scheduler there (before a listing)
    PS = "ps"  # the listing shell's pid; the ps table follows
    CANCELLED = "cancelled"  # a start's token was taken first: that start never launches
    RAN = "ran"  # a start's token was there already: that start launched
    LAUNCHED = "launched"  # the launch ran; its exit status follows
    LOCKED = "locked"  # the node's start lock is held
    EXIT = "rc"  # the exit status of this project's kill_local there
    LACKS = "lacks"  # a tool the fallback needs is missing there
    VERSION = "version"  # this project's version there

    @property
    def text(self) -> str:
        return f"@@sfc-{self.value}@@"

    def echo(self, value: str = "") -> str:
        """The shell command printing this marker (and ``value``, shell syntax, e.g. ``$?``)."""
        return f'echo "{self.text} {value}"' if value else f"echo {self.text}"


def marked(out: str, marker: Marker) -> list[str]:
    """What follows ``marker`` on each output line that begins with it (stripped)."""
    head = marker.text
    return [line[len(head) :].strip() for line in out.splitlines() if line.startswith(head)]


def q(value: object) -> str:
    """One shell word for ``value``, whatever it contains."""
    return shlex.quote(str(value))


def words(argv: Sequence[object]) -> str:
    """Shell words for an argv, each quoted."""
    return " ".join(q(w) for w in argv)


def assignments(env: Mapping[str, object]) -> str:
    """``NAME=value ...`` for the environment of one command, values quoted."""
    return " ".join(f"{name}={q(value)}" for name, value in env.items())


# --- the process listing --------------------------------------------------------------------


def listing_lines(state_dir: Path, node: str, user: str = "") -> list[str]:
    """Shell lines printing the node's leash registrations (files of this user), its clock and
    the uid of ``user`` (empty: this shell's own) there, a marker with the shell's pid, then the
    ps table (this shell ends with it: ``exec``)."""
    records = f"{q(leash_dir(state_dir))}/{q(leash_record_prefix(node))}*"
    user = user.strip()
    uid = q(user) if user.isdigit() else f"$(id -u {q(user)} 2>/dev/null)" if user else "$(id -u 2>/dev/null)"
    return [
        f"for f in {records}; do",
        f'  [ -f "$f" ] && [ -O "$f" ] && printf \'{Marker.LEASH.text} %s\\n\' "$(cat "$f" 2>/dev/null)"',
        "done 2>/dev/null",
        Marker.NOW.echo("$(date +%s)"),
        f"read sfc_up sfc_idle 2>/dev/null < /proc/uptime && read sfc_boot 2>/dev/null < {BOOT_ID_PATH} && "
        + Marker.BOOT.echo("$sfc_boot $sfc_up"),
        Marker.UID.echo(uid),  # a uid as is (it needs no user there)
        Marker.PS.echo("$$"),
        "LC_ALL=C",
        "export LC_ALL",
        f"exec {PS_LISTING}",
    ]


def listing_script(state_dir: Path, node: str, user: str = "") -> str:
    return "\n".join(listing_lines(state_dir, node, user)) + "\n"


def parse_expected_uid(out: str) -> int | None:
    """The uid printed before a listing (see :func:`listing_lines`); None when it is not there."""
    head = out.partition(Marker.PS.text)[0]
    for value in marked(head, Marker.UID):
        if value.isdigit():
            return int(value)
    return None


def parse_listing_head(out: str) -> tuple[list[LeashRecord], float | None]:
    """The leash registrations and the node's clock printed before a listing."""
    head = out.partition(Marker.PS.text)[0]
    records = [r for r in map(parse_leash_record, marked(head, Marker.LEASH)) if r is not None]
    now = None
    for value in marked(head, Marker.NOW):
        with suppress(ValueError, IndexError):
            now = float(value.split()[0])
    return records, now


def parse_listing_boot(out: str) -> tuple[str, float] | None:
    """The node's boot id and uptime printed before a listing; None where it has neither (not Linux)."""
    head = out.partition(Marker.PS.text)[0]
    for value in marked(head, Marker.BOOT):
        words = value.split()
        with suppress(ValueError, IndexError):
            if len(words) == 2 and words[0]:
                return words[0], float(words[1])
    return None


def parse_listing(out: str) -> list[ProcessEntry] | None:
    """The ps table after the marker, with the listing's own shell and session left out."""
    if Marker.PS.text not in out:
        return None
    _head, _mark, rest = out.partition(Marker.PS.text)
    first, _nl, text = rest.partition("\n")
    try:
        own = int(first.strip())
    except ValueError:
        return None
    # Start times on the node's clock when it printed it: they are compared with its leashes'.
    boot = parse_listing_boot(out)
    table = parse_ps(text, parse_listing_head(out)[1], boot[1] if boot else None)
    skip = lineage(own, table)
    return [e for e in table if e.pid not in skip]


def parse_probe_json(node: str, out: str) -> ProbeResult | None:
    """The ProbeResult printed by this project's ``probe --json`` / ``kill_local --json`` there."""
    start = out.find("{")
    if start < 0:
        return None
    try:
        data, _end = json.JSONDecoder().raw_decode(out[start:])
        state = SchedulerState(data["state"])
        pids = tuple(int(p) for p in data.get("pids", []))
        detail = str(data.get("detail", ""))
        leashed = data.get("leashed", False) is True
        foreign = tuple(sorted(ForeignProcess(int(f["pid"]), str(f["user"])) for f in data.get("foreign", [])))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return ProbeResult(node, state, pids, detail, leashed=leashed, foreign=foreign)


# --- this project on the node ---------------------------------------------------------------


def project_command(remote: Sequence[str], argv: Sequence[str], env: Mapping[str, object]) -> str:
    """``NAME=value ... REMOTE ARGV... </dev/null``: this project's command there, every word quoted."""
    return f"{assignments(env)} {words([*remote, *argv])} </dev/null"


def serve_script(remote: Sequence[str], argv: Sequence[str], env: Mapping[str, object]) -> str:
    """One line that execs this project's long-lived ``--serve`` helper there (exit 127 without it).

    sh reads it from stdin; the helper then reads its requests from the same stdin (none is sent
    before its first line, so sh cannot have read any of them).
    """
    command = f"{assignments(env)} exec {words([*remote, *argv])} 2>/dev/null"
    return f"command -v {q(remote[0])} >/dev/null 2>&1 || exit 127; {command}\n"


def kill_local_lines(remote: Sequence[str], command: str) -> list[str]:
    """Run ``command`` (this project's ``kill_local``) and end when the project is there."""
    return [
        f"if command -v {q(remote[0])} >/dev/null 2>&1; then",
        f"  {command}",
        f"  {Marker.EXIT.echo('$?')}",
        "  exit 0",
        "fi",
    ]


# --- starting -------------------------------------------------------------------------------


def token_dir(lock_dir: Path, node: str, token: str) -> Path:
    """The directory a start creates before it launches (and a settle creates to cancel it)."""
    return lock_dir / f"{node}.start-{token}"


def settle_script(lock_dir: Path, token_dirs: Sequence[Path]) -> str:
    """Take each token first (that start can no longer launch) or find it taken (it launched)."""
    return (
        remote_dirs.guard([lock_dir.parent, lock_dir]) + f"for d in {words(token_dirs)}; do\n"
        f'  if mkdir "$d" 2>/dev/null; then {Marker.CANCELLED.echo("$d")}; else {Marker.RAN.echo("$d")}; fi\n'
        "done\n"
    )


def lock_command(lock_path: Path, wait: float, hold: int) -> str:
    """The ``/bin/sh -c`` command line holding the node's start lock while our input stays open.

    ``flock`` waits up to ``wait`` seconds for it, then holds it for as long as ``cat`` waits for
    the end of its input, at most ``hold`` seconds (where ``timeout`` exists) should the
    connection hang. Says :attr:`Marker.LOCKED` once it holds it.
    """
    inner = (
        f"{Marker.LOCKED.echo()}; if command -v timeout >/dev/null 2>&1; "
        f"then exec timeout {hold} cat >/dev/null; else exec cat >/dev/null; fi"
    )
    guard = remote_dirs.guard([lock_path.parent.parent, lock_path.parent])
    command = f"{guard}exec flock -o -w {wait:g} {q(lock_path)} /bin/sh -c {q(inner)}"
    return f"/bin/sh -c {q(command)}"


def launch_script(launch: str, *, node: str, token: str, state_dir: Path, lock_dir: Path, session_path: Path) -> str:
    """The start script: take the token, then run ``launch`` (shell code) detached, fed on stdin.

    Prints :attr:`Marker.CANCELLED` (exit 1) when the token was already taken, else
    :attr:`Marker.LAUNCHED` with the launch's exit status.
    """
    end = f"SFC_LAUNCH_{token}"  # here-document delimiter: a line the launch cannot contain
    if any(line == end for line in launch.splitlines()):
        raise CommandFailed(f"{node}: the start command contains the line {end}")
    return (
        remote_dirs.guard([state_dir, lock_dir], [state_dir / "scheduler.log"])
        + f"mkdir {q(token_dir(lock_dir, node, token))} 2>/dev/null || {{ {Marker.CANCELLED.echo()}; exit 1; }}\n"
        f"find {q(lock_dir)} -maxdepth 1 -type d -name {q(f'{node}.start-*')} -mtime +7 "
        "-exec rmdir {} + 2>/dev/null\n"
        # In its own session; the launch (with the start command) is fed on stdin, so it shows
        # on no command line there (secrets; and a ps listing would take it for a scheduler).
        "if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=; fi\n"
        f"$detach /bin/sh -s >/dev/null 2>&1 <<'{end}'\n"
        # The detached shell leads the new session: record it (its start in clock ticks since
        # boot, and the boot), so that a stop can end a launch still on its way (a start given up
        # on) and a dead scheduler's leftovers, and never a session of another boot.
        f"{_OWN_TICKS}\n"
        f"sfc_boot=-; read sfc_boot 2>/dev/null < {BOOT_ID_PATH}\n"
        f'(umask 077 && echo "$$ $sfc_ticks ${{sfc_boot:--}} $(date +%s)" > {q(session_path)})\n'
        f"{launch}\n"
        f"{end}\n"
        "rc=$?\n"
        f"{Marker.LAUNCHED.echo('$rc')}\n"
        "exit $rc\n"
    )


# --- stopping -------------------------------------------------------------------------------


def stop_command_script(command: str) -> str:
    """The configured stop command (shell code), in a subshell: it shows on no command line there."""
    return f"(\n{command}\n) </dev/null >/dev/null 2>&1\n"


#: Shell: ``sfc_ticks`` = this shell's start in clock ticks since boot (``-`` without /proc).
_OWN_TICKS = (
    'sfc_ticks=-; sfc_stat=$(cat /proc/$$/stat 2>/dev/null) && set -- ${sfc_stat##*") "} && '
    "shift 19 2>/dev/null && sfc_ticks=$1"
)


def end_session_script(session_path: Path) -> str:
    """SIGKILL what is left in the session the last launch recorded, then forget it.

    Only a record of this boot counts, and only processes of that session (``ps -o sid``) that
    started no earlier than its leader, by their start in clock ticks since boot (no step of the
    wall clock moves it), so neither a session of an earlier boot nor a recycled session id is
    ever taken for ours. Where the node has no /proc (no ticks recorded), by age as ``ps`` says.
    """
    path = q(session_path)
    # Read only in a directory nobody else can write (a record there may be anyone's); the
    # refusal goes to stderr.
    trusted = remote_dirs.condition([session_path.parent.parent, session_path.parent])
    return remote_dirs.FUNCTIONS + (
        f"if [ -f {path} ] && {trusted}; then\n"
        f"  read sfc_sid sfc_since sfc_was sfc_started < {path}\n"
        f"  sfc_boot=-; read sfc_boot 2>/dev/null < {BOOT_ID_PATH}\n"
        '  if [ "${sfc_was:--}" = "${sfc_boot:--}" ]; then\n'
        "    sfc_age=$(( $(date +%s) - ${sfc_started:-0} + 1 ))\n"
        "    for sfc_pid in $(ps -A -o pid=,sid=,etimes= 2>/dev/null | "
        'awk -v s="$sfc_sid" -v a="$sfc_age" -v t="$sfc_since" \'$2 == s && (t != "-" || $3 <= a) {print $1}\'); do\n'
        '      [ "$sfc_pid" = "$$" ] && continue\n'
        '      if [ "$sfc_since" != "-" ]; then\n'
        "        sfc_stat=$(cat /proc/$sfc_pid/stat 2>/dev/null) || continue\n"
        '        set -- ${sfc_stat##*") "}; shift 19 2>/dev/null || continue\n'
        '        [ "$1" -ge "$sfc_since" ] 2>/dev/null || continue\n'
        "      fi\n"
        '      kill -KILL "$sfc_pid" 2>/dev/null\n'
        "    done\n"
        "  fi\n"
        f"  rm -f {path}\n"
        "fi\n"
    )


def kill_script(targets: Sequence[ProcessEntry], timeout: float) -> str:
    """The shell fallback of a stop: SIGTERM (and SIGCONT) each target, SIGKILL what is left after
    ``timeout`` seconds. A pid is signalled only while ``ps`` still shows it with the arguments it
    was listed with (a recycled pid is left alone); zombies count as gone.
    """
    steps = max(1, math.ceil(timeout / 0.1))
    lines = [
        'same() { [ "$(ps -ww -o args= -p "$1" 2>/dev/null)" = "$2" ]; }',
        'alive() { s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1; case "$s" in ""|Z*|X*) return 1;; esac; }',
        "pids=",
    ]
    for entry in targets:
        pid, args = int(entry.pid), q(entry.args)
        lines += [
            f"if same {pid} {args}; then",
            f'  kill -TERM {pid} 2>/dev/null; kill -CONT {pid} 2>/dev/null; pids="$pids {pid}"',
            "fi",
        ]
    wait = [
        "i=0",
        'while [ -n "$pids" ] && [ "$i" -lt {steps} ]; do',
        '  left=; for p in $pids; do alive "$p" && left="$left $p"; done; pids=$left',
        '  [ -n "$pids" ] || break',
        "  if sleep 0.1 2>/dev/null; then i=$((i+1)); else sleep 1; i=$((i+10)); fi",
        "done",
    ]
    lines += [line.replace("{steps}", str(steps)) for line in wait]
    for entry in targets:
        pid, args = int(entry.pid), q(entry.args)
        lines.append(f'case " $pids " in *" {pid} "*) same {pid} {args} && kill -KILL {pid} 2>/dev/null;; esac')
    lines += [line.replace("{steps}", "10") for line in wait]
    return "\n".join(lines) + "\n"


# --- test_connection ------------------------------------------------------------------------

#: The tools the ps fallback needs on the node.
TOOLS = ("ps", "flock")


def check_script(remote: Sequence[str], state_dir: Path | None = None) -> str:
    """Lists the missing tools, (when ``remote`` names this project there) its version, and
    whether ``state_dir`` there and its ``locks`` and ``leash`` pass the directory rule (see
    :mod:`.remote_dirs`; those not there yet are created, and checked, by the first start)."""
    script = remote_dirs.check([state_dir, state_dir / "locks", state_dir / "leash"]) if state_dir else ""
    script += f'for t in {words(TOOLS)}; do command -v "$t" >/dev/null 2>&1 || {Marker.LACKS.echo("$t")}; done\n'
    if remote:
        ask = words([*remote, "version"])
        script += (
            f"if command -v {q(remote[0])} >/dev/null 2>&1; then\n"
            f"  {Marker.VERSION.echo(f'$({ask} </dev/null 2>&1)')}\n"
            "fi\n"
        )
    return script
