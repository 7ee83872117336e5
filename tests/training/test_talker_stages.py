"""The paper's pretraining stages as configs: S1 → S2 → S3 chained at tiny size on the synthetic codes."""

from __future__ import annotations

import subprocess

import pytest

from qtts.data.mixture import Source, mix_sources
from qtts.models.talker.model import TTSModel
from tests.conftest import REPO, subprocess_env
from tests.training.test_train_script import TRAIN, only_run


def stage(name: str, root, codes, steps: int, *extra: str) -> subprocess.CompletedProcess:
    args = TRAIN + [
        f"experiment={name}", "model=talker_tiny", f"run_root={root}", "trainer.accelerator=cpu",
        "trainer.precision=32-true", f"trainer.max_steps={steps}", "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=null", "trainer.check_val_every_n_epoch=1000", "trainer.enable_progress_bar=false",
        "data.num_workers=0", "data.max_tokens_per_batch=1200", "data.reference_seconds=2.0", "data.val_fraction=0.0",
        "checkpoint.every_n_steps=1000", "task.warmup_steps=1", "data.pack_length=600", "data.max_length=600",
        f"data.codes=[{{path: {codes}}}]", *extra,
    ]
    return subprocess.run(args, env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=600)


# ~1 min on an idle 2-core machine; the configs are checked in test_config, training in test_talker_training
@pytest.mark.slow
def test_s1_s2_s3_chain(talker_codes, tmp_path):
    s1 = stage("pretrain_s1", tmp_path, talker_codes, 3)
    assert s1.returncode == 0, s1.stdout[-3000:] + s1.stderr[-3000:]
    s1_export = only_run(tmp_path, "pretrain_s1") / "export"

    missing = stage("pretrain_s2", tmp_path / "missing", talker_codes, 2)  # S2 must be told where S1 is
    assert missing.returncode != 0 and "init_from" in missing.stdout + missing.stderr

    s2 = stage("pretrain_s2", tmp_path, talker_codes, 2, f"task.init_from={s1_export}",
               f"data.codes=[{{path: {talker_codes}, keep_unscored: true, min_quality: 3.5}}]")
    assert s2.returncode == 0, s2.stdout[-3000:] + s2.stderr[-3000:]
    s2_run = only_run(tmp_path, "pretrain_s2")
    s3 = stage("pretrain_s3", tmp_path, talker_codes, 2, f"task.init_from={s2_run / 'export'}")
    assert s3.returncode == 0, s3.stdout[-3000:] + s3.stderr[-3000:]
    final = TTSModel.from_pretrained(only_run(tmp_path, "pretrain_s3") / "export")
    first = TTSModel.from_pretrained(s1_export)
    changed = [k for k, v in final.state_dict().items() if not v.equal(first.state_dict()[k])]
    assert changed  # S2 and S3 continued training the S1 weights


def test_mixture_weights_quality_and_long_upsampling(talker_codes, tmp_path):
    base = mix_sources([str(talker_codes)])
    base_ids, base_durations = list(base["id"]), list(base["duration"])
    assert len(base) == 18
    doubled = mix_sources([{"path": str(talker_codes), "weight": 2.0}])
    assert sorted(doubled["id"]) == sorted(base_ids * 2)
    half = mix_sources([Source(str(talker_codes), weight=0.5)], seed=1)
    assert 3 <= len(half) <= 15 and len(set(half["id"])) == len(half)
    # fixed by the seed
    assert list(half["id"]) == list(mix_sources([Source(str(talker_codes), weight=0.5)], seed=1)["id"])
    durations = sorted(base_durations)
    cut = durations[len(durations) // 2]
    long = mix_sources([Source(str(talker_codes), upsample_longer_than=cut, upsample_factor=3.0)])
    n_long = sum(d >= cut for d in base_durations)
    assert len(long) == 18 + 2 * n_long
    # No quality score in this corpus: unscored rows are kept or dropped as asked.
    assert len(mix_sources([Source(str(talker_codes), min_quality=3.0)])) == 18
    with pytest.raises(ValueError, match="no row left"):
        mix_sources([Source(str(talker_codes), min_quality=3.0, keep_unscored=False)])
    # a language held out of one source and the only language of another (codes or names)
    languages = dict(zip(base_ids, base["language"]))
    without_de = mix_sources([Source(str(talker_codes), exclude_languages=["german"])])
    only_de = mix_sources([{"path": str(talker_codes), "languages": ["de"]}])
    assert {languages[i] for i in without_de["id"]} == {"en"} and {languages[i] for i in only_de["id"]} == {"de"}
    assert len(without_de) + len(only_de) == 18
    with pytest.raises(ValueError, match="no row left"):
        mix_sources([Source(str(talker_codes), languages=["ja"])])


def test_init_from_continues_a_saved_model(tmp_path):
    """What S2 and S3 do with the previous stage's export: the task starts from exactly those weights."""
    import torch

    from qtts.models.talker.config import tiny
    from qtts.tasks.talker import TalkerTask

    torch.manual_seed(3)
    saved = TTSModel(tiny())
    saved.save_pretrained(tmp_path / "s1")
    task = TalkerTask(model=tiny(talker_hidden=32), init_from=str(tmp_path / "s1"))  # the folder's config wins
    assert task.config.talker_config.hidden_size == 64
    for key, value in saved.state_dict().items():
        assert torch.equal(task.model.state_dict()[key], value), key
    assert task.model.training
