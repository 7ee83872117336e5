"""Integration: a tiny codec GAN-trains on the synthetic corpus through scripts/train.py and exports a folder
that both qtts and the official qwen-tts load."""

from __future__ import annotations

import csv
import subprocess

import pytest
import torch

from qtts.models.codec.model import SpeechTokenizer
from tests.conftest import REPO, subprocess_env
from tests.training.test_train_script import TRAIN, only_run


def test_tiny_codec_trains_and_exports(tiny_corpus, tmp_path):
    args = TRAIN + [
        "experiment=codec_demo", f"data.corpus={tiny_corpus}", f"run_root={tmp_path}", "trainer.accelerator=cpu",
        "trainer.max_steps=50", "task.gan_warmup_steps=20", "trainer.log_every_n_steps=1",
        "trainer.check_val_every_n_epoch=1000", "trainer.enable_progress_bar=false", "data.num_workers=0",
        "data.crop_seconds=0.5", "data.max_seconds_per_batch=2.0", "checkpoint.every_n_steps=1000",
    ]
    result = subprocess.run(args, env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = only_run(tmp_path, "codec_demo")
    with open(run_dir / "logs" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/mel")]
    mel = [float(r["train/mel"]) for r in rows]
    assert len(mel) >= 30
    first, last = sum(mel[:5]) / 5, sum(mel[-5:]) / 5
    assert last < 0.8 * first, mel  # reconstruction clearly improves
    assert any(r.get("train/disc_loss") for r in rows) and any(r.get("train/adv") for r in rows)  # GAN phase ran

    export = run_dir / "export"
    codec = SpeechTokenizer.from_pretrained(export)
    wav = torch.randn(2000) * 0.1
    codes = codec.encode([wav])[0]
    assert codes.shape == (16, 4) and codes.min() >= 0 and codes.max() < 128  # ceil(2000/128) frames, 4 levels
    assert codec.decode([codes])[0].shape == (16 * 128,)
    qwen = pytest.importorskip("qwen_tts")
    official = qwen.Qwen3TTSTokenizer.from_pretrained(str(export))
    encoded = official.encode(wav.numpy(), sr=24000)
    assert torch.equal(encoded.audio_codes[0].cpu(), codes)
