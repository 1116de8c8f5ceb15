"""The rule of :func:`..trust.directory_problem`, in POSIX sh, for the directories scripts write on a node.

A script sent over SSH writes in ``state_dir`` there (the scheduler's log, start tokens, the
session file a stop SIGKILLs by, the start lock). Whoever else can write that directory could
plant a link the SSH user follows, or a session file that makes it kill any session. So before
a script writes, it checks each directory as the controller checks its own: a directory of the
SSH user's that nobody else may write, with every directory above it the user's or root's and
world-writable only with the sticky bit. A symbolic link counts only when the user or root owns
it. A refusal is one line on stderr (``sfc: PATH ...``), the same line after
:attr:`UNTRUSTED` on stdout, and exit status 1.

Plain sh, ``ls -ldn`` (owner and mode, on every POSIX system) and ``id -u``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from shlex import quote

#: The start of the stdout line naming a refused directory.
UNTRUSTED = "@@sfc-untrusted@@"

#: Shell functions: ``sfc_dir PATH`` creates PATH (0700) when missing, then checks it.
FUNCTIONS = (
    "sfc_me=; sfc_ok=\n"
    f'sfc_no() {{ echo "sfc: $*" >&2; echo "{UNTRUSTED} $*"; exit 1; }}\n'
    # sfc_m, sfc_u: the mode string and the owner's uid of $1 (a link itself, not its target)
    'sfc_ls() { sfc_l=$(ls -ldn -- "$1" 2>/dev/null) || return 1; set -f; set -- $sfc_l; set +f; '
    "sfc_m=$1; sfc_u=$3; }\n"
    "sfc_dir() {\n"
    '  sfc_me=${sfc_me:-$(id -u)} || sfc_no "cannot tell this user\'s uid"\n'
    '  [ -e "$1" ] || [ -L "$1" ] || (umask 077 && mkdir -p -- "$1") || sfc_no "$1: cannot create it"\n'
    '  if [ -L "$1" ]; then\n'
    '    sfc_ls "$1" || sfc_no "$1: cannot read its owner"\n'
    '    case $sfc_u in 0|"$sfc_me") ;; *) sfc_no "$1 is a symbolic link of uid $sfc_u";; esac\n'
    "  fi\n"
    '  [ -d "$1" ] || sfc_no "$1 is not a directory"\n'
    '  sfc_ls "$1/." || sfc_no "$1: cannot read its owner"\n'
    '  [ "$sfc_u" = "$sfc_me" ] || sfc_no "$1 belongs to uid $sfc_u, not to this user (uid $sfc_me)"\n'
    '  case $sfc_m in ?????w*|????????w*) sfc_no "$1 is writable by other users (mode $sfc_m); chmod 700 it";; esac\n'
    '  sfc_p=$(cd -P -- "$1" && pwd -P) || sfc_no "$1: cannot resolve it"\n'
    "  sfc_real=$sfc_p\n"
    # up to / (or to a directory checked before: its parents were checked with it)
    '  while [ "$sfc_p" != / ] && [ -n "$sfc_p" ]; do\n'
    "    sfc_p=${sfc_p%/*}; sfc_p=${sfc_p:-/}\n"
    '    [ "$sfc_p" = "$sfc_ok" ] && break\n'
    '    sfc_ls "$sfc_p/." || sfc_no "$sfc_p: cannot read its owner"\n'
    '    case $sfc_u in 0|"$sfc_me") ;; *)\n'
    '      sfc_no "$sfc_p (above $1) belongs to uid $sfc_u: another user could replace $1";; esac\n'
    "    case $sfc_m in ????????w[!tT]*|????????w)\n"
    '      sfc_no "$sfc_p (above $1) is writable by everyone without the sticky bit";; esac\n'
    "  done\n"
    "  sfc_ok=$sfc_real\n"
    "}\n"
    # a file in a checked directory: a link there is refused (only this user could have made it)
    'sfc_file() { [ -L "$1" ] && sfc_no "$1 is a symbolic link"; :; }\n'
)


def guard(directories: Sequence[Path], files: Sequence[Path] = ()) -> str:
    """Shell lines that create and check ``directories`` (in order) and refuse ``files`` that are links."""
    lines = [f"sfc_dir {quote(str(d))}" for d in directories]
    lines += [f"sfc_file {quote(str(f))}" for f in files]
    return FUNCTIONS + "".join(line + "\n" for line in lines)


def check(directories: Sequence[Path]) -> str:
    """Shell lines that report (:data:`UNTRUSTED`) the first of the existing ``directories`` refused,
    creating none and going on with the script either way."""
    tests = "; ".join(f"{{ [ ! -e {quote(str(d))} ] || sfc_dir {quote(str(d))}; }}" for d in directories)
    return FUNCTIONS + f"( {tests} ) 2>/dev/null\n"


def condition(directories: Sequence[Path]) -> str:
    """A shell condition (after :data:`FUNCTIONS`): true when every one of ``directories`` passes
    the check (a missing one is created); a refusal goes to stderr only."""
    return "( " + "; ".join(f"sfc_dir {quote(str(d))}" for d in directories) + " ) >/dev/null"


def refused(out: str) -> str:
    """The first refusal printed by a guard in ``out`` (empty when none)."""
    for line in out.splitlines():
        if line.startswith(UNTRUSTED):
            return line[len(UNTRUSTED) :].strip()
    return ""
