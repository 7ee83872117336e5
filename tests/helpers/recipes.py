"""The command lines the recipe READMEs document, so the tests run exactly those."""

from __future__ import annotations

import re

from tests.conftest import REPO


def readme_usage(recipe: str) -> str:
    """The arguments of ``bash recipes/<recipe>/run.sh ...`` in the recipe's README (exactly one such line)."""
    readme = (REPO / "recipes" / recipe / "README.md").read_text()
    lines = re.findall(rf"^bash recipes/{recipe}/run\.sh (.+)$", readme, re.M)
    assert len(lines) == 1, f"recipes/{recipe}/README.md: expected one usage line, found {lines}"
    return lines[0].strip()


def script_usage(recipe: str) -> str:
    """The arguments of the ``# Usage: run.sh ...`` comment of the recipe's script."""
    script = (REPO / "recipes" / recipe / "run.sh").read_text()
    found = re.search(r"^# Usage: run\.sh (.+?)(\s+\(README\.md\))?$", script, re.M)
    assert found, f"recipes/{recipe}/run.sh: no '# Usage: run.sh ...' line"
    return found.group(1).strip()


def documented_args(recipe: str, values: dict[str, object]) -> list[str]:
    """The README's usage line with each placeholder (``CODE``) or optional group (``[--tokens FILE]``) replaced by
    ``values[placeholder]``: a value, or a list of values (an optional group may be left out with ``[]``)."""
    args: list[str] = []
    for word in re.findall(r"\[[^\]]*\]|\S+", readme_usage(recipe)):
        assert word in values, f"recipes/{recipe}/README.md documents {word!r}: give the test a value for it"
        value = values[word]
        args += [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    return args


def readme_step(recipe: str, step: str) -> str:
    """The command of a step row (``| 6. listen | `qtts synth …` | …``) of the recipe README's table."""
    readme = (REPO / "recipes" / recipe / "README.md").read_text()
    rows = re.findall(rf"^\| {re.escape(step)} \| `([^`]+)`", readme, re.M)
    assert len(rows) == 1, f"recipes/{recipe}/README.md: expected one row '{step}', found {rows}"
    return rows[0]
