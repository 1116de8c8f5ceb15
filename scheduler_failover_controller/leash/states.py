"""The supervisor's states, the changes allowed between them, and its timings.

Every change passes through :meth:`.supervisor.Supervisor.change`, which checks it against
:data:`TRANSITIONS` and logs it once.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    """Where a leash is with its scheduler."""

    STARTING = "starting"  # before the start command runs
    RUNNING = "running"  # the start command runs below the leash
    WAITING = "waiting"  # it has exited; its scheduler may yet show, or its leftovers end
    DAEMON = "daemon"  # it has exited; its scheduler runs on below the leash
    WATCHING = "watching"  # it exited 0 leaving nothing: the node's schedulers, wherever they run
    STOP_COMMAND = "stop-command"  # stopping: the stop command runs
    TERMINATING = "terminating"  # stopping: SIGTERM sent
    KILLING = "killing"  # SIGKILL sent: just before the deadline, or at once on waking past it
    DONE = "done"  # nothing left to do: the leash exits

    @property
    def live(self) -> bool:
        """A scheduler may run and no stop is under way."""
        return self in _LIVE

    @property
    def stopping(self) -> bool:
        """A stop is under way."""
        return self in _STOPPING


_LIVE = frozenset({State.RUNNING, State.WAITING, State.DAEMON, State.WATCHING})
_STOPPING = frozenset({State.STOP_COMMAND, State.TERMINATING, State.KILLING})
# A live leash also goes straight to KILLING when it wakes past its kill time (frozen, starved).
_STOPS = frozenset({State.STOP_COMMAND, State.TERMINATING, State.KILLING, State.DONE})

#: The changes a supervisor may make; any other is a defect (:class:`BadTransition`).
TRANSITIONS: dict[State, frozenset[State]] = {
    State.STARTING: frozenset({State.RUNNING, State.DONE}),
    State.RUNNING: frozenset({State.WAITING, State.DAEMON, State.WATCHING}) | _STOPS,
    State.WAITING: frozenset({State.DAEMON, State.WATCHING}) | _STOPS,
    State.DAEMON: _STOPS,
    State.WATCHING: _STOPS,
    State.STOP_COMMAND: frozenset({State.TERMINATING, State.KILLING, State.DONE}),
    State.TERMINATING: frozenset({State.KILLING, State.DONE}),
    State.KILLING: frozenset({State.DONE}),
    State.DONE: frozenset(),
}


class BadTransition(RuntimeError):
    """A change :data:`TRANSITIONS` does not allow."""


POLL = 0.1  # seconds between looks at the deadline file
SCAN = 0.5  # seconds between looks at the process tree (for the watcher's list)
WATCH_SCAN = 1.0  # seconds between looks for the node's schedulers after a hand-off
SETTLE = 1.0  # seconds a tree whose scheduler has been and gone may take to end after its start command
WAIT_SCAN = 0.25  # seconds between looks while a start command's tree has yet to show its scheduler
STOP_POLL = 0.05  # seconds between looks while stopping
KILL_GIVE_UP = 5.0  # seconds after SIGKILL to give up on processes that do not die (D state)
# SIGKILL goes this long before the deadline (at most a tenth of the stop timeout), so that the
# tree is gone, not just signalled, when the deadline is reached (waking up and signalling a tree
# takes tens of milliseconds on a loaded host).
KILL_LEAD = 0.1
