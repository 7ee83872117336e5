"""Each recipe's README documents the command line its run.sh takes (quick; the slow tests run the documented form)."""

import subprocess

import pytest

from tests.conftest import REPO
from tests.helpers.recipes import readme_usage, script_usage

RECIPES = sorted(p.parent.name for p in (REPO / "recipes").glob("*/run.sh"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_readme_and_script_agree(recipe):
    assert readme_usage(recipe) == script_usage(recipe)


@pytest.mark.parametrize("recipe", RECIPES)
def test_too_few_arguments_print_the_usage(recipe):
    result = subprocess.run(["bash", str(REPO / "recipes" / recipe / "run.sh")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and readme_usage(recipe) in result.stderr, result.stderr
