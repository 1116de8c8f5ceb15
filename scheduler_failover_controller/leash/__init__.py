"""The leash: a small supervisor beside every scheduler the product starts, on the scheduler's node.

Why: a node may run the scheduler only while it holds an unexpired placement (S2). The node's
controller stops its scheduler in time, but only while that controller is alive, unfrozen and
unblocked. The leash holds the placement deadline itself and stops the scheduler's whole tree when
the deadline passes unrenewed, whatever has become of any controller: it is its own process in the
launch's own session, not a child of the controller.

- At ``deadline - scheduler_stop_timeout`` it runs the stop command (if any) or sends SIGTERM to
  the tree; just before ``deadline`` (``KILL_LEAD``) it SIGKILLs whatever is left, then exits.
  The deadline is already the server-side expiry less a safety margin, so nothing runs once it
  is reached.
- The deadline channel is ``state_dir/leash/NODE.deadline`` (:func:`.deadline.write_deadline`): an absolute
  deadline on this host's CLOCK_MONOTONIC, written atomically by the node's own controller (and by
  an active controller elsewhere through ``--serve`` over SSH). The leash polls it and takes only
  a renewal written on this boot after the leash started (:class:`.deadline.DeadlineFile`), at most
  ``lease_ttl`` past its writing; it keeps the largest deadline it has seen, never less than the
  one it started with, and never more than that one until such a renewal.
- Whole tree: it is a child subreaper (PR_SET_CHILD_SUBREAPER), so whatever the start command forks,
  daemonizes (``-D``) or moves to a new session (``setsid``) stays below it. When the start command
  and every matching process below it are gone, it ends what is left and exits. Where cgroup v2 is
  writable, the tree also runs in a cgroup of its own (:mod:`.cgroup`), which holds it
  after a SIGKILL of the leash too.
- A slow scheduler: one may take until ``scheduler_start_timeout`` to show below the leash (a
  shim, ``su -``, a wrapper); while anything runs below it, the leash waits. When nothing matching
  shows by then, one line names ``scheduler_process_match`` and what ran, and the tree is ended.
- Handed to systemd: a start command that exits 0 leaving nothing at all below the leash, nothing
  matching having run (``systemctl start airflow-scheduler``), leaves the leash watching the node's
  matching schedulers wherever they run, to stop them at the deadline; it exits once none has
  been seen for ``scheduler_start_timeout``.
- A scheduler it may not signal (another user's) is reported loudly, and the leash registers as
  "denied" meanwhile: no probe counts that scheduler leashed.
- A killed leash takes its scheduler with it: the scheduler's direct child has
  PR_SET_PDEATHSIG=SIGKILL, and a watcher child (PR_SET_PDEATHSIG, and the end of a pipe) SIGKILLs
  the processes the leash last reported (identity-checked by start time) and the rest of the
  session when the leash dies, even by SIGKILL. The leash respawns a watcher that died. The
  watcher also acts as a backstop if the leash has not acted a second after the deadline. The leash
  is single-threaded, as PR_SET_PDEATHSIG (tied to the forking thread) needs.
- Its own command line carries nothing of the start command, the process match or the node name
  (a probe matches schedulers by their arguments): everything comes in ``SFC_LEASH_*`` variables,
  which the scheduler does not inherit, nor anything else only the controller reads
  (:func:`.spec.child_environment`). It registers in ``state_dir/leash/NODE.leash-PID`` so that
  a probe can tell a leashed scheduler (:mod:`.records`).

Run as ``python -m scheduler_failover_controller.leash`` (over SSH: ``ssh_remote_command leash``);
``--serve`` instead answers renewals over SSH, one line per request: ``clock`` (its monotonic
reading) and ``set DEADLINE`` (writes the deadline file).

The modules: :mod:`.process` (the process: signals, its loop, ``main``), :mod:`.supervisor` (the
state machine; :mod:`.states` its states, :mod:`.stop` how it stops), :mod:`.tree` (its looks at
the processes it answers for), :mod:`.procs` (/proc), :mod:`.children` (what it starts, its
registration), :mod:`.watcher`, :mod:`.cgroup`, :mod:`.deadline` (the deadline file and
``--serve``), :mod:`.spec` (the ``SFC_LEASH_*`` variables), :mod:`.records` (the registration
format probes read) and :mod:`.voice` (its log lines). Nothing is imported here, so that a reader
of the registrations or the deadline file loads nothing else of the leash.
"""
