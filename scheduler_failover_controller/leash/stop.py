"""How the leash stops its scheduler: the stop command or SIGTERM, then SIGKILL just before the deadline."""

from __future__ import annotations

import signal

from .children import KILL_GIVE_UP, KILL_LEAD, STOP_POLL, LeashBase, _listing
from .procs import DENIED, SENT, proc_user, signal_if_same, signal_same


class StoppingLeash(LeashBase):
    """The stopping half of the leash (see :mod:`scheduler_failover_controller.leash`)."""

    def _targets(self, now: float) -> list[tuple[int, int]]:
        table = self._scan_tree(now)
        if self.mode == "watch":
            self._scan_watch(now, table)
        self.next_scan = now + STOP_POLL
        return [(p, s) for p, s in self.tree if p != self.stop_pid] + self.watched

    def _kill_time(self) -> float:
        return self.deadline - min(KILL_LEAD, self.spec.stop_timeout / 10)

    def _unstoppable(self, targets: list[tuple[int, int]]) -> dict[int, str]:
        """Those of ``targets`` this leash may not signal, by pid: their users."""
        return {pid: proc_user(pid) for pid, start in targets if signal_same(pid, start, 0) == DENIED}

    def _begin_stop(self, now: float) -> None:
        self.stopping = True
        if self.term_requested:
            self.kill_at = min(self._kill_time(), now + self.spec.stop_timeout)
            why = "asked to stop"
        else:
            self.kill_at = self._kill_time()
            why = f"deadline in {self.deadline - now:.2f}s and not renewed"
        targets = self._targets(now)
        if self.spec.stop_command:
            self.stop_pid = self._spawn(["/bin/sh", "-c", self.spec.stop_command])
            self.say(f"{why}: running the stop command; SIGKILL in {self.kill_at - now:.2f}s")
        else:
            sent, denied = 0, {}
            for pid, start in targets:
                result = signal_same(pid, start, signal.SIGTERM)
                sent += result == SENT
                if result == DENIED:
                    denied[pid] = proc_user(pid)
                signal_if_same(pid, start, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.say(f"{why}: SIGTERM to {sent} process(es); SIGKILL in {self.kill_at - now:.2f}s")
            if denied:
                self.say(f"ERROR: not permitted to signal {_listing(denied)}: it runs on past the deadline")

    def _stop_step(self, now: float) -> bool:
        """One look while stopping; True when nothing is left (or nothing left that it may signal)."""
        targets = self._targets(now)
        if self.stop_pid and self.stop_pid in self.statuses and not self.termed_after_stop_command:
            self.termed_after_stop_command = True
            if targets and now < self.kill_at:
                for pid, start in targets:
                    signal_if_same(pid, start, signal.SIGTERM)
                    signal_if_same(pid, start, signal.SIGCONT)
                self.say(f"the stop command left {len(targets)} process(es): SIGTERM")
        if now >= self.kill_at:
            if not self.killed:
                self.say(f"deadline reached: SIGKILL to {len(targets)} process(es)")
            self.killed = True
            for pid, start in targets + self.tree:
                signal_if_same(pid, start, signal.SIGKILL)
            if self.cgroup is not None:
                self.cgroup.kill(wait=0)
            unstoppable = self._unstoppable(targets)
            if unstoppable and len(unstoppable) == len(targets) and not self.tree:
                self.say(f"ERROR: {_listing(unstoppable)} left running past the deadline: not permitted to signal")
                return True
        if not targets:
            for pid, start in self.tree:  # the stop command, if it is still at it
                signal_if_same(pid, start, signal.SIGKILL)
            if not self.tree:
                early = self.deadline - now
                when = f"{early:.2f}s before" if early >= 0 else f"{-early:.2f}s after"
                self.say(f"stopped: nothing left, {when} the deadline")
                return True
        if self.killed and now > self.kill_at + KILL_GIVE_UP:
            self.say(f"{len(targets)} process(es) survive SIGKILL (uninterruptible?); leaving")
            return True
        return False
