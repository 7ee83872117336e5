"""The code passes ruff with the project's settings (``[tool.ruff]`` in pyproject.toml)."""

import subprocess
import sys

import pytest

from tests.conftest import REPO


def test_ruff_passes():
    pytest.importorskip("ruff")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "qtts", "data_prep",
                             "scripts", "tests", "benchmarks"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
