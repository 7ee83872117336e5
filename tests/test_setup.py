"""What `make setup` (scripts/setup.sh) promises about the machine it leaves behind."""

import importlib.util
import subprocess
import sys

import pytest


@pytest.mark.skipif(importlib.util.find_spec("sox") is None, reason="the sox Python package is not installed")
def test_sox_program_is_installed():
    """The `sox` Python package (a qwen-tts dependency) looks for the SoX program on import and prints a warning
    when it is missing; setup installs the Debian package, so importing it is quiet."""
    result = subprocess.run([sys.executable, "-c", "import sox"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "SoX could not be found" not in result.stdout + result.stderr, "run `make setup` (apt-get install sox)"
