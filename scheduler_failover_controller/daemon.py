"""The controller's process: fixed-period loop, signals, logging, systemd notify, the HTTP API."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from .config import Config
from .controller.cycle import PLEASE_REPORT, Controller
from .cycle_log import CycleLog
from .daemon_services import ServiceLoop
from .exceptions import ConfigError, MetastoreError
from .exit_listener import ExitListener, listen
from .liveness import Liveness
from .log_file import open_log_file
from .metastore.events import EventKind
from .redaction import RedactingFormatter, config_secrets
from .trust import directory_problem

if TYPE_CHECKING:
    from .http_api import ApiServer
    from .metastore.base import ControllerInfo

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"


def _oserror(exc: OSError) -> str:
    return exc.strerror or str(exc)


def prepare_state_dir(config: Config) -> None:
    """Create ``state_dir`` if needed and check this user can write there; ConfigError (one line) if not.

    The loader already refused a state_dir that is a file or sits under one; what is left (no
    permission, a read-only file system) is only known by trying, here, before anything runs.
    """
    directory = config.state_dir
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{config.source}: state_dir: cannot create {directory}: {_oserror(exc)}") from None
    if not directory.is_dir():
        raise ConfigError(f"{config.source}: state_dir: {directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"{config.source}: state_dir: {directory} is not writable by this user")
    problem = directory_problem(directory)  # its files decide which processes are killed
    if problem:
        raise ConfigError(f"{config.source}: state_dir: {problem}")


def setup_logging(config: Config) -> None:
    """Log to stderr (journald) and, with ``logging_dir`` set, to a rotating file.

    A log file that cannot be opened, or not safely (:mod:`.log_file`), is a ConfigError (one
    line), raised before any handler changes.
    """
    secrets = config_secrets(config)  # masked in every line, whichever library logs it
    rotating = None
    if config.logging_dir:
        directory = Path(config.logging_dir).expanduser()
        rotating = open_log_file(
            directory, config.logging_file_name, config.logs_rotate_when, config.logs_rotate_backup_count, config.source
        )
        rotating.setFormatter(RedactingFormatter(LOG_FORMAT, secrets))
    root = logging.getLogger()
    root.setLevel(config.logging_level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(RedactingFormatter(LOG_FORMAT, secrets))
    root.addHandler(stderr)
    if rotating is not None:
        root.addHandler(rotating)


def sd_notify(message: str) -> bool:
    """Send a systemd notification if we run under ``Type=notify``; True if sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)
        return False


def _serve_http(
    controller: Controller, config: Config, liveness: Liveness, services: Sequence[Controller] = ()
) -> ApiServer:
    """The HTTP API on ``http_host:http_port``; ConfigError (one line) if it cannot listen there.
    ``services``: every other service's controller (``/service/NAME``, the metrics).

    prometheus_client is imported here, only when the API is on.
    """
    from .http_api import ApiServer

    port = config.http_port
    try:
        by_name = {service.config.service: service for service in services}
        server = ApiServer(controller, config, liveness, port, services=by_name)
    except OSError as exc:  # in use, a privileged port, an address not of this host
        where = f"{config.source}: " if config.source else ""
        raise ConfigError(f"{where}http_port: cannot listen on {config.http_host}:{port}: {_oserror(exc)}") from None
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def _renewals(
    controller: Controller,
    interval: float,
    stop: threading.Event,
    wake: threading.Event,
    liveness: Liveness,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """The renewal thread: a round every ``interval`` seconds, whatever the cycle is doing.

    The rhythm counts from each round's start: a round that hung on a frozen store (its calls are
    given up after ``metastore_timeout``) is followed at once by the next, not an interval after
    it, so a stall that ends is renewed through before the leash's deadline, when one can be.
    """
    next_round = monotonic() + interval
    while not stop.wait(max(0.0, next_round - monotonic())):
        next_round = monotonic() + interval
        heartbeats = controller.identity.heartbeats
        try:
            if controller.renew():
                wake.set()
        except Exception:
            log.exception(PLEASE_REPORT)
        if controller.identity.heartbeats != heartbeats:  # the store took this round's heartbeat
            liveness.renewed()


class Pace:
    """What the loop reports each cycle to: the liveness ``/health`` reads, the quiet log, the clock."""

    def __init__(self, liveness: Liveness, cycle_log: CycleLog, monotonic: Callable[[], float]) -> None:
        self.liveness = liveness
        self.cycle_log = cycle_log
        self.monotonic = monotonic


def _setup(
    controller: Controller, stop: threading.Event, interval: float, pace: Pace
) -> tuple[bool, ControllerInfo | None]:
    """Create the schema and look for another live controller of this host, retrying until the
    store answers (a warning per try); (False, None) if stopped first, else (True, that other).

    A controller started while its metastore is down keeps trying instead of exiting: a scheduler
    already running on this node stays under its leash meanwhile. That includes a store that goes
    down between the two (found by the chaos soak: a metastore restart right after setup made the
    identity check's read fail, and the controller exited for good).
    """
    while not stop.is_set():
        try:
            controller.store.setup()
            return True, controller.other_live_controller()
        except MetastoreError as exc:
            log.warning("metastore not ready (%s); retrying in %gs", exc, interval)
            # Cycles meanwhile act on nothing but the self-fence of an unleashed local scheduler.
            pace.liveness.cycle_began()
            sentence = controller.run_cycle()
            pace.liveness.cycle_ended()
            pace.cycle_log.note(sentence)
            stop.wait(interval)
    return False, None


def run(
    config: Config,
    controller: Controller,
    stop: threading.Event | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    services: Sequence[Controller] = (),
) -> int:
    """Run cycles every ``poll_frequency`` seconds until SIGTERM/SIGINT, then hand over (``services``: ServiceLoop).

    Leases and placements are renewed by a thread of their own every ``renew_interval``. SIGHUP,
    SIGUSR1 and SIGUSR2 are logged and otherwise ignored (restart the unit to apply a new config).
    """
    stop = stop or threading.Event()
    wake = threading.Event()
    liveness = Liveness(config, monotonic)
    pace = Pace(liveness, CycleLog(log, config.log_summary_interval, monotonic), monotonic)
    # First, before any signal handler changes: a port in use is a ConfigError (one line).
    http = _serve_http(controller, config, liveness, services) if config.http_port else None
    loops = [ServiceLoop(service, stop, monotonic) for service in services]
    previous = _install_signals(controller, stop, wake, loops)
    _announce(config, controller)
    renewals_stop = threading.Event()
    renewer = threading.Thread(
        target=_renewals,
        args=(controller, config.renew_interval, renewals_stop, wake, liveness),
        name="renewals",
        daemon=True,
    )
    sd_notify("READY=1")
    exits: ExitListener | None = None
    try:
        ready, other = _setup(controller, stop, config.renew_interval, pace)
        if not ready:
            return 0
        if other is not None:
            _refuse_duplicate(config, controller, other)
        refusal = controller.node_control.check()  # the cluster runs another node_control: a config error
        if refusal:
            raise ConfigError(f"{config.source}: node_control: {refusal}")
        # A leash's word that its scheduler exited wakes the cycle, which probes and decides as usual.
        exits = listen(config.state_dir, config.current_host, lambda _pid: wake.set())
        renewer.start()
        for loop in loops:
            loop.start()
        return _cycles(config, controller, stop, wake, http, pace)
    finally:
        _stop_services(controller, stop, loops)
        renewals_stop.set()
        if exits is not None:
            exits.close()
        if renewer.is_alive():
            renewer.join(timeout=2 * config.metastore_timeout + 2)
        sd_notify("STOPPING=1")
        log.info("shutting down: %s", controller.shutdown())
        controller.hooks.close(config.event_command_timeout)  # the stop event's command, bounded
        if http is not None:
            http.shutdown()
        controller.store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_services(controller: Controller, stop: threading.Event, loops: Sequence[ServiceLoop]) -> None:
    """End every service's loop and wait for its shutdown. One not done in time keeps the lease
    held to its expiry: released, another controller could place that service while it still runs."""
    stop.set()
    for loop in loops:
        with loop.controller._shared:  # another controller has this identity: its services are its own
            loop.controller.duplicate = loop.controller.duplicate or controller.duplicate
        loop.interrupt()
    for loop in loops:
        if not loop.join(loop.shutdown_allowance()):
            log.error("the %s service's loop did not finish in time; the lease is left to expire", loop.config.service)
            controller.fleet.release_lease = False


def _install_signals(
    controller: Controller, stop: threading.Event, wake: threading.Event, loops: Sequence[ServiceLoop] = ()
) -> dict[int, Any]:
    """SIGTERM/SIGINT finish the cycle and hand over; SIGHUP/SIGUSR1/SIGUSR2 are logged. Returns
    the handlers they replace (none outside the main thread, where Python allows no handler)."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; finishing the current cycle, then releasing", signal.Signals(signum).name)
        controller.stopping.set()
        stop.set()
        wake.set()
        for loop in loops:
            loop.interrupt()

    def on_ignored(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; ignored (restart the controller to apply a changed config)", signal.Signals(signum).name)

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        previous.update(
            {sig: signal.signal(sig, on_ignored) for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)}
        )
    return previous


def _announce(config: Config, controller: Controller) -> None:
    """The start-up line, and a warning for a stop command that gives no grace."""
    log.info(
        "controller %s starting on %s: nodes %s, poll %gs, lease %gs (renewed every %gs), metastore %s",
        controller.holder,
        config.current_host,
        ",".join(config.nodes),
        config.poll_frequency,
        config.lease_ttl,
        config.renew_interval,
        controller.store.describe(),
    )
    if re.search(r"\bkill\s+-(9|KILL|SIGKILL)\b", config.airflow_scheduler_stop_command):
        log.warning(
            "airflow_scheduler_stop_command uses kill -9: a stopped scheduler gets no grace to finish "
            "its work; leave it empty for SIGTERM, then SIGKILL after scheduler_stop_timeout"
        )


def _refuse_duplicate(config: Config, controller: Controller, other: ControllerInfo) -> NoReturn:
    """Another live controller has this ``current_host``: record it and stop (a config error)."""
    controller.duplicate = other  # its node's scheduler is the other's to guard: left alone
    problem = (
        f"another controller is running as {config.current_host!r} "
        f"(pid {other.pid}, heartbeat {other.age:.1f}s ago); each controller needs its own current_host"
    )
    controller._event(EventKind.DUPLICATE, f"{problem}: refused to start (pid {controller.pid})")
    raise ConfigError(f"{config.source}: current_host: {problem}")


def _cycles(
    config: Config,
    controller: Controller,
    stop: threading.Event,
    wake: threading.Event,
    http: ApiServer | None,
    pace: Pace,
    notify: bool = True,
) -> int:
    """One cycle every ``poll_frequency`` seconds, each decision logged as it changes, until ``stop``."""
    monotonic = pace.monotonic
    next_run = monotonic()
    while not stop.is_set():
        wake.clear()
        began = monotonic()
        pace.liveness.cycle_began()
        sentence = controller.run_cycle()
        pace.liveness.cycle_ended()
        if http is not None:
            http.observe_cycle(monotonic() - began)
        pace.cycle_log.note(sentence)
        if controller.duplicate is not None or controller.node_control.refused:
            return 2  # a config error found at run time: another controller has this identity, or another mode
        if notify:  # the scheduler's loop alone feeds the watchdog
            sd_notify(f"WATCHDOG=1\nSTATUS={sentence[:200]}")
        next_run += config.poll_frequency
        now = monotonic()
        if next_run < now:  # a slow cycle: skip the missed slots instead of bursting
            next_run = now
        # Woken early when the renewals find the lease free or lost (a lost host costs the lease,
        # not the poll) or an operator's request pending, at most one early cycle per renewal
        # interval; and when a leash says its scheduler exited (a restart costs no poll).
        if wake.wait(next_run - now):
            next_run = monotonic()
    return 0
