"""What a wheel install needs besides the code: the Hydra configs ship as package data (``qtts train``, the demo and
``compose_config`` read them from the package, not from a checkout)."""

import fnmatch
import tomllib

from qtts.training.configs import CONFIG_DIR
from tests.conftest import REPO


def test_every_config_file_is_package_data():
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["qtts"]
    package = CONFIG_DIR.parent
    files = [p.relative_to(package).as_posix() for p in CONFIG_DIR.rglob("*") if p.is_file()]
    assert files and CONFIG_DIR.is_relative_to(package)
    unshipped = [f for f in files if not any(fnmatch.fnmatchcase(f, g) and f.count("/") == g.count("/") for g in globs)]
    assert not unshipped, f"add to [tool.setuptools.package-data] qtts: {unshipped}"
