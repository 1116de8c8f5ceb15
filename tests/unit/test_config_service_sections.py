"""The services beside the scheduler: their sections, their environment variables, the placements
they allow and the process matches kept apart (README, Configuration, "Several singletons").

Files in tmp_path, loaded with an explicit ``env`` dict and hostname (tests/unit/config_support.py;
``env`` and ``make`` are in tests/unit/conftest.py): the real environment is never read.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from scheduler_failover_controller.config import Config
from scheduler_failover_controller.config.docs import default_config_text
from scheduler_failover_controller.config.service_graph import could_claim
from scheduler_failover_controller.config.service_keys import SERVICE_KEYS
from scheduler_failover_controller.config.services import ServiceSpec
from tests.unit.config_support import expect_error, load

NODES = "node-a, node-b, node-c"
BASE = {"scheduler_nodes_in_cluster": NODES, "metadata_service_type": "zookeeper"}
SVC = "AIRFLOW__SCHEDULER_FAILOVER_SERVICE_"


def section(name: str, **keys: str) -> str:
    """A service's section: start_command and process_match from its name unless given."""
    body = {"start_command": f"run-{name}", "process_match": f"run-{name}", **keys}
    lines = [f"[scheduler_failover_service_{name}]"] + [f"{k} = {v}" for k, v in body.items() if v is not None]
    return "\n".join(lines) + "\n"


Make = Callable[..., Path]


def write(make: Make, services: str, *sections: str, **keys: str) -> Path:
    return make(extra="\n".join(sections), services=services, **{**BASE, **keys})


# --- sections and defaults --------------------------------------------------------------------


def test_sections_fill_service_specs_in_the_order_of_services(env: dict[str, str], make: Make) -> None:
    path = write(
        make,
        "triggerer, beat",
        section("beat", nodes="node-c, node-a", stop_command="kill-beat {node}", health_url="http://{node}:5555/"),
        section(
            "triggerer",
            start_command="export A=1;;airflow triggerer\n  echo {node}",
            process_match="airflow triggerer",
            start_timeout="7",
            stop_timeout="1",
            colocate_with="scheduler",
            anti_colocate_with="beat",
        ),
        scheduler_start_timeout="30",
    )
    config = load(path, env)
    assert config.service_names == ("triggerer", "beat")
    triggerer, beat = config.service_specs
    assert triggerer == ServiceSpec(
        name="triggerer",
        start_command="export A=1;airflow triggerer\necho {node}",
        stop_command="",
        process_match="airflow triggerer",
        start_timeout=7.0,
        stop_timeout=1.0,
        health_url="",
        nodes=("node-a", "node-b", "node-c"),
        colocate_with="scheduler",
        anti_colocate_with=("beat",),
    )
    assert beat.nodes == ("node-a", "node-c")  # the cluster's order
    assert beat.start_timeout == 30.0 and beat.stop_timeout == config.scheduler_stop_timeout
    assert (beat.stop_command, beat.health_url, beat.colocate_with) == ("kill-beat {node}", "http://{node}:5555/", "")


def test_no_services_no_specs(env: dict[str, str], make: Make) -> None:
    config = load(make(**BASE), env)
    assert config.service_names == () and config.service_specs == ()


def test_a_container_needs_no_section(env: dict[str, str], make: Make) -> None:
    env[SVC + "BEAT__START_COMMAND"] = "celery -A app beat"
    env[SVC + "BEAT__PROCESS_MATCH"] = "celery -A app beat"
    env[SVC + "BEAT__NODES"] = "node-b"
    env[SVC + "MY_BEAT__START_COMMAND"] = "run-x"
    env[SVC + "MY_BEAT__PROCESS_MATCH"] = "run-x"
    env["AIRFLOW__SCHEDULER_FAILOVER__SERVICES"] = "beat, my_beat"
    (beat, mine) = load(make(**BASE), env).service_specs
    assert (beat.name, beat.start_command, beat.nodes) == ("beat", "celery -A app beat", ("node-b",))
    assert (mine.name, mine.process_match) == ("my_beat", "run-x")


def test_a_name_may_end_like_a_key(env: dict[str, str], make: Make) -> None:
    env[SVC + "X_ANTI__COLOCATE_WITH"] = "scheduler"
    env[SVC + "X__ANTI_COLOCATE_WITH"] = "x_anti"
    path = write(make, "x, x_anti", section("x"), section("x_anti"))
    x, x_anti = load(path, env).service_specs
    assert (x.anti_colocate_with, x.colocate_with) == (("x_anti",), "")
    assert (x_anti.anti_colocate_with, x_anti.colocate_with) == ((), "scheduler")


def test_the_environment_wins_over_the_section(env: dict[str, str], make: Make) -> None:
    env[SVC + "BEAT__START_TIMEOUT"] = "9"
    path = write(make, "beat", section("beat", start_timeout="3", nodes="node-a"))
    (beat,) = load(path, env).service_specs
    assert beat.start_timeout == 9.0 and beat.nodes == ("node-a",)


# --- names, sections and keys refused ----------------------------------------------------------


@pytest.mark.parametrize("name", ["Beat", "1beat", "be-at", "b" * 33, "scheduler"])
def test_a_bad_service_name_is_refused(name: str, env: dict[str, str], make: Make) -> None:
    expect_error(write(make, f"beat, {name}", section("beat")), env, "services", name[:30])


def test_a_name_listed_twice_is_refused(env: dict[str, str], make: Make) -> None:
    expect_error(write(make, "beat, beat", section("beat")), env, "services", "'beat' is listed twice")


def test_an_unknown_key_in_a_section_is_refused(env: dict[str, str], make: Make) -> None:
    path = write(make, "beat", section("beat", frobnicate="1"))
    expect_error(path, env, str(path), "[scheduler_failover_service_beat]", "frobnicate", "unknown key")


@pytest.mark.parametrize("key", ["start_command", "process_match"])
def test_a_missing_required_key_is_refused(key: str, env: dict[str, str], make: Make) -> None:
    path = write(make, "beat", section("beat", **{key: None}))  # type: ignore[arg-type]
    expect_error(path, env, "[scheduler_failover_service_beat]", key, "required", SVC + "BEAT__" + key.upper())


def test_an_empty_required_key_is_refused(env: dict[str, str], make: Make) -> None:
    path = write(make, "beat", section("beat", start_command=""))
    expect_error(path, env, "[scheduler_failover_service_beat]", "start_command", "must not be empty")


def test_a_service_without_a_section_is_refused(env: dict[str, str], make: Make) -> None:
    path = write(make, "beat, flower", section("beat"))
    expect_error(path, env, "[scheduler_failover_service_flower]", "no such section", "start_command")


def test_a_section_of_no_listed_service_is_refused(env: dict[str, str], make: Make) -> None:
    path = write(make, "beat", section("beat"), section("flower"))
    expect_error(path, env, "[scheduler_failover_service_flower]", "'flower' is not named in services")


def test_a_variable_of_no_listed_service_is_refused(env: dict[str, str], make: Make) -> None:
    env[SVC + "FLOWER__START_COMMAND"] = "x"
    expect_error(make(**BASE), env, SVC + "FLOWER__START_COMMAND", "'flower' is not named in services")


@pytest.mark.parametrize("variable", [SVC + "BEAT__FROBNICATE", SVC + "BEAT", SVC + "__START_COMMAND"])
def test_a_variable_of_no_service_key_is_refused(variable: str, env: dict[str, str], make: Make) -> None:
    env[variable] = "x"
    expect_error(write(make, "beat", section("beat")), env, variable, "<NAME>__<KEY>")


def test_a_section_spelled_in_another_case_is_refused(env: dict[str, str], make: Make) -> None:
    path = write(make, "beat", section("beat"), "[Scheduler_Failover_Service_beat]\nstart_command = x\n")
    expect_error(path, env, "[Scheduler_Failover_Service_beat]", "case-sensitive")


@pytest.mark.parametrize(
    ("keys", "needles"),
    [
        ({"start_timeout": "soon"}, ("start_timeout", "'soon'")),
        ({"stop_timeout": "0"}, ("stop_timeout", "positive number")),
        ({"stop_timeout": "30"}, ("stop_timeout", "lease_ttl - renewal interval")),
        ({"stop_timeout": "5"}, ("stop_timeout", "leash starts stopping the service")),
        ({"nodes": "node-a, node-x"}, ("nodes", "'node-x' is not in scheduler_nodes_in_cluster")),
        ({"nodes": "node-a, node-a"}, ("nodes", "listed twice")),
        ({"nodes": ""}, ("nodes", "empty")),
        ({"health_url": "ftp://{node}/"}, ("health_url", "http://")),
        ({"process_match": "run 'beat"}, ("process_match", "split into words")),
        ({"process_match": "run-beat\n  again"}, ("process_match", "one line")),
        ({"start_command": "run\x01beat"}, ("start_command", "control character")),
    ],
)
def test_a_bad_value_is_one_line_naming_the_section_and_key(
    keys: dict[str, str], needles: tuple[str, ...], env: dict[str, str], make: Make
) -> None:
    path = write(make, "beat", section("beat", **keys), lease_ttl="8")
    expect_error(path, env, "[scheduler_failover_service_beat]", *needles)


def test_several_local_nodes_need_node_in_the_match(env: dict[str, str], make: Make) -> None:
    path = write(
        make,
        "beat",
        section("beat", nodes="node-a, node-b"),
        local_nodes="node-a, node-b",
        scheduler_process_match="airflow scheduler {node}",
    )
    expect_error(path, env, "[scheduler_failover_service_beat]", "process_match", "{node}")
    path = write(
        make,
        "beat",
        section("beat", nodes="node-a, node-c"),
        local_nodes="node-a, node-b",
        scheduler_process_match="airflow scheduler {node}",
    )
    assert load(path, env).service_specs[0].nodes == ("node-a", "node-c")  # one of its nodes is local


# --- placements that cannot be satisfied -------------------------------------------------------


@pytest.mark.parametrize(
    ("sections", "needles"),
    [
        ({"a": {"colocate_with": "nope"}}, ("_a]", "colocate_with", "'nope'")),
        ({"a": {"colocate_with": "a"}}, ("_a]", "colocate_with", "itself")),
        ({"a": {"anti_colocate_with": "b, nope"}}, ("_a]", "anti_colocate_with", "'nope'")),
        ({"a": {"anti_colocate_with": "a"}}, ("_a]", "anti_colocate_with", "itself")),
        ({"a": {"colocate_with": "b", "anti_colocate_with": "b"}}, ("_a]", "anti_colocate_with", "'b'")),
        ({"a": {"colocate_with": "b"}, "b": {"colocate_with": "a"}}, ("colocate_with", "cycle", "a -> b -> a")),
        (
            {"a": {"colocate_with": "b"}, "b": {"colocate_with": "c"}, "c": {"colocate_with": "b"}},
            ("colocate_with", "cycle", "b -> c -> b"),
        ),
        (
            {"a": {"colocate_with": "scheduler", "anti_colocate_with": "b"}, "b": {"colocate_with": "scheduler"}},
            ("_a]", "anti_colocate_with", "its colocation group (led by 'scheduler')"),
        ),
        (
            {"a": {"colocate_with": "b"}, "b": {"anti_colocate_with": "c"}, "c": {"colocate_with": "a"}},
            ("_b]", "anti_colocate_with", "led by 'b'"),
        ),
        (
            {"a": {"nodes": "node-a", "colocate_with": "b"}, "b": {"nodes": "node-b"}},
            ("_a]", "colocate_with", "share none"),
        ),
        (
            {
                "a": {"nodes": "node-a, node-b", "colocate_with": "b"},
                "b": {"nodes": "node-b, node-c", "colocate_with": "c"},
                "c": {"nodes": "node-c, node-a"},
            },
            ("colocate_with", "share no node"),
        ),
        (
            {"a": {"nodes": "node-b", "anti_colocate_with": "b"}, "b": {"nodes": "node-b"}},
            ("_a]", "anti_colocate_with", "one node node-b"),
        ),
        (
            {
                "a": {"nodes": "node-a, node-b", "anti_colocate_with": "b, c"},
                "b": {"nodes": "node-a, node-b", "anti_colocate_with": "c"},
                "c": {"nodes": "node-a, node-b"},
            },
            ("anti_colocate_with", "no placement"),
        ),
        (
            {
                "a": {"nodes": "node-a, node-b", "anti_colocate_with": "scheduler"},
                "b": {"nodes": "node-a, node-b", "colocate_with": "scheduler"},
                "c": {"nodes": "node-a, node-b", "anti_colocate_with": "a, scheduler"},
            },
            ("_a]", "anti_colocate_with", "no placement"),
        ),
    ],
)
def test_an_unsatisfiable_placement_is_refused(
    sections: dict[str, dict[str, str]], needles: tuple[str, ...], env: dict[str, str], make: Make
) -> None:
    names = ", ".join(sorted({"a", "b", "c"} | set(sections)))
    texts = [section(n, **sections.get(n, {})) for n in ("a", "b", "c")]
    expect_error(write(make, names, *texts, scheduler_nodes_in_cluster=NODES), env, *needles)


def test_a_satisfiable_placement_loads(env: dict[str, str], make: Make) -> None:
    texts = [
        section("trig", colocate_with="scheduler", nodes="node-a, node-b"),
        section("logs", colocate_with="trig"),
        section("beat", anti_colocate_with="scheduler, trig", nodes="node-b, node-c"),
        section("cron", anti_colocate_with="beat", nodes="node-b, node-c"),
    ]
    config = load(write(make, "trig, logs, beat, cron", *texts), env)
    assert [s.name for s in config.service_specs] == ["trig", "logs", "beat", "cron"]


# --- process matches that would kill each other --------------------------------------------------


@pytest.mark.parametrize(
    ("match", "scheduler_match", "clash"),
    [
        ("airflow triggerer", "airflow scheduler", False),
        ("airflow", "airflow scheduler", True),
        ("/opt/venv/bin/airflow scheduler --pid x", "airflow scheduler", True),
        ("python", "airflow scheduler", True),  # the interpreter a script runs under
        ("python -m airflow scheduler", "airflow scheduler", True),
        ("python -m airflow triggerer", "airflow scheduler", False),
        ("celery beat", "airflow scheduler", False),
        ("airflow scheduler {node}", "airflow scheduler", True),
        ("scheduler airflow", "airflow scheduler", False),
    ],
)
def test_process_matches_that_claim_each_other_are_refused(
    match: str, scheduler_match: str, clash: bool, env: dict[str, str], make: Make
) -> None:
    path = write(make, "svc", section("svc", process_match=match), scheduler_process_match=scheduler_match)
    if clash:
        expect_error(path, env, "[scheduler_failover_service_svc]", "process_match", "scheduler_process_match")
    else:
        assert load(path, env).service_specs[0].process_match == match


def test_two_services_whose_matches_clash_are_refused(env: dict[str, str], make: Make) -> None:
    path = write(make, "a, b", section("a", process_match="celery beat"), section("b", process_match="celery"))
    expect_error(path, env, "_b]", "process_match", "a's process_match", "kill the other")


def test_matches_on_nodes_they_never_share_do_not_clash(env: dict[str, str], make: Make) -> None:
    texts = [section("a", process_match="run x", nodes="node-a"), section("b", process_match="run", nodes="node-b")]
    path = write(make, "a, b", *texts, scheduler_process_match="airflow scheduler")
    assert len(load(path, env).service_specs) == 2


def test_could_claim_is_the_matchers_own_reading() -> None:
    assert could_claim(["celery", "beat"], ["celery", "beat", "-s", "x"])
    assert not could_claim(["celery", "beat", "-s", "x"], ["celery", "beat"])
    assert could_claim(["bash"], ["run-it"])  # a script run by bash
    assert not could_claim(["run-it"], ["bash"])


# --- the table prefix --------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "1x_", "sfc-", "a" * 17, "sfc_; drop", "é_"])
def test_a_bad_table_prefix_is_refused(prefix: str, env: dict[str, str], make: Make) -> None:
    expect_error(make(metadata_service_sql_table_prefix=prefix), env, "metadata_service_sql_table_prefix")


@pytest.mark.parametrize("prefix", ["sfc_", "_", "Fleet2_", "a" * 16])
def test_a_good_table_prefix_loads(prefix: str, env: dict[str, str], make: Make) -> None:
    assert load(make(metadata_service_sql_table_prefix=prefix), env).metadata_service_sql_table_prefix == prefix


# --- the view a service's controller runs on, and what shows the config --------------------------

# ServiceSpec field -> the Config attribute of the view that carries it.
SPEC_ATTRIBUTES = {
    "start_command": "airflow_scheduler_start_command",
    "stop_command": "airflow_scheduler_stop_command",
    "process_match": "scheduler_process_match",
    "start_timeout": "scheduler_start_timeout",
    "stop_timeout": "scheduler_stop_timeout",
    "health_url": "scheduler_health_url",
    "nodes": "nodes",
}
PLACEMENT = {"name", "colocate_with", "anti_colocate_with"}  # the fleet's concern, read from service_specs
# What a view changes besides those: whose view, its directory, and the scheduler's own keys.
VIEW_ONLY = {
    "service",
    "service_specs",
    "local_nodes",
    "state_dir",
    "scheduler_job_heartbeat_timeout",
    "scheduler_job_sql_conn",
    "scheduler_job_hostnames",
    "airflow_job_fencing",
    "http_port",
    "metrics_port",
}


def _fleet(env: dict[str, str], make: Make) -> Config:
    text = section(
        "beat",
        start_command="run-beat {node}",
        stop_command="stop-beat",
        start_timeout="11",
        stop_timeout="1",
        health_url="http://{node}:1/",
        nodes="node-c, node-a",
        anti_colocate_with="scheduler",
    )
    return load(
        write(
            make,
            "beat",
            text,
            local_nodes="node-a, node-b",
            scheduler_process_match="airflow scheduler {node}",
            scheduler_health_url="http://{node}:8974/health",
            http_port="8080",
            lease_ttl="8",
        ),
        env,
    )


def test_for_service_carries_every_service_key(env: dict[str, str], make: Make) -> None:
    assert set(SPEC_ATTRIBUTES) | PLACEMENT == {f.name for f in dataclasses.fields(ServiceSpec)}
    assert set(SERVICE_KEYS) == set(SPEC_ATTRIBUTES) | PLACEMENT - {"name"}
    fleet = _fleet(env, make)
    (spec,) = fleet.service_specs
    view = fleet.for_service("beat")
    for field, attribute in SPEC_ATTRIBUTES.items():
        assert getattr(view, attribute) == getattr(spec, field), field
    changed = {f.name for f in dataclasses.fields(Config) if getattr(view, f.name) != getattr(fleet, f.name)}
    assert changed <= set(SPEC_ATTRIBUTES.values()) | VIEW_ONLY
    assert view.service == "beat" and view.service_specs == ()
    assert view.local_nodes == ("node-a",)  # node-b is local but not the service's
    assert view.state_dir == fleet.state_dir / "service-beat"
    assert (view.http_port, view.scheduler_job_sql_conn, view.airflow_job_fencing) == (0, "", False)
    assert view.start_command("node-a") == "run-beat node-a"
    assert view.health_url("node-c") == "http://node-c:1/"
    assert fleet.for_service("scheduler") is fleet
    with pytest.raises(KeyError):
        fleet.for_service("flower")


def test_redacted_shows_the_services_as_plain_values(env: dict[str, str], make: Make) -> None:
    shown = _fleet(env, make).redacted()
    assert json.loads(json.dumps(shown))["service_specs"][0]["nodes"] == ["node-a", "node-c"]
    assert shown["service_names"] == ["beat"]
    assert shown["service_specs"][0]["anti_colocate_with"] == ["scheduler"]


# --- the init template's example section ---------------------------------------------------------


def test_the_templates_example_section_loads_when_uncommented(tmp_path: Path, env: dict[str, str]) -> None:
    text = default_config_text("node-a")
    head, example = text.split("# [scheduler_failover_service_triggerer]")
    assert "\n[scheduler_failover_service_" not in head
    keys = [m.group(1) for m in re.finditer(r"^# ([a-z_]+ =.*)$", example, flags=re.MULTILINE)]
    assert [k.split(" =")[0] for k in keys] == list(SERVICE_KEYS)
    lines = [k for k in keys if not k.endswith("=")]
    head = head.replace("\nservices =", "\nservices = triggerer")
    head = re.sub(r"^state_dir = .*$", "", head, flags=re.MULTILINE) + f"state_dir = {tmp_path / 'st'}\n"
    path = tmp_path / "uncommented.cfg"
    path.write_text(head + "\n[scheduler_failover_service_triggerer]\n" + "\n".join(lines) + "\n", encoding="utf-8")
    (spec,) = load(path, env).service_specs
    assert (spec.name, spec.start_command, spec.colocate_with) == ("triggerer", "airflow triggerer", "scheduler")
