"""The documents built from the key registry: the ``init`` template and the README's key table.

``scripts/config_docs.py`` writes them into README.md and ``config/scheduler_failover_controller.cfg``;
a unit test checks that both are up to date.
"""

from __future__ import annotations

from .keys import KEYS, SECTION, THIS_HOST, Key

README_HEADER = "| key | default | meaning |\n|---|---|---|\n"
SAMPLE_HOST = "master1"  # the host config/scheduler_failover_controller.cfg is written for


def default_config_text(current_host: str) -> str:
    """A fully commented config with every key, for ``init``."""
    blocks = []
    for key in KEYS.values():
        comment = "\n".join(f"# {line}".rstrip() for line in key.doc.splitlines())
        blocks.append(f"{comment}\n{_template_line(key, current_host)}\n")
    return f"[{SECTION}]\n" + "\n".join(blocks)


def _template_line(key: Key, current_host: str) -> str:
    value = key.sample if key.sample is not None else key.default or ""
    line = f"{key.name} = {current_host if value == THIS_HOST else value}".rstrip()
    return f"# {line}" if key.in_comment else line


def readme_table() -> str:
    """The README's table of keys: name, default, meaning; one row per key."""
    rows = [f"| `{key.name}` | {key.readme_default} | {key.summary} |\n" for key in KEYS.values()]
    return README_HEADER + "".join(rows)


def with_readme_table(readme: str) -> str:
    """``readme`` with its key table (from the header to the first blank line) replaced by :func:`readme_table`."""
    start = readme.index(README_HEADER)
    end = readme.index("\n\n", start) + 1
    return readme[:start] + readme_table() + readme[end:]
