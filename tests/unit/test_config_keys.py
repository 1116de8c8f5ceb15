"""The key registry (config/keys.py) and its copies: Config's attributes, the ``init`` template,
config/scheduler_failover_controller.cfg and the README's key table all agree with it."""

from __future__ import annotations

import configparser
import dataclasses
import importlib.util
import re
import typing
from pathlib import Path
from types import ModuleType

import pytest

from scheduler_failover_controller.config import ENV_PREFIX, KEYS, SECTION, Config, ConfigError, load_config
from scheduler_failover_controller.config.docs import SAMPLE_HOST, default_config_text, readme_table, with_readme_table
from scheduler_failover_controller.config.keys import THIS_HOST
from tests.unit.config_support import SECTION_2016

ROOT = Path(__file__).resolve().parents[2]
NOT_KEYS = {"source", "smtp", "service_specs", "service"}  # Config attributes that are no key of [scheduler_failover]


def _load(tmp_path: Path, text: str, **env: str) -> Config:
    path = tmp_path / "sfc.cfg"
    path.write_text(text, encoding="utf-8")
    return load_config(str(path), env={"AIRFLOW_HOME": str(tmp_path), **env}, hostname=lambda: "node-a")


def _minimal(tmp_path: Path, **keys: str) -> str:
    lines = [f"[{SECTION}]", "scheduler_nodes_in_cluster = node-a", f"state_dir = {tmp_path / 'state'}"]
    return "\n".join(lines + [f"{k} = {v}" for k, v in keys.items()]) + "\n"


# --- the registry and Config ---------------------------------------------------------------------


def test_the_registry_names_are_the_config_attributes() -> None:
    attributes = [key.attribute for key in KEYS.values()]
    assert len(attributes) == len(set(attributes))
    assert set(attributes) == {f.name for f in dataclasses.fields(Config)} - NOT_KEYS
    assert all(name == key.name for name, key in KEYS.items())


def test_each_default_parses_to_its_attributes_type() -> None:
    hints = typing.get_type_hints(Config)
    for key in KEYS.values():
        if key.default is not None:
            expected = typing.get_origin(hints[key.attribute]) or hints[key.attribute]
            assert isinstance(key.parse(key.default), expected), key.name


def test_every_secret_attribute_has_a_redaction_and_redacted_hides_it(tmp_path: Path) -> None:
    hidden = {f.name for f in dataclasses.fields(Config) if not f.repr}
    redacted = {key.attribute for key in KEYS.values() if key.redact is not None}
    assert hidden <= redacted
    config = _load(
        tmp_path,
        _minimal(
            tmp_path,
            metadata_service_sql_conn="mysql+pymysql://sfc:Pw-one-secret@db:3306/af",
            metadata_service_zookeeper_auth="sfc:Zk-two-secret",
            alert_webhook_url="https://hooks.example/services/Hook-three-secret",
        ),
    )
    shown = repr(config.redacted())
    for secret in ("Pw-one-secret", "Zk-two-secret", "Hook-three-secret"):
        assert secret not in shown


def test_the_2016_keys_are_the_2016_section() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(SECTION_2016)
    assert {key.name for key in KEYS.values() if key.since_2016} == set(parser.options(SECTION))


def test_command_keys_may_continue_on_an_indented_line(tmp_path: Path) -> None:
    commands = {key.name for key in KEYS.values() if key.command}
    assert commands == {
        "airflow_scheduler_start_command",
        "airflow_scheduler_stop_command",
        "fence_command",
        "event_command",
    }
    config = _load(tmp_path, _minimal(tmp_path, fence_command="echo one\n  echo two"))
    assert config.fence_command == "echo one\necho two"


# --- the init template and config/scheduler_failover_controller.cfg ------------------------------


def test_the_template_documents_every_key_once_above_its_line() -> None:
    text = default_config_text("host-x")
    for key in KEYS.values():
        lines = re.findall(rf"^(?:# )?{key.name} =.*$", text, flags=re.MULTILINE)
        assert len(lines) == 1, key.name
        comment = "\n".join(f"# {line}".rstrip() for line in key.doc.splitlines())
        assert f"{comment}\n{lines[0]}\n" in text, key.name


def test_the_template_writes_each_default_and_comments_out_the_derived_ones() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(default_config_text("host-x"))
    for key in KEYS.values():
        if key.in_comment:
            assert not parser.has_option(SECTION, key.name), key.name
        else:
            written = "host-x" if key.sample == THIS_HOST else key.sample or key.default
            assert parser.get(SECTION, key.name) == written, key.name
    assert parser.get(SECTION, "scheduler_nodes_in_cluster") == "host-x"
    assert "# current_host = host-x\n" in default_config_text("host-x")


def test_the_sample_config_file_is_the_init_template() -> None:
    path = ROOT / "config" / "scheduler_failover_controller.cfg"
    assert path.read_text(encoding="utf-8") == default_config_text(SAMPLE_HOST), "run scripts/config_docs.py"


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "config").glob("*.cfg")))
def test_every_example_config_loads(tmp_path: Path, name: str) -> None:
    text = (ROOT / "config" / name).read_text(encoding="utf-8")
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    assert set(parser.options(SECTION)) <= set(KEYS)
    config = _load(tmp_path, text, **{ENV_PREFIX + "CURRENT_HOST": "master1"})
    assert config.current_host == "master1"


# --- the README's key table ---------------------------------------------------------------------


def test_the_readme_table_is_built_from_the_registry() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_table() in readme, "run scripts/config_docs.py"
    assert with_readme_table(readme) == readme
    rows = re.findall(r"^\| `([a-z_0-9]+)` \| (.*?) \| (.*) \|$", readme_table(), flags=re.MULTILINE)
    assert [name for name, _, _ in rows] == list(KEYS)
    for (name, default, summary), key in zip(rows, KEYS.values()):
        assert (default, summary) == (key.readme_default, key.summary), name
        assert summary and default


def test_the_docs_script_finds_nothing_to_rewrite() -> None:
    spec = importlib.util.spec_from_file_location("config_docs", ROOT / "scripts" / "config_docs.py")
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0


# --- parsers that now lean on a library ----------------------------------------------------------


@pytest.mark.parametrize("word", sorted(configparser.ConfigParser.BOOLEAN_STATES))
def test_booleans_are_configparsers_words(tmp_path: Path, word: str) -> None:
    expected = configparser.ConfigParser.BOOLEAN_STATES[word]
    config = _load(tmp_path, _minimal(tmp_path, metadata_service_zookeeper_verify_certs=word.upper()))
    assert config.metadata_service_zookeeper_verify_certs is expected


@pytest.mark.parametrize("hosts", ["zk1:2181", "zk1:2181, zk2:2182/airflow", "[::1]:2181", "10.0.0.1:02181"])
def test_zookeeper_hosts_as_kazoo_reads_them(tmp_path: Path, hosts: str) -> None:
    config = _load(
        tmp_path, _minimal(tmp_path, metadata_service_type="zookeeper", metadata_service_zookeeper_nodes=hosts)
    )
    assert config.metadata_service_zookeeper_nodes == hosts


@pytest.mark.parametrize("hosts", ["zk1", "zk1:0", "zk1:65536", ":2181", "zk1:2181:1", "zk1:-1", ",zk1:2181"])
def test_zookeeper_hosts_kazoo_would_misread_are_refused(tmp_path: Path, hosts: str) -> None:
    # "zk1" and "zk1:0" kazoo reads as port 2181: a config writes its port out.
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, _minimal(tmp_path, metadata_service_type="zookeeper", metadata_service_zookeeper_nodes=hosts))
    assert "metadata_service_zookeeper_nodes" in str(info.value) and "is not host:port" in str(info.value)
