"""A stand-in scheduler: sleeps until signalled, with a child process like Airflow's.

Usage: fake_scheduler.py [--cluster TOKEN] --node NAME [--stray] [--no-child] [--exit-after SECONDS]
                         [--title WORDS]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--node", required=True)
    parser.add_argument("--cluster", default="")  # keeps concurrent test clusters apart
    parser.add_argument("--stray", action="store_true")  # marks one started by hand
    parser.add_argument("--pod", default="")  # another container of the same node: a match naming it sees only its own
    parser.add_argument("--no-child", action="store_true")
    # A child that outlives a SIGKILL of ours, like Airflow's LocalExecutor workers do.
    parser.add_argument("--orphan-child", action="store_true")
    parser.add_argument("--exit-after", type=float, default=0.0)
    # Words only for `ps | grep` to find (the 2016 controller looks for 'airflow scheduler').
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    child = None
    if args.orphan_child:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(100000)", "orphan-of", args.node])
    elif not args.no_child:
        # A child that dies with us only if the tree is killed (like Airflow's DAG processor).
        # PR_SET_PDEATHSIG: the child dies with us even when we are SIGKILLed (no orphans left);
        # and if we died before it asked for that (a kill right after the start), it goes at once.
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import ctypes, os, signal, sys, time; ctypes.CDLL(None).prctl(1, signal.SIGTERM); "
                "os.getppid() == int(sys.argv[1]) or sys.exit(0); time.sleep(100000)",
                str(os.getpid()),
            ]
        )

    def on_term(_signum: int, _frame: object) -> None:
        if child is not None:
            child.terminate()
            child.wait()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    if args.exit_after:
        time.sleep(args.exit_after)
        return 3
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
