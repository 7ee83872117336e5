"""GSPO / GRPO losses against values computed by hand: group advantages (an all-equal group skipped), the clipped
sequence-level (GSPO) and token-level (GRPO) objectives with clipping active, the k3 KL term, and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from qtts.tasks.gspo_losses import clipped_policy_loss, group_advantages, gspo_loss

# Two prompts, three samples each. Prompt 0: rewards 1, 2, 3 → mean 2, unbiased std 1 → advantages −1, 0, 1.
# Prompt 1: rewards 5, 5, 5 → skipped (its samples get absurd log-probabilities: they must not count).
REWARDS = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])
MASK = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 1, 1], [1, 0, 0], [1, 1, 1], [1, 1, 0]], dtype=torch.bool)
OLD = torch.tensor([[-2.0, -3.0, 0.0], [-1.0, -1.0, -1.0], [-4.0, -2.0, -1.5], [-1.0, 0.0, 0.0],
                    [-2.0, -2.0, -2.0], [-3.0, -3.0, 0.0]], dtype=torch.float64)


def policy(deltas: list[list[float]]) -> torch.Tensor:
    """log π = log π_old + the given per-step differences (padding steps stay 0)."""
    return (OLD + torch.tensor(deltas, dtype=torch.float64) * MASK).requires_grad_(True)


SKIPPED_DELTAS = [[5.0, -7.0, 0.0], [9.0, 9.0, 9.0], [-8.0, 3.0, 0.0]]  # samples 3..5 (prompt 1)


def test_group_advantages_by_hand():
    adv = group_advantages(REWARDS, group_size=3, eps=0.0)
    assert adv.values.tolist() == [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert adv.valid.tolist() == [True, True, True, False, False, False] and adv.skipped_groups == 1
    # rewards 2, 2, 5: mean 3, std sqrt((1 + 1 + 4) / 2) = sqrt(3); eps in the denominator
    adv = group_advantages(torch.tensor([2.0, 2.0, 5.0]), group_size=3, eps=0.1)
    s = math.sqrt(3) + 0.1
    assert adv.values.tolist() == pytest.approx([-1 / s, -1 / s, 2 / s], rel=1e-12)
    with pytest.raises(ValueError, match="multiple of 3"):
        group_advantages(torch.zeros(4), group_size=3)
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(torch.zeros(4), group_size=1)


def test_sequence_importance_gspo_by_hand():
    """GSPO's ratio s_i = exp(mean over the sample's steps of log π − log π_old), clipped to [1 − 3e-4, 1 + 4e-4]."""
    logprobs = policy([[0.001, -0.003, 0.0], [0.5, 0.0, 0.0], [0.0003, 0.0, 0.0]] + SKIPPED_DELTAS)
    loss, adv = gspo_loss(logprobs, OLD, MASK, REWARDS, group_size=3, importance="sequence", clip_low=3e-4,
                          clip_high=4e-4, eps=0.0)
    s0 = math.exp(-0.002 / 2)  # 0.9990005: A = −1 and s below 1 − 3e-4: clipped, the term is −0.9997
    s1 = math.exp(0.5 / 3)  # A = 0: contributes 0, not counted as clipped
    s2 = math.exp(0.0003 / 3)  # 1.0001: inside the range, the term is s2
    objective = (-0.9997 + 0.0 + s2) / 3
    assert adv.skipped_groups == 1 and loss.samples == 3
    assert loss.total.item() == pytest.approx(-objective, rel=1e-5)
    assert loss.policy.item() == pytest.approx(-objective, rel=1e-9)
    assert loss.clip_fraction.item() == pytest.approx(1 / 3)
    assert loss.ratio.item() == pytest.approx((s0 + s1 + s2) / 3, rel=1e-6)
    assert loss.kl.item() == 0.0
    # gradient: only the unclipped sample with A ≠ 0 (sample 2) moves; d/dℓ_t of s2 / 3 is s2 / (3 · 3 steps)
    loss.policy.requires_grad_(False)
    loss.total.backward()
    grad = logprobs.grad
    assert grad[[0, 1, 3, 4, 5]].abs().max().item() == 0.0
    torch.testing.assert_close(grad[2], torch.full((3,), -s2 / 9, dtype=torch.float64), rtol=1e-5, atol=0)


def test_token_importance_grpo_by_hand():
    """GRPO: per-step ratios clipped to [0.8, 1.28], the min per step averaged over the steps, then the samples."""
    ln = math.log
    logprobs = policy([[ln(0.5), ln(1.1), 0.0], [0.5, 0.0, 0.0], [ln(1.5), ln(0.9), 0.0]] + SKIPPED_DELTAS)
    loss, _ = gspo_loss(logprobs, OLD, MASK, REWARDS, group_size=3, importance="token", eps=0.0)  # default 0.2 / 0.28
    # sample 0 (A = −1): ratio 0.5 → clipped to 0.8: min(−0.5, −0.8) = −0.8; ratio 1.1 → −1.1; mean −0.95
    # sample 1 (A = 0): 0. sample 2 (A = 1): 1.5 → 1.28 (clipped), 0.9, 1.0: mean 3.18 / 3 = 1.06
    objective = (-0.95 + 0.0 + 1.06) / 3
    assert loss.total.item() == pytest.approx(-objective, rel=1e-5)
    assert loss.clip_fraction.item() == pytest.approx(2 / 8)  # 2 clipped of the 2 + 3 + 3 valid steps
    ratios = [0.5, 1.1, math.exp(0.5), 1.0, 1.0, 1.5, 0.9, 1.0]
    assert loss.ratio.item() == pytest.approx(sum(ratios) / 8, rel=1e-6)
    loss.total.backward()
    grad = logprobs.grad
    # d/dℓ of −(1/3)(1/steps) · ratio · A on unclipped steps: sample 0 step 1: −(1/3)(1/2)(1.1)(−1); sample 2:
    # steps 1, 2: −(1/3)(1/3)(0.9), −(1/3)(1/3)(1.0); clipped steps and A = 0 give 0
    expected = torch.zeros(6, 3, dtype=torch.float64)
    expected[0, 1], expected[2, 1], expected[2, 2] = 1.1 / 6, -0.9 / 9, -1.0 / 9
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-12)


def test_kl_k3_term_by_hand():
    """k3 = exp(ref − π) − (ref − π) − 1 per step, averaged over steps then the valid samples, weighted by β."""
    logprobs = policy([[0.0] * 3] * 6)
    ref = OLD.clone()
    ref[0, 0] += math.log(2)  # k3 = 2 − ln 2 − 1
    ref[2, 2] += math.log(0.5)  # k3 = 0.5 + ln 2 − 1
    ref[4, 0] += 3.0  # a skipped sample: not counted
    loss, _ = gspo_loss(logprobs, OLD, MASK, REWARDS, group_size=3, importance="token", ref_logprobs=ref,
                        kl_coef=0.1)
    kl = ((1 - math.log(2)) / 2 + 0.0 + (math.log(2) - 0.5) / 3) / 3
    assert loss.kl.item() == pytest.approx(kl, rel=1e-9)
    # ratio 1 everywhere: the policy term is −mean(A) over valid samples = 0
    assert loss.policy.item() == pytest.approx(0.0, abs=1e-12)
    assert loss.total.item() == pytest.approx(0.1 * kl, rel=1e-6)
    with pytest.raises(ValueError, match="ref_logprobs"):
        clipped_policy_loss(logprobs, OLD, MASK, torch.zeros(6), kl_coef=0.1)


def test_on_policy_gradient_is_the_advantage_weighted_mean_logprob():
    """At ratio 1 (the first minibatch) nothing is clipped and GSPO's gradient is −A_i / (n · steps_i) per step."""
    logprobs = policy([[0.0] * 3] * 6)
    loss, _ = gspo_loss(logprobs, OLD, MASK, REWARDS, group_size=3, eps=0.0)
    assert loss.ratio.item() == 1.0 and loss.clip_fraction.item() == 0.0
    loss.total.backward()
    expected = torch.zeros(6, 3, dtype=torch.float64)
    expected[0, :2] = 1 / (3 * 2)  # A = −1, 2 steps
    expected[2, :3] = -1 / (3 * 3)  # A = 1, 3 steps
    torch.testing.assert_close(logprobs.grad, expected, rtol=1e-6, atol=1e-12)


def test_every_group_skipped_gives_a_zero_loss_with_a_graph():
    logprobs = policy([[0.1] * 3] * 6)
    loss, adv = gspo_loss(logprobs, OLD, MASK, torch.full((6,), 2.0), group_size=3)
    assert adv.skipped_groups == 2 and loss.samples == 0 and loss.total.item() == 0.0
    loss.total.backward()
    assert logprobs.grad.abs().max().item() == 0.0


def test_bad_arguments_are_named():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="importance"):
        clipped_policy_loss(x, x, x.bool(), torch.zeros(2), importance="frame")
    with pytest.raises(ValueError, match="advantages"):
        clipped_policy_loss(x, x, x.bool(), torch.zeros(3))
    with pytest.raises(ValueError, match="alike"):
        clipped_policy_loss(x, torch.zeros(2, 4), x.bool(), torch.zeros(2))
    with pytest.raises(ValueError, match="clip"):
        clipped_policy_loss(x, x, x.bool(), torch.zeros(2), clip_low=1.5)
