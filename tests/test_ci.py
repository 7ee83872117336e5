"""`.ci/run`: the README's `make test`, then the slow tests; an empty slow selection (pytest's exit 5) passes."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO


def ci(tmp_path: Path, pytest_status: int) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run a copy of .ci/run in a stand-in clone whose `make` and `.venv/bin/python` only log their arguments."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    log = tmp_path / "calls.log"
    bin_dir, venv = tmp_path / "bin", tmp_path / ".venv" / "bin"
    for folder, name, status in ((bin_dir, "make", 0), (venv, "python", pytest_status)):
        folder.mkdir(parents=True)
        (folder / name).write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> {log}\nexit {status}\n')
        (folder / name).chmod(0o755)
    env = os.environ | {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], env=env, capture_output=True, text=True,
                            timeout=60)
    return result, log.read_text().splitlines()


@pytest.mark.parametrize("pytest_status, ci_status", [(0, 0), (1, 1), (5, 0)])
def test_ci_runs_the_quick_then_the_slow_tests(tmp_path, pytest_status, ci_status):
    result, calls = ci(tmp_path, pytest_status)
    assert calls == ["make test", "python -m pytest -q -m slow"]
    assert result.returncode == ci_status, result.stdout + result.stderr

