"""Integration: a tiny codec GAN-trains on the synthetic corpus through scripts/train.py and exports a folder
that both qtts and the official qwen-tts load."""

from __future__ import annotations

import subprocess

import pytest
import torch

from qtts.eval.curves import read_metrics
from qtts.models.codec.model import SpeechTokenizer
from tests.conftest import REPO, subprocess_env
from tests.training.test_train_script import TRAIN, only_run


def test_tiny_codec_trains_and_exports(tiny_corpus, tmp_path):
    args = TRAIN + [
        "experiment=codec_demo", "model=codec_tiny", f"data.corpus={tiny_corpus}", f"run_root={tmp_path}",
        "trainer.accelerator=cpu", "trainer.max_steps=50", "task.gan_warmup_steps=20", "trainer.log_every_n_steps=1",
        "trainer.check_val_every_n_epoch=1000", "trainer.enable_progress_bar=false", "data.num_workers=0",
        "data.crop_seconds=0.5", "data.max_seconds_per_batch=2.0", "checkpoint.every_n_steps=1000",
    ]
    result = subprocess.run(args, env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = only_run(tmp_path, "codec_demo")
    curves = read_metrics(run_dir)
    mel = [v for _, v in curves["train/mel"]]
    assert len(mel) >= 30
    first, last = sum(mel[:5]) / 5, sum(mel[-5:]) / 5
    assert last < 0.8 * first, mel  # reconstruction clearly improves
    assert curves.get("train/disc_loss") and curves.get("train/adv")  # the GAN phase ran

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


def test_two_process_ddp_keeps_codebooks_identical(tiny_corpus, tmp_path):
    """2-process DDP (gloo on CPU) through scripts/train.py, across the GAN warm-up boundary: every rank ends
    with the same codebooks (EMA statistics are all-reduced), the same weights and the same step count."""
    states = tmp_path / "states"
    args = TRAIN + [
        "experiment=codec_demo", "model=codec_tiny", f"data.corpus={tiny_corpus}", f"run_root={tmp_path}",
        "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "trainer.max_steps=10",
        "task.gan_warmup_steps=4", "trainer.log_every_n_steps=1", "trainer.check_val_every_n_epoch=1000",
        "trainer.enable_progress_bar=false", "data.num_workers=0", "data.crop_seconds=0.5",
        "data.max_seconds_per_batch=2.0", "checkpoint.every_n_steps=1000",
        f"+callbacks.rank_state={{_target_: tests.helpers.state.SaveRankState, folder: {states}}}",
    ]
    env = subprocess_env() | {"PYTHONPATH": str(REPO)}
    result = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rank0, rank1 = (torch.load(states / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    codebooks = [k for k in rank0 if "quantizer" in k and k.startswith("codec.encoder.")
                 and k.endswith(("embed_sum", "cluster_usage"))]
    assert codebooks
    trained = 0
    for key in codebooks:
        assert torch.equal(rank0[key], rank1[key]), key
        trained += bool(rank0[key].ne(1.0 if key.endswith("cluster_usage") else 0.0).any())  # left the reset state
    assert trained >= len(codebooks) // 2  # the codebooks did train (levels beyond dropout may not have)
    for key in rank0:
        assert torch.allclose(rank0[key].float(), rank1[key].float(), atol=1e-6), key
    assert int(rank0["generator_steps"]) == int(rank1["generator_steps"]) == 4 + 3  # 4 warm-up + 3 GAN steps



def codec_step_losses(run_dir) -> dict[int, tuple[float, ...]]:
    """Per logged step: the generator's mel loss and, once the GAN runs, the discriminator loss."""
    curves = read_metrics(run_dir)
    disc = dict(curves.get("train/disc_loss", []))
    return {step: (mel, disc[step]) if step in disc else (mel,) for step, mel in curves["train/mel"]}


def test_sigterm_then_resume_continues_the_gan_exactly(tiny_corpus, tmp_path):
    """Killed mid-run just after the GAN phase began, resumed: generator and discriminator, both optimizers,
    the EMA codebooks, the generator-step counter and the RNG continue, so every logged loss equals the
    uninterrupted run's."""
    env = subprocess_env() | {"PYTHONPATH": str(REPO)}

    def args(root, name):
        return TRAIN + [
            "experiment=codec_demo", "model=codec_tiny", f"experiment_name={name}", f"data.corpus={tiny_corpus}",
            f"run_root={root}", "trainer.accelerator=cpu", "trainer.max_steps=13", "task.gan_warmup_steps=3",
            "trainer.log_every_n_steps=1", "trainer.check_val_every_n_epoch=1000",
            "trainer.enable_progress_bar=false", "data.num_workers=0", "data.crop_seconds=0.5",
            "data.max_seconds_per_batch=2.0", "checkpoint.every_n_steps=1000",
        ]

    straight = subprocess.run(args(tmp_path, "straight"), env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=600)
    assert straight.returncode == 0, straight.stdout[-3000:] + straight.stderr[-3000:]
    reference = codec_step_losses(only_run(tmp_path, "straight"))

    # Lightning's global step counts both optimizers: 3 warm-up batches (1 step each), then 2 per batch.
    killed = subprocess.run(args(tmp_path, "killed") + [
                                "+callbacks.kill._target_=tests.helpers.signals.SigtermDuringStep",
                                "+callbacks.kill.step=5"],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    run_dir = only_run(tmp_path, "killed")
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 7, (killed.stdout + killed.stderr)[-3000:]  # the batch in flight finished
    assert int(last["state_dict"]["generator_steps"]) == 5
    assert any(k.startswith("discriminator.") for k in last["state_dict"]) and len(last["optimizer_states"]) == 2

    resumed = subprocess.run(args(tmp_path, "killed") + ["resume=auto"], env=env, cwd=REPO, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    continued = codec_step_losses(run_dir)
    assert sorted(continued) == sorted(reference) and len(reference) >= 6
    assert any(len(v) == 2 for v in reference.values())  # the discriminator ran
    for step, values in reference.items():
        assert continued[step] == pytest.approx(values, rel=1e-4, abs=1e-5), (step, continued, reference)


@pytest.mark.slow  # a training subprocess: ~35 s on 2 shared cores
def test_cpu_60min_recipe_composes_and_trains_a_few_steps(tiny_corpus, tmp_path):
    """The committed recipe (benchmarks/QUALITY.md) runs as committed: warm-up step on the continuous latent, then
    quantized steps, and exports a 12.5 Hz / 16-group folder."""
    args = TRAIN + [
        "experiment=codec_cpu_60min", f"data.corpus={tiny_corpus}", f"run_root={tmp_path}", "trainer.max_steps=3",
        "task.vq_warmup_steps=1", "trainer.log_every_n_steps=1", "data.num_workers=0",
    ]
    result = subprocess.run(args, env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = only_run(tmp_path, "codec_cpu_60min")
    levels = [v for _, v in read_metrics(run_dir)["train/levels"]]
    assert levels[0] == 0.0  # the warm-up step: no codes
    assert all(v >= 1 for v in levels[1:]) and len(levels) == 3
    codec = SpeechTokenizer.from_pretrained(run_dir / "export")
    codes = codec.encode([torch.randn(1920 * 3) * 0.1])[0]
    assert codes.shape == (3, 16) and codes.max() < 2048
