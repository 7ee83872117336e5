"""Shared fixtures: a tiny synthetic corpus (espeak-ng) built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls gain nothing from threads, and on a busy 2-core machine the spinning threads cost 10-20x
    (a test module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Two languages × 3 speakers × 3 utterances → validated → Arrow corpus folder."""
    from data_prep.synthetic import generate_corpus
    from qtts.data.corpus import build_corpus
    from qtts.data.validate import validate_manifest

    root = tmp_path_factory.mktemp("tiny_corpus")
    manifest = generate_corpus(root / "synthetic", utterances_per_speaker=3, languages=["en", "de"])
    report = validate_manifest(manifest, root / "validated", progress=False)
    assert report.clean == 18, report.summary()
    build_corpus(root / "validated" / "clean.jsonl", root / "corpus")
    return root / "corpus"


@pytest.fixture(scope="session")
def talker_codes(tiny_corpus, tmp_path_factory) -> Path:
    """The corpus's clips through a random codec of the released frame rate (1920-sample hop, 16 levels)."""
    from qtts.data.extract_codes import ExtractConfig, extract_codes
    from tests.helpers.codec import random_12hz_codec

    folder = random_12hz_codec(tmp_path_factory.mktemp("codec12hz"))
    out = tmp_path_factory.mktemp("talker_codes")
    info = extract_codes(tiny_corpus.parent / "validated" / "clean.jsonl", folder, out,
                         ExtractConfig(num_workers=0, progress=False))
    assert info["rows"] == 18 and info["rejected"] == 0
    return out


def subprocess_env() -> dict[str, str]:
    """Environment for child training processes: no leftover DDP variables, quiet and single-threaded."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK",
                        "QTTS_RUN_DIR", "QTTS_RESUME_CKPT"}}
    env.update({"OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"})
    return env
