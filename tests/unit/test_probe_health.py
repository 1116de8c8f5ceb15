"""Airflow's scheduler health URL, checked against a real HTTP server on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scheduler_failover_controller.http_client import check_health
from tests.support.ports import free_port


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b'{"status": "healthy"}'
        self.send_response(type(self).status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Health]]]:
    handler = type("Handler", (_Health,), {})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/health", handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_healthy_answer(server: tuple[str, type[_Health]]) -> None:
    assert check_health(server[0], timeout=2) is None


def test_an_error_status_is_a_failure(server: tuple[str, type[_Health]]) -> None:
    url, handler = server
    handler.status = 503
    assert check_health(url, timeout=2) == "health check answered HTTP 503"


def test_nothing_listening_is_a_failure() -> None:
    problem = check_health(f"http://127.0.0.1:{free_port()}/health", timeout=2)
    assert problem is not None and problem.startswith("health check failed")


@pytest.mark.parametrize(
    ("argv", "found"),
    [
        (["/venv/bin/python3.11", "/venv/bin/airflow", "scheduler"], True),  # a script's shebang
        (["/venv/bin/airflow", "scheduler", "-D"], True),
        (["python", "-u", "-X", "dev", "/venv/bin/airflow", "scheduler"], True),
        (["python3", "-m", "airflow", "scheduler"], True),
        (["airflow scheduler -- DagFileProcessorManager"], True),  # a setproctitle title (a child)
        (["grep", "airflow", "scheduler"], False),
        (["watch", "-n1", "airflow", "scheduler"], False),
        (["python", "observer.py", "--match", "airflow", "scheduler"], False),
        (["python", "-c", "import time; time.sleep(9)", "airflow", "scheduler"], False),
        (["bash", "-c", "airflow scheduler"], False),  # the wrapper shell; what it runs matches
        (["/venv/bin/airflow", "webserver", "scheduler"], False),
        (["sudo", "-u", "airflow", "airflow", "scheduler"], False),  # sudo's child is the scheduler
        ([], False),
    ],
)
def test_match_is_the_program_and_its_first_arguments(argv: list[str], found: bool) -> None:
    from scheduler_failover_controller.matching import matches, split_title

    assert matches(split_title(argv), ["airflow", "scheduler"]) is found
