"""DPO pair mining on a tiny random model: best vs worst of each prompt's samples, close pairs dropped, an HF dataset,
resumable, the stored requests rebuilding what was sampled."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from qtts.eval.pairs import mine_pairs, pair_requests
from qtts.eval.rewards import RewardConfig, Rewards

FRAMES = 6
CALLS = []


def loudness(samples):
    """A custom reward for the tests: the mean absolute sample (distinct for every random clip)."""
    CALLS.append(len(samples))
    return [float(s.audio.abs().mean()) if s.audio.numel() else 0.0 for s in samples]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    from qtts.models.random_release import tiny_codec_config, write_random_release
    from qtts.models.talker import tiny

    return write_random_release(tmp_path_factory.mktemp("tts") / "base", tiny("base", predictor_hidden=32),
                                tiny_codec_config(), eos_scale=3.0)


@pytest.fixture
def prompts(tmp_path):
    t = np.arange(6400) / 16000
    sf.write(tmp_path / "p.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    rows = [{"id": "a", "text": "Hello there.", "language": "en"},
            {"id": "b", "text": "Good night, moon.", "language": "en", "ref_audio": "p.wav", "ref_text": "A tone."},
            {"id": "c", "text": "One more line.", "language": "en"}]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_mine_pairs_best_vs_worst_into_a_dataset_resumable(base_model, prompts, tmp_path):
    import datasets

    from qtts.inference import Synthesizer

    synth = Synthesizer.from_pretrained(base_model)
    rewards = Rewards(RewardConfig(weights={"tests.eval.test_pairs:loudness": 1.0, "eos": 0.5}))
    out = tmp_path / "pairs"
    CALLS.clear()
    summary = mine_pairs(synth, prompts, out, group_size=4, rewards=rewards, min_gap=0.0, batch_size=2,
                         max_new_tokens=FRAMES, progress=False)
    assert CALLS == [8, 4]  # two batches: 2 prompts × 4 samples, then 1 × 4
    assert summary["prompts"] == 3 and summary["pairs"] == 3 and summary["dropped"] == 0
    table = datasets.load_from_disk(str(out / "dataset"))
    assert table["id"] == ["a", "b", "c"]
    lines = {json.loads(line)["id"]: json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()}
    for row in table:
        line = lines[row["id"]]
        assert row["chosen_reward"] == max(line["rewards"]) and row["rejected_reward"] == min(line["rewards"])
        assert row["chosen_reward"] - row["rejected_reward"] == pytest.approx(line["gap"]) and line["gap"] > 0
        for side in ("chosen", "rejected"):
            c = row[f"{side}_components"]
            assert row[f"{side}_reward"] == pytest.approx(c["tests.eval.test_pairs:loudness"] + 0.5 * c["eos"])
            codes = torch.tensor(row[f"{side}_codes"])
            assert codes.shape[1] == 16 and 0 < len(codes) <= FRAMES
            assert row[f"{side}_ended"] == (len(codes) < FRAMES) or len(codes) == FRAMES
    cloned = table[1]
    assert cloned["ref_text"] == "A tone." and len(cloned["xvector"]) > 0 and len(cloned["ref_codes"]) > 0
    assert table[0]["xvector"] is None and table[0]["ref_codes"] is None

    # The stored requests score the chosen codes as the model sampled them (teacher forced, finite).
    requests = pair_requests(list(table))
    assert requests[1].prompt.in_context and not requests[1].non_streaming_mode and requests[0].prompt is None
    with torch.no_grad():
        logprobs = synth.code_logprobs(requests, [torch.tensor(r["chosen_codes"]) for r in table],
                                       [r["chosen_ended"] for r in table])
    assert torch.isfinite(logprobs.sequence).all()

    # Resumed: nothing sampled again, the same dataset; other settings are refused.
    CALLS.clear()
    again = mine_pairs(synth, prompts, out, group_size=4, rewards=rewards, min_gap=0.0, batch_size=2,
                       max_new_tokens=FRAMES, progress=False)
    assert CALLS == [] and again == summary
    with pytest.raises(ValueError, match="other settings"):
        mine_pairs(synth, prompts, out, group_size=3, rewards=rewards, min_gap=0.0, max_new_tokens=FRAMES,
                   progress=False)

    # Pairs closer than min_gap are dropped (and the dataset keeps its columns when empty).
    wide = mine_pairs(synth, prompts, tmp_path / "wide", group_size=4, rewards=rewards, min_gap=10.0,
                      max_new_tokens=FRAMES, progress=False)
    assert wide["pairs"] == 0 and wide["dropped"] == 3
    empty = datasets.load_from_disk(str(tmp_path / "wide" / "dataset"))
    assert len(empty) == 0 and "chosen_codes" in empty.column_names


def test_bad_arguments_are_named(base_model, prompts, tmp_path):
    with pytest.raises(ValueError, match="group_size"):
        mine_pairs(base_model, prompts, tmp_path / "x", group_size=1)
    with pytest.raises(ValueError, match="min_gap"):
        mine_pairs(base_model, prompts, tmp_path / "x", min_gap=-1.0)


def test_mine_pairs_command(base_model, prompts, tmp_path, capsys):
    """``qtts mine-pairs MODEL PROMPTS --out DIR --rewards FILE``: the summary printed, the dataset written; a bad
    rewards file is one line naming it and exit status 2."""
    from qtts.cli import main

    rewards = tmp_path / "rewards.yaml"
    rewards.write_text("weights: {tests.eval.test_pairs:loudness: 1.0, duration: 0.5}\n")
    out = tmp_path / "mined"
    assert main(["mine-pairs", str(base_model), str(prompts), "--out", str(out), "--rewards", str(rewards),
                 "--group-size", "2", "--min-gap", "0", "--max-new-tokens", "4", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["prompts"] == 3 and summary["pairs"] + summary["dropped"] == 3
    assert (out / "dataset" / "dataset_info.json").is_file()
    rewards.write_text("weights: {eos: 1.0}\nband: [1, 2]\n")
    assert main(["mine-pairs", str(base_model), str(prompts), "--out", str(tmp_path / "bad"), "--rewards",
                 str(rewards)]) == 2
    assert "rewards.yaml: unknown field(s) ['band']" in capsys.readouterr().err
