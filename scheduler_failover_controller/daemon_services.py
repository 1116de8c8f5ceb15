"""The services beside the scheduler in one daemon: a controller each, on a loop thread of its own.

Every service's controller runs on its view of the config and the store (``for_service``) with
runners of its own (its process match, commands, timeouts, leash and state directory), under the
fleet's one holder, so they share the one lease and epoch. Each loop has its own renewal thread
and exit listener, so a slow start of one service never delays another's decisions. The
scheduler's controller runs on the main thread (``daemon.run``); it alone keeps the registry row
and releases the lease, once every service's loop here has shut down.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from .config import Config
from .controller.colocation import colocation_for
from .controller.cycle import Controller
from .controller.fleet import Fleet
from .cycle_log import CycleLog
from .exit_listener import ExitListener, listen
from .liveness import Liveness
from .metastore.base import Metastore
from .nodes.base import NodeRunner

log = logging.getLogger(__name__)

RunnersFor = Callable[[Config, Metastore], "dict[str, NodeRunner]"]


def service_runners(make: RunnersFor, config: Config, store: Metastore) -> dict[str, NodeRunner]:
    """``make``'s runners for a service's view, with this host's own even where the service may not
    run here: its controller guards (and stops) what runs here all the same."""
    runners = make(config, store)
    if config.current_host not in runners:
        from .nodes.local import LocalNodeRunner

        runners[config.current_host] = LocalNodeRunner(config.current_host, config)
    return runners


def build_controllers(config: Config, store: Metastore, make: RunnersFor) -> list[Controller]:
    """The scheduler's controller first, then one per name in ``services``, all of one fleet."""
    fleet = Fleet(config.current_host, os.getpid())
    controllers = [Controller(config, store, make(config, store), fleet=fleet)]
    for name in config.service_names:
        view_config, view_store = config.for_service(name), store.for_service(name)
        runners = service_runners(make, view_config, view_store)
        colocation = colocation_for(config.service_specs, name, store)
        controllers.append(Controller(view_config, view_store, runners, fleet=fleet, colocation=colocation))
    return controllers


class ServiceLoop:
    """One service's controller on a thread of its own: cycles, renewals, exit listener, shutdown."""

    def __init__(self, controller: Controller, stop: threading.Event, monotonic: Callable[[], float]) -> None:
        self.controller = controller
        self.config = controller.config
        self.stop = stop  # the daemon's: set by SIGTERM/SIGINT or when the scheduler's loop ends
        self.wake = threading.Event()
        self.monotonic = monotonic
        self.thread = threading.Thread(target=self._run, name=f"service-{self.config.service}", daemon=True)
        self.summary = ""  # what its shutdown did

    def start(self) -> None:
        self.thread.start()

    def interrupt(self) -> None:
        """Stop now: a start under way gives up, the loop wakes and shuts its service down."""
        self.controller.stopping.set()
        self.wake.set()

    def join(self, timeout: float) -> bool:
        """Wait for the shutdown; True when it is done."""
        if self.thread.is_alive():
            self.thread.join(timeout)
        return not self.thread.is_alive()

    def _run(self) -> None:
        from .daemon import Pace, _cycles, _renewals

        config, controller = self.config, self.controller
        name = config.service
        liveness = Liveness(config, self.monotonic)  # its own: /health answers for the scheduler's loop
        sentences = CycleLog(logging.getLogger(f"{__name__}.{name}"), config.log_summary_interval, self.monotonic)
        pace = Pace(liveness, sentences, self.monotonic)
        renewals_stop = threading.Event()
        renewer = threading.Thread(
            target=_renewals,
            args=(controller, config.renew_interval, renewals_stop, self.wake, liveness),
            name=f"renewals-{name}",
            daemon=True,
        )
        exits: ExitListener | None = None
        try:
            exits = listen(config.state_dir, config.current_host, lambda _pid: self.wake.set())
            renewer.start()
            _cycles(config, controller, self.stop, self.wake, None, pace, notify=False)
        except Exception:
            log.exception("the %s service's loop failed", name)
        finally:
            renewals_stop.set()
            if exits is not None:
                exits.close()
            if renewer.is_alive():
                renewer.join(timeout=2 * config.metastore_timeout + 2)
            self.summary = controller.shutdown()
            log.info("%s: shutting down: %s", name, self.summary)
            controller.hooks.close(config.event_command_timeout)

    def shutdown_allowance(self) -> float:
        """How long its shutdown may take: a start given up, its service stopped, its store calls."""
        c = self.config
        return c.scheduler_stop_timeout + c.poll_frequency + 4 * c.metastore_timeout + c.event_command_timeout + 5
