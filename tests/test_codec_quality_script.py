"""benchmarks/codec_quality.py: codebook usage on a hand example, and a clear non-zero exit when it cannot measure."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, subprocess_env

SCRIPT = REPO / "benchmarks" / "codec_quality.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("codec_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_codebook_usage_counts_distinct_codes_and_perplexity(script):
    codes = [torch.tensor([[0, 5], [1, 5]]), torch.tensor([[2, 5], [3, 5]])]  # level 0: 4 codes once, level 1: one
    usage = script.codebook_usage(codes, codebook_size=8)
    assert [u["distinct"] for u in usage] == [4, 1]
    assert usage[0]["perplexity"] == pytest.approx(4.0) and usage[1]["perplexity"] == pytest.approx(1.0)


def test_exits_non_zero_naming_what_is_missing(tmp_path):
    missing = tmp_path / "no_codec"
    result = subprocess.run([sys.executable, str(SCRIPT), str(missing), "--testset", str(tmp_path / "t.jsonl")],
                            env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "cannot measure" in result.stderr and str(missing) in result.stderr
