"""The documents built from the key registry: the ``init`` template and the README's key table.

``scripts/config_docs.py`` writes them into README.md and ``config/scheduler_failover_controller.cfg``;
a unit test checks that both are up to date.
"""

from __future__ import annotations

from .keys import KEYS, SECTION, THIS_HOST, Key
from .service_keys import SERVICE_ENV_PREFIX, SERVICE_KEYS
from .services import SERVICE_SECTION_PREFIX

README_HEADER = "| key | default | meaning |\n|---|---|---|\n"
SERVICE_README_HEADER = "| service key | default | meaning |\n|---|---|---|\n"
EXAMPLE_SERVICE = "triggerer"  # the service the template's commented example section configures
SAMPLE_HOST = "master1"  # the host config/scheduler_failover_controller.cfg is written for


def default_config_text(current_host: str) -> str:
    """A fully commented config with every key, for ``init``."""
    blocks = []
    for key in KEYS.values():
        comment = "\n".join(f"# {line}".rstrip() for line in key.doc.splitlines())
        blocks.append(f"{comment}\n{_template_line(key, current_host)}\n")
    return f"[{SECTION}]\n" + "\n".join(blocks) + "\n" + _example_service_section()


def _example_service_section() -> str:
    """A commented example section of a service (Airflow's triggerer), every service key documented."""
    lines = [
        "# " + "-" * 98,
        f"# Each service named in `services` has a section of its own (here, for services = {EXAMPLE_SERVICE}).",
        f"# Its keys may also be set as {SERVICE_ENV_PREFIX}<NAME>__<KEY>.",
        f"# [{SERVICE_SECTION_PREFIX}{EXAMPLE_SERVICE}]",
    ]
    for key in SERVICE_KEYS.values():
        lines += ["#"] + [f"# {line}".rstrip() for line in key.doc.splitlines()]
        value = key.sample if key.sample is not None else key.default or ""
        lines.append(f"# {key.name} = {value}".rstrip())
    return "\n".join(lines) + "\n"


def _template_line(key: Key, current_host: str) -> str:
    value = key.sample if key.sample is not None else key.default or ""
    line = f"{key.name} = {current_host if value == THIS_HOST else value}".rstrip()
    return f"# {line}" if key.in_comment else line


def readme_table() -> str:
    """The README's table of keys: name, default, meaning; one row per key."""
    rows = [f"| `{key.name}` | {key.readme_default} | {key.summary} |\n" for key in KEYS.values()]
    return README_HEADER + "".join(rows)


def service_readme_table() -> str:
    """The README's table of a service section's keys."""
    rows = [f"| `{key.name}` | {key.readme_default} | {key.summary} |\n" for key in SERVICE_KEYS.values()]
    return SERVICE_README_HEADER + "".join(rows)


def with_readme_table(readme: str) -> str:
    """``readme`` with its key tables (each from its header to the first blank line) replaced by
    :func:`readme_table` and :func:`service_readme_table`."""
    for header, table in ((README_HEADER, readme_table()), (SERVICE_README_HEADER, service_readme_table())):
        start = readme.index(header)
        end = readme.index("\n\n", start) + 1
        readme = readme[:start] + table + readme[end:]
    return readme
