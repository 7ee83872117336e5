"""The held-out evaluation callback: the model being trained speaks held-out sentences, the built-in ASR scores them,
``val/wer`` and audio reach the loggers, the model is back in train mode, and a resumed run stays exact."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from qtts.data.talker_dataset import collate_talker
from qtts.eval.curves import read_metrics
from qtts.models.talker.config import tiny
from qtts.tasks.talker import TalkerTask
from qtts.training.datamodules import TalkerDataModule
from qtts.training.talker_eval import HeldOutEvaluation
from tests.training.test_talker_strategies import run, trainer_state
from tests.training.test_train_script import TRAIN, only_run


@pytest.fixture(scope="module")
def heldout(tiny_corpus, tmp_path_factory) -> Path:
    """Two English sentences not in the corpus, spoken in the voice of corpus clips: x-vector only and in-context."""
    clips = [json.loads(line) for line in (tiny_corpus.parent / "validated" / "clean.jsonl").read_text().splitlines()]
    english = [c for c in clips if c["language"] == "en"]
    path = tmp_path_factory.mktemp("heldout") / "test.jsonl"
    rows = [{"id": "h0", "text": "The kettle is boiling in the kitchen.", "language": "en",
             "ref_audio": english[0]["audio"]},
            {"id": "h1", "text": "Please close the window before you leave.", "language": "en",
             "ref_audio": english[1]["audio"], "ref_text": english[1]["text"]},
            {"id": "d0", "text": "Das Wetter ist heute schön.", "language": "de"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_evaluate_scores_and_restores_train_mode_and_rngs(heldout, talker_codes):
    codec = json.loads((talker_codes / "info.json").read_text())["codec"]
    callback = HeldOutEvaluation(str(heldout), count=5, languages=["en"], codec=codec, max_new_tokens=12)
    assert [s.id for s in callback.sentences] == ["h0", "h1"]  # German left out
    torch.manual_seed(0)
    task = TalkerTask(tiny()).train()
    task.model.speaker_encoder.eval()  # a module kept in eval mode stays so
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = random.random(), np.random.rand(), torch.rand(3)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    metrics, wavs, rate = callback.evaluate(task)
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(3), expected[2])
    assert task.training and task.model.talker.training and not task.model.speaker_encoder.training
    assert set(metrics) == {"wer"} and math.isfinite(metrics["wer"]) and metrics["wer"] >= 0
    assert rate == 24000 and len(wavs) == 2
    assert all(0 < len(w) <= 12 * 1920 and torch.isfinite(w).all() for w in wavs)
    # training goes on after the generation: nothing it cached (inference tensors) breaks a backward pass
    data = TalkerDataModule(str(talker_codes), val_fraction=0.0, num_workers=0)
    data.setup()
    task.losses(collate_talker([data.train_set[(i, i)] for i in range(2)])).total.backward()
    assert all(torch.isfinite(p.grad).all() for p in task.model.talker.parameters() if p.grad is not None)


def test_the_voice_and_text_layout_reach_every_request(heldout, talker_codes, monkeypatch):
    """A run trained on x-vector examples in the non-streaming layout is asked in that layout (h1 has a ref_text:
    in-context unless the x-vector voice is asked)."""
    import qtts.eval.heldout as heldout_module

    made = []

    def recording(*args, **kwargs):
        made.extend(requests := item_requests(*args, **kwargs))
        return requests

    item_requests = heldout_module.item_requests
    monkeypatch.setattr(heldout_module, "item_requests", recording)
    codec = json.loads((talker_codes / "info.json").read_text())["codec"]
    callback = HeldOutEvaluation(str(heldout), languages=["en"], codec=codec, max_new_tokens=4, voice="xvector",
                                 text_layout="non_streaming")
    torch.manual_seed(0)
    callback.evaluate(TalkerTask(tiny()).train())
    assert len(made) == 2 and all(r.non_streaming_mode and not r.prompt.in_context for r in made)


def test_a_bad_test_set_is_named(tmp_path, heldout):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        HeldOutEvaluation(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="no sentences in languages"):
        HeldOutEvaluation(str(heldout), languages=["fr"])


STEPS, KILL_STEP = 10, 4


def eval_args(codes: Path, root: Path, name: str, sentences: Path) -> list[str]:
    """Validation every 2 training batches, the callback on every 3rd validation (steps 6 and 12: once here)."""
    return TRAIN + [
        "experiment=talker_demo", f"data.codes={codes}", f"run_root={root}", f"experiment_name={name}",
        "trainer.accelerator=cpu", f"trainer.max_steps={STEPS}", "trainer.log_every_n_steps=1",
        "trainer.check_val_every_n_epoch=1", "trainer.val_check_interval=2", "trainer.enable_progress_bar=false",
        "data.num_workers=0", "data.max_tokens_per_batch=600", "data.val_fraction=0.2", "checkpoint.every_n_steps=3",
        "task.warmup_steps=2", "task.log_media=false", "+callbacks=heldout_eval",
        f"callbacks.heldout_eval.sentences={sentences}", "callbacks.heldout_eval.every=3",
        "callbacks.heldout_eval.max_new_tokens=12", "callbacks.heldout_eval.languages=[en]",
    ]


def logged(run_dir: Path) -> tuple[dict[int, float], dict[int, float]]:
    """(train loss by step, val/wer by step) of a run's metrics.csv."""
    curves = read_metrics(run_dir)
    return dict(curves["train/loss"]), dict(curves.get("val/wer", []))


@pytest.mark.slow
def test_training_logs_heldout_wer_and_audio_and_resumes_exactly(talker_codes, heldout, tmp_path):
    run(eval_args(talker_codes, tmp_path, "straight", heldout))
    straight = only_run(tmp_path, "straight")
    loss, wer = logged(straight)
    assert sorted(loss) == list(range(STEPS))
    assert list(wer) == [6] and all(math.isfinite(v) and v >= 0 for v in wer.values()), wer
    media = sorted(p.name for p in (straight / "logs" / "media").glob("*.wav"))
    assert media == ["val_heldout_h0-step00000006.wav", "val_heldout_h1-step00000006.wav"], media

    args = eval_args(talker_codes, tmp_path, "killed", heldout)
    out = run(args + ["+callbacks.kill._target_=tests.helpers.signals.SigtermDuringStep",
                      f"+callbacks.kill.step={KILL_STEP}"])
    killed = only_run(tmp_path, "killed")
    assert "SIGTERM: saved" in out
    assert trainer_state(killed / "checkpoints" / "last.ckpt")["global_step"] == KILL_STEP + 1
    run(args + ["resume=auto"])
    resumed_loss, resumed_wer = logged(killed)
    assert sorted(resumed_loss) == list(range(STEPS))
    for step, value in loss.items():
        assert resumed_loss[step] == pytest.approx(value, rel=1e-4), (step, resumed_loss, loss)
    assert resumed_wer == pytest.approx(wer)  # the validation count continued: the same step, the same score


def test_sharded_strategies_are_refused_before_the_first_step(heldout):
    from types import SimpleNamespace

    from lightning.pytorch.strategies import ModelParallelStrategy

    callback = HeldOutEvaluation(str(heldout))
    with pytest.raises(ValueError, match="ModelParallelStrategy"):
        callback.on_fit_start(SimpleNamespace(strategy=ModelParallelStrategy()), None)
