"""The lab's out-of-band power switch, as a BMC or a hypervisor is: ``fence_command`` on any host
asks it to power a host off, and it kills that host (its PID namespace's PID 1: every process on
the host dies with it, as in ``Host.crash``) and answers only once the host is down.

The hosts reach it through a directory each of them sees (the lab's own, where their configs
are): the command writes ``NODE.request`` and waits for ``NODE.done`` (exit 0) or
``NODE.failed`` (exit 1). The switch is a thread of the test, in the root namespace, where the
hosts' PID 1s are. A host it does not know, or one it could not bring down, it answers as
failed: a fence must not exit 0 unless nothing runs on the host.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from tests.lab.harness import Lab

FENCE_SCRIPT = """\
#!/bin/sh
# fence_command of the lab: DIR NODE. Asks the power switch to power NODE off; exit 0 once it is off.
dir="$1" node="$2"
rm -f "$dir/$node.done" "$dir/$node.failed"
: > "$dir/$node.request"
i=0
while [ "$i" -lt 200 ]; do
  if [ -e "$dir/$node.done" ]; then echo "$node powered off"; exit 0; fi
  if [ -e "$dir/$node.failed" ]; then echo "power switch: $(cat "$dir/$node.failed")"; exit 1; fi
  sleep 0.05
  i=$((i + 1))
done
echo "no answer from the power switch"
exit 1
"""


class PowerSwitch:
    """Powers lab hosts off on request (see the module); ``fenced``: (host, monotonic when down)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.dir = lab.dir / "power"
        self.dir.mkdir(mode=0o700)
        self.script = lab.dir / "fence.sh"
        self.script.write_text(FENCE_SCRIPT)
        self.fenced: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="power-switch", daemon=True)
        self._thread.start()

    @property
    def command(self) -> str:
        """The ``fence_command`` that asks this switch."""
        return f"/bin/sh {self.script} {self.dir}"

    def install(self) -> None:
        """Set every host's ``fence_command`` to ask this switch (before the controllers start)."""
        for host in self.lab.hosts:
            host.set_setting("fence_command", self.command)

    def _serve(self) -> None:
        while not self._stop.is_set():
            for request in sorted(self.dir.glob("*.request")):
                self._answer(request)
            self._stop.wait(0.02)

    def _answer(self, request: Path) -> None:
        name = request.stem
        host = next((h for h in self.lab.hosts if h.name == name), None)
        answer = self.dir / f"{name}.failed"
        why = ""
        if host is None:
            why = f"no host {name}"
        elif not host.alive:  # off already: nothing runs there, as a BMC answers
            self.fenced.append((name, time.monotonic()))
            answer = self.dir / f"{name}.done"
        else:
            try:
                host.crash()  # returns once its PID namespace is gone: nothing of it runs
            except AssertionError as exc:
                why = str(exc)[:200]
            else:
                self.fenced.append((name, time.monotonic()))
                answer = self.dir / f"{name}.done"
        request.unlink(missing_ok=True)
        answer.write_text(why or "off\n")

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(RuntimeError):
            self._thread.join(5)
