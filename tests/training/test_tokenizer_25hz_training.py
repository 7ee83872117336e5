"""Integration: stage 1 of the 25 Hz tokenizer (ASR with the VQ inside the encoder) trains on the synthetic corpus
through scripts/train.py, exports a tokenizer folder (+ asr_head/) that qtts (and qwen-tts, when installed) loads,
and a killed run resumes exactly."""

from __future__ import annotations

import importlib.util
import subprocess

import pytest
import torch

from qtts.eval.curves import read_metrics
from qtts.models.tokenizer_25hz import Tokenizer25Hz
from qtts.models.tokenizer_25hz.asr_head import load_asr_head
from qtts.training.datamodules import TranscribedAudioDataModule
from tests.conftest import REPO, subprocess_env
from tests.training.test_train_script import TRAIN, only_run


def args(corpus, root, name, max_steps, *extra):
    return TRAIN + [
        "experiment=tokenizer25_stage1_demo", f"experiment_name={name}", f"data.corpus={corpus}", f"run_root={root}",
        "trainer.accelerator=cpu", f"trainer.max_steps={max_steps}", "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false", "data.num_workers=0", "checkpoint.every_n_steps=1000", *extra,
    ]


def run(cmd):
    result = subprocess.run(cmd, env=subprocess_env() | {"PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_stage1_ctc_falls_codebook_is_used_and_the_export_loads(tiny_corpus, tmp_path):
    run(args(tiny_corpus, tmp_path, "stage1", 40, "trainer.check_val_every_n_epoch=5"))
    run_dir = only_run(tmp_path, "stage1")
    curves = read_metrics(run_dir)
    ctc = [v for _, v in curves["train/ctc"]]
    assert len(ctc) == 40
    first, last = sum(ctc[:5]) / 5, sum(ctc[-5:]) / 5
    assert last < 0.8 * first, ctc  # the ASR loss falls
    perplexity = [v for _, v in curves["train/vq_perplexity"]]
    assert min(perplexity[-10:]) > 2.0, perplexity  # more than one code in use (no collapse)
    assert all(0.0 <= v <= 100.0 for _, v in curves["val/wer"]) and curves.get("val/wer_en")  # the scorer ran

    export = run_dir / "export"
    tokenizer = Tokenizer25Hz.from_pretrained(export)
    head = load_asr_head(export)
    wav = torch.randn(16000) * 0.1
    codes = tokenizer.encode([wav]).codes[0]
    assert codes.shape == (25,) and 0 <= int(codes.min()) and int(codes.max()) < 64
    # The export holds the trained weights and codebook: the same as the last checkpoint's.
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    for key, value in tokenizer.state_dict().items():
        assert torch.equal(state[f"tokenizer.{key}"], value), key
    assert torch.equal(state["head.proj.weight"], head.proj.weight)
    out = tokenizer.encoder.tokenizer(*tokenizer.encoder.features([wav]))
    assert torch.equal(out.codes[0, : int(out.code_lengths[0])], codes)
    (text,) = head.transcribe(out.hidden, out.lengths)
    assert set(text) <= set(head.vocabulary)
    if importlib.util.find_spec("qwen_tts") is not None:
        modeling = pytest.importorskip("qwen_tts.core.tokenizer_25hz.modeling_qwen3_tts_tokenizer_v1")
        model_cls = modeling.Qwen3TTSTokenizerV1Model
        theirs = super(model_cls, model_cls).from_pretrained(export).state_dict()
        assert all(torch.equal(theirs[k], v) for k, v in tokenizer.state_dict().items())


@pytest.mark.slow  # three training subprocesses: ~25-45 s on 2 shared cores
def test_sigterm_then_resume_continues_exactly(tiny_corpus, tmp_path):
    """Killed mid-epoch, resumed: weights, optimizer, EMA codebook, data position and the (seed, step) generator
    continue, so every logged loss equals the uninterrupted run's."""
    run(args(tiny_corpus, tmp_path, "straight", 10, "trainer.check_val_every_n_epoch=1000"))
    reference = read_metrics(only_run(tmp_path, "straight"))
    killed = args(tiny_corpus, tmp_path, "killed", 10, "trainer.check_val_every_n_epoch=1000",
                  "+callbacks.kill._target_=tests.helpers.signals.SigtermDuringStep", "+callbacks.kill.step=5")
    subprocess.run(killed, env=subprocess_env() | {"PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True,
                   text=True, timeout=600)
    run_dir = only_run(tmp_path, "killed")
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 6  # the batch in flight finished
    run(args(tiny_corpus, tmp_path, "killed", 10, "trainer.check_val_every_n_epoch=1000", "resume=auto"))
    continued = read_metrics(run_dir)
    for name in ("train/ctc", "train/commitment", "train/vq_perplexity"):
        expected = dict(reference[name])
        got = dict(continued[name])
        assert sorted(got) == sorted(expected) and len(expected) == 10, name
        for step, value in expected.items():
            assert got[step] == pytest.approx(value, rel=1e-5, abs=1e-6), (name, step, got, expected)


@pytest.mark.slow  # two DDP processes: ~30 s on 2 shared cores
def test_two_process_ddp_keeps_the_codebook_identical_and_scores_every_clip(tiny_corpus, tmp_path):
    """2-process DDP (gloo on CPU): both ranks end with the same weights and EMA codebook (k-means start and restarts
    included), and validation scores the clips of both ranks together."""
    states = tmp_path / "states"
    run(args(tiny_corpus, tmp_path, "ddp", 6, "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
             "trainer.check_val_every_n_epoch=1", "data.max_seconds_per_batch=20.0", "data.val_fraction=0.3",
             f"+callbacks.rank_state={{_target_: tests.helpers.state.SaveRankState, folder: {states}}}"))
    rank0, rank1 = (torch.load(states / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    book = "tokenizer.encoder.tokenizer.audio_quantizer.rvqs.0."
    assert float(rank0[book + "inited"]) == 1.0 and not torch.equal(rank0[book + "cluster_size"],
                                                                     torch.ones_like(rank0[book + "cluster_size"]))
    for key in rank0:
        assert torch.allclose(rank0[key].float(), rank1[key].float(), atol=1e-6), key
    curves = read_metrics(only_run(tmp_path, "ddp"))
    assert curves["val/wer"] and curves.get("val/wer_en") and curves.get("val/wer_de")
    data = TranscribedAudioDataModule(str(tiny_corpus), val_fraction=0.3, num_workers=0)
    data.setup()
    assert {v for _, v in curves["val/utterances"]} == {float(len(data.val_set))}  # both ranks' clips, once each
