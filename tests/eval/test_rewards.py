"""Rewards for post-training: the real scorers on espeak-ng clips, the penalties exactly, custom callables."""

from __future__ import annotations

import pytest
import torch

from qtts.eval.rewards import RewardConfig, Rewards, RewardSample, duration_penalty, text_units
from tests.eval.test_asr import espeak

TEXT = "Please call me tomorrow morning at the office."
OTHER = "The quick brown fox jumps over the lazy dog."


def length_reward(samples):
    """A custom reward for the tests: the number of frames."""
    return [float(s.frames) for s in samples]


def test_real_scorers_rank_the_right_clip_above_a_wrong_text_clip(tmp_path):
    """Two espeak-ng clips, both meant to say TEXT: the one that says it scores a higher intelligibility; each clip
    is its own prompt (SIM 1); DNSMOS lands in [0, 1]; the total is the weighted sum."""
    right, sr = espeak(TEXT, tmp_path / "right.wav")
    wrong, _ = espeak(OTHER, tmp_path / "wrong.wav")
    samples = [RewardSample(TEXT, "en", w[0], sr, frames=40, reference=tmp_path / f"{name}.wav")
               for w, name in ((right, "right"), (wrong, "wrong"))]
    weights = {"intelligibility": 1.0, "similarity": 0.5, "naturalness": 0.25, "eos": 1.0, "duration": 1.0}
    scores = Rewards(RewardConfig(weights=weights))(samples)
    c = scores.components
    assert list(c) == list(weights)
    assert c["intelligibility"][0] > 0.7 and c["intelligibility"][1] < 0.3, c["intelligibility"]
    assert c["similarity"].tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    assert all(0.0 <= v <= 1.0 for v in c["naturalness"].tolist())
    expected = sum(w * c[n] for n, w in weights.items())
    torch.testing.assert_close(scores.total, expected)
    assert scores.total[0] > scores.total[1]
    rows = scores.rows()
    assert rows[0]["total"] == pytest.approx(float(scores.total[0])) and set(rows[0]) == {*weights, "total"}


def test_an_empty_clip_scores_zero_intelligibility_similarity_naturalness():
    sample = RewardSample(TEXT, "en", torch.zeros(0), 24000, frames=0, ended=True, reference=torch.zeros(16000))
    scores = Rewards({"weights": {"intelligibility": 1.0, "similarity": 1.0, "naturalness": 1.0}})([sample])
    assert {n: float(v[0]) for n, v in scores.components.items()} == {
        "intelligibility": 0.0, "similarity": 0.0, "naturalness": 0.0}


def test_penalties_exactly():
    assert text_units(TEXT, "en") == 8 and text_units("你好，世界！", "zh") == 4
    band = (2.0, 10.0)
    assert duration_penalty(40, 8, band) == 0.0  # 5 frames per word: inside
    assert duration_penalty(8, 8, band) == pytest.approx(-0.5)  # 1 per word: (2 - 1) / 2
    assert duration_penalty(120, 8, band) == pytest.approx(-0.5)  # 15 per word: (15 - 10) / 10
    assert duration_penalty(1000, 8, band) == -1.0  # capped
    assert duration_penalty(0, 8, band) == -1.0

    config = RewardConfig(weights={"eos": 2.0, "duration": 0.5}, frames_per_word=band, frames_per_char=(1.0, 4.0))
    samples = [RewardSample(TEXT, "en", torch.zeros(0), 24000, frames=40, ended=True),
               RewardSample(TEXT, "en", torch.zeros(0), 24000, frames=120, ended=False),
               RewardSample("你好，世界！", "zh", torch.zeros(0), 24000, frames=24, ended=True)]  # 6 per char
    scores = Rewards(config)(samples)
    assert scores.components["eos"].tolist() == [0.0, -1.0, 0.0]
    assert scores.components["duration"].tolist() == pytest.approx([0.0, -0.5, -0.5])
    assert scores.total.tolist() == pytest.approx([0.0, -2.25, -0.25])


def test_custom_rewards_by_import_path_or_callable():
    samples = [RewardSample(TEXT, "en", torch.zeros(0), 24000, frames=n) for n in (3, 7)]
    by_path = Rewards({"weights": {"tests.eval.test_rewards:length_reward": 0.5}})(samples)
    assert by_path.total.tolist() == [1.5, 3.5]
    given = Rewards({"weights": {"frames": 2.0}}, custom={"frames": length_reward})(samples)
    assert given.total.tolist() == [6.0, 14.0] and list(given.components) == ["frames"]


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="unknown component 'wer'"):
        Rewards({"weights": {"wer": 1.0}})
    with pytest.raises(ValueError, match="weights.eos"):
        RewardConfig(weights={"eos": "high"})
    with pytest.raises(ValueError, match="frames_per_word"):
        RewardConfig(frames_per_word=(5.0, 2.0))
    with pytest.raises(ValueError, match="cannot be imported"):
        Rewards({"weights": {"no_such_module_xyz:fn": 1.0}})
    with pytest.raises(ValueError, match="have no weight"):
        Rewards({"weights": {"eos": 1.0}}, custom={"frames": length_reward})


def test_reward_config_from_a_yaml_file(tmp_path):
    from qtts.eval.rewards import load_reward_config

    path = tmp_path / "rewards.yaml"
    path.write_text("weights: {intelligibility: 1.0, eos: 2.0}\nframes_per_word: [2, 8]\n")
    assert load_reward_config(path) == RewardConfig(weights={"intelligibility": 1.0, "eos": 2.0},
                                                    frames_per_word=(2.0, 8.0))
    path.write_text("weight: {eos: 1.0}\n")
    with pytest.raises(ValueError, match=r"rewards.yaml: unknown field\(s\) \['weight'\]"):
        load_reward_config(path)
    path.write_text("frames_per_char: [3, 1]\n")
    with pytest.raises(ValueError, match="rewards.yaml: rewards.frames_per_char"):
        load_reward_config(path)
