"""The HTTP API: probes for load balancers and Kubernetes, the cluster's state, the metrics.

``GET``/``HEAD`` only, on the bounded listener (:mod:`.http_listener`):

- ``/health``: 200 while this controller's cycle and renewals are alive (:mod:`.liveness`), else 503;
- ``/leader``: 200 only on the active controller (lease held with margin left), else 503;
- ``/scheduler``: 200 only on the node that holds the current placement and runs its scheduler;
- ``/service/NAME``: the same for service NAME (``/service/scheduler`` too); 404 for a name the
  controller does not run;
- ``/status``, ``/history``: the JSON of ``status --json`` and ``history --json``;
- ``/metrics``: Prometheus text.

The first four answer anyone: they say no more than a load balancer needs. The other three need
``Authorization: Bearer <http_token>`` when a token is set, and always when the listener is bound
beyond loopback (without a token they are then refused). ``/status`` and ``/history`` read the
metastore: on the listener's worker thread, so that a slow store never holds up a probe, and each
answer is reused for ``CACHE_SECONDS`` so that requests cannot turn into a load on the store.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .config import Config
from .config.services import SCHEDULER
from .controller.term import Role
from .exceptions import MetastoreError
from .http_listener import TEXT, BoundedHTTPServer, Deferred, Reply, Request
from .liveness import Liveness
from .metrics import Metrics
from .probe_result import SchedulerState
from .status import history_json, read_status

if TYPE_CHECKING:
    from .controller.cycle import Controller

JSON = "application/json"
PROTECTED = frozenset({"/status", "/history", "/metrics"})  # the state of the cluster: token only
SERVICE_PATH = "/service/"
CACHE_SECONDS = 1.0
HISTORY_LIMIT = 50  # as ``history``'s default


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address, or localhost) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _json(status: int, data: Any) -> Reply:
    return Reply(status, JSON, (json.dumps(data, indent=2) + "\n").encode())


class ApiServer(BoundedHTTPServer):
    """The controller's HTTP API on ``(config.http_host, port)``; ``serve_forever`` in a thread.

    ``controller`` is the scheduler's; ``services`` maps every other service's name to its controller.
    """

    def __init__(
        self,
        controller: Controller,
        config: Config,
        liveness: Liveness,
        port: int,
        monotonic: Callable[[], float] = time.monotonic,
        services: Mapping[str, Controller] | None = None,
    ) -> None:
        self.controller = controller
        self.services: dict[str, Controller] = {SCHEDULER: controller, **(services or {})}
        self.config = config
        self.liveness = liveness
        self.metrics = Metrics(controller, services or {})
        self.open_reads = is_loopback(config.http_host) and not config.http_token  # a local-only API
        self._token = config.http_token.encode()
        self._cache: dict[str, tuple[float, Reply]] = {}  # by path, for the worker thread
        self._cache_lock = threading.Lock()
        super().__init__((config.http_host, port), handler=self.handle, monotonic=monotonic)

    def observe_cycle(self, seconds: float) -> None:
        """Record one control cycle's duration (``/metrics``)."""
        self.metrics.observe_cycle(seconds)

    def handle(self, request: Request) -> Reply | Deferred:
        """Answer one request (the listener's thread); the metastore is read on its worker."""
        path = request.path
        if path in PROTECTED and not self.authorized(request):
            return Reply(
                401,
                TEXT,
                b"this path needs Authorization: Bearer <http_token>\n",
                (("WWW-Authenticate", 'Bearer realm="scheduler_failover_controller"'),),
            )
        if path == "/health":
            return self.health()
        if path == "/leader":
            return self.leader()
        if path == "/scheduler":
            return self.scheduler()
        if path.startswith(SERVICE_PATH):
            return self.service(path[len(SERVICE_PATH) :])
        if path == "/metrics":
            return Reply(200, *self.metrics.exposition())
        if path == "/status":
            return Deferred(lambda: self._cached(path, self.status))
        if path == "/history":
            return Deferred(lambda: self._cached(path, self.history))
        return Reply(404, TEXT, b"not found\n")

    def authorized(self, request: Request) -> bool:
        """The bearer token given matches ``http_token`` (compared in constant time), or none is
        needed: no token set and the listener on loopback."""
        if not self._token:
            return self.open_reads
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)

    def health(self) -> Reply:
        problems = self.liveness.problems()
        ended, running, renewed = self.liveness.ages()
        data = {
            "alive": not problems,
            "problems": problems,
            "host": self.config.current_host,
            "role": self.controller.role.value,
            "last_cycle_age_s": round(ended, 3),
            "cycle_running_s": None if running is None else round(running, 3),
            "last_renewal_age_s": round(renewed, 3),
        }
        return _json(503 if problems else 200, data)

    def leader(self) -> Reply:
        leads = self.controller.role is Role.ACTIVE and self.controller.leads()
        data = {"leader": leads, "host": self.config.current_host, "epoch": self.controller.epoch}
        return _json(200 if leads else 503, data)

    def scheduler(self) -> Reply:
        """200 when this node holds the placement and its latest look (within two renewal
        intervals) saw its scheduler running."""
        placed, running, data = self._runs_here(self.controller)
        return _json(200 if placed and running else 503, {"scheduler": placed and running, **data})

    def service(self, name: str) -> Reply:
        """As ``/scheduler`` for service ``name``: 200 when this node holds its placement and runs it."""
        controller = self.services.get(name)
        if controller is None:
            return Reply(404, TEXT, b"no such service\n")
        placed, running, data = self._runs_here(controller)
        return _json(200 if placed and running else 503, {"service": name, "running": placed and running, **data})

    def _runs_here(self, c: Controller) -> tuple[bool, bool, dict[str, Any]]:
        """Whether ``c``'s service is placed on this node, whether its latest look (within two
        renewal intervals) saw it running, and what to say of it."""
        placed = c.may_run_locally()
        look = c.blind.latest
        fresh = look is not None and c.monotonic() - look[0] <= 2 * self.config.renew_interval
        running = fresh and look is not None and look[1].state is SchedulerState.RUNNING
        data = {
            "host": self.config.current_host,
            "placed": placed,
            "state": look[1].state.value if fresh and look is not None else SchedulerState.UNKNOWN.value,
            "pids": list(look[1].pids) if running and look is not None else [],
        }
        return placed, running, data

    def status(self) -> Reply:
        return _json(200, read_status(self.controller.store, self.config).to_json())

    def history(self) -> Reply:
        return _json(200, history_json(self.controller.store.events(HISTORY_LIMIT)))

    def _cached(self, path: str, build: Callable[[], Reply]) -> Reply:
        """``build()``'s reply, reused for ``CACHE_SECONDS``; a failed read is a 503."""
        now = self.monotonic()
        with self._cache_lock:
            hit = self._cache.get(path)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        try:
            reply = build()
        except MetastoreError:  # its text may quote a driver's message: not for an HTTP client
            reply = Reply(503, TEXT, b"the metastore did not answer\n")
        with self._cache_lock:
            self._cache[path] = (now, reply)
        return reply
