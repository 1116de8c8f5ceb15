"""The expected user reaches a leash in its spec, and a watching leash counts only that user's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scheduler_failover_controller.leash.procs import owned
from scheduler_failover_controller.leash.spec import ENV_USER, Spec


def _spec(user: str) -> Spec:
    return Spec("n1", Path("/tmp/s"), "true", "", 1.0, 10.0, 5.0, "airflow scheduler", 3.0, "t", user)


def test_the_user_round_trips_and_defaults_to_the_leashs_own() -> None:
    assert Spec.from_env(_spec("nobody").environment()).user == "nobody"
    assert Spec.from_env(_spec("").environment()).uid == os.geteuid()
    assert _spec(str(os.geteuid())).uid == os.geteuid()


def test_a_user_that_names_nobody_is_a_clear_error() -> None:
    env = {**_spec("").environment(), ENV_USER: "no-such-user-4711"}
    with pytest.raises(ValueError, match=f"{ENV_USER}: must name a user"):
        Spec.from_env(env)


def test_owned_takes_real_and_effective_uid() -> None:
    assert owned(os.getpid(), os.geteuid())
    assert not owned(os.getpid(), os.geteuid() + 1)
    assert not owned(2**22 + 7, os.geteuid())  # no such process
