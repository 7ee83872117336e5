"""Logits rules equal Hugging Face's (which qwen-tts's generation runs), and the code sampler's constraints."""

import json

import pytest
import torch
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from qtts.inference.sampling import CodeSampler, SamplingConfig, choose, chosen_logprob, penalize, warp


def logits(batch=3, vocab=64, seed=0):
    return torch.randn(batch, vocab, generator=torch.Generator().manual_seed(seed)) * 3


def test_repetition_penalty_equals_hugging_face():
    x = logits()
    history = torch.tensor([[1, 5, 5, 9], [0, 0, 0, 0], [63, 2, 7, 1]])
    seen = torch.zeros_like(x, dtype=torch.bool).scatter_(1, history, True)
    expected = RepetitionPenaltyLogitsProcessor(1.3)(history, x.clone())
    torch.testing.assert_close(penalize(x, seen, 1.3), expected)
    assert torch.equal(penalize(x, seen, 1.0), x)


@pytest.mark.parametrize("temperature, top_k, top_p", [(0.9, 50, 1.0), (0.7, 5, 0.8), (1.3, 0, 0.5), (1.0, 64, 0.95)])
def test_warp_equals_hugging_face(temperature, top_k, top_p):
    x = logits()
    expected = TemperatureLogitsWarper(temperature)(None, x.clone())
    if top_k:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p < 1.0:
        expected = TopPLogitsWarper(top_p)(None, expected)
    got = warp(x, temperature, top_k, top_p)
    assert torch.equal(torch.isinf(got), torch.isinf(expected))
    torch.testing.assert_close(got[~torch.isinf(got)], expected[~torch.isinf(expected)])


def test_draws_stay_in_the_kept_set_and_follow_the_distribution():
    x = logits(batch=1, vocab=8).expand(4000, -1)
    gen = torch.Generator().manual_seed(1)
    ids = choose(x, True, 1.0, 3, 1.0, gen)
    top3 = set(x[0].topk(3).indices.tolist())
    assert set(ids.tolist()) == top3
    probs = x[0].index_select(0, torch.tensor(sorted(top3))).softmax(0)
    freq = torch.bincount(ids, minlength=8)[sorted(top3)] / 4000
    torch.testing.assert_close(freq, probs, atol=0.03, rtol=0)
    assert torch.equal(choose(x[:2], False, 1.0, 3, 1.0), x[:2].argmax(-1))


def test_recording_draws_the_same_ids_and_their_warped_logprobs():
    x = logits(batch=64, vocab=32)
    plain = choose(x, True, 0.8, 5, 0.9, torch.Generator().manual_seed(3))
    record = []
    ids = choose(x, True, 0.8, 5, 0.9, torch.Generator().manual_seed(3), record)
    assert torch.equal(ids, plain) and len(record) == 1
    warped = warp(x, 0.8, 5, 0.9)
    expected = torch.log(warped.softmax(-1)[torch.arange(64), ids])
    torch.testing.assert_close(record[0], expected)
    assert bool(torch.isfinite(record[0]).all()) and float(record[0].max()) <= 0
    outside = warped.argmin(-1)  # an id the top-k cut: probability 0
    assert bool(torch.isneginf(chosen_logprob(warped, outside)).all())
    with pytest.raises(ValueError, match="greedy"):
        choose(x, False, 1.0, 0, 1.0, record=[])


def test_code_sampler_blocks_eos_early_and_suppresses_specials():
    vocab, codebook, eos = 3072, 2048, 2150
    sampler = CodeSampler(SamplingConfig(do_sample=False, repetition_penalty=1.0, min_new_tokens=2), 2, vocab,
                          codebook, eos)
    x = torch.zeros(2, vocab)
    x[:, eos] = 10.0  # EOS is the best choice...
    x[:, 2500] = 20.0  # ...after a special id that may never be chosen
    x[:, 7] = 1.0
    assert sampler.first(x).tolist() == [7, 7]  # step 0: EOS blocked
    assert sampler.first(x).tolist() == [7, 7]  # step 1: EOS blocked
    assert sampler.first(x).tolist() == [eos, eos]  # step 2: EOS allowed; 2500 never


def test_code_sampler_penalizes_group_0_history_only():
    config = SamplingConfig(do_sample=False, subtalker_dosample=False, repetition_penalty=2.0, min_new_tokens=0)
    sampler = CodeSampler(config, 1, 3072, 2048, 2150)
    x = torch.zeros(1, 3072)
    x[0, 3], x[0, 4] = 1.5, 1.0
    assert sampler.first(x).item() == 3
    assert sampler.first(x).item() == 4  # 1.5 / 2 < 1.0
    y = torch.zeros(1, 2048)
    y[0, 3] = 1.0
    assert sampler.residual(y, 1).item() == 3  # groups 1..15: no penalty (subtalker sampling, greedy here)


def test_sampling_config_from_folder_and_overrides(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"do_sample": True, "top_k": 30, "max_new_tokens": 8192, "transformers_version": "4.57.3"}))
    config = SamplingConfig.from_folder(tmp_path)
    assert config.top_k == 30 and config.max_new_tokens == 8192 and config.temperature == 0.9
    assert config.replace(top_k=None, temperature=0.5).top_k == 30
    with pytest.raises(TypeError, match="unknown sampling option"):
        config.replace(topk=3)
    (tmp_path / "generation_config.json").write_text(json.dumps({"top_p": 1.5}))
    with pytest.raises(ValueError, match="generation_config.json: top_p"):
        SamplingConfig.from_folder(tmp_path)
    assert SamplingConfig.from_folder(tmp_path / "missing") == SamplingConfig()
