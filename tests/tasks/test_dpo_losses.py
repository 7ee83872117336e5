"""DPO loss: ln 2 when the policy is the reference, hand-computed values, and gradients that widen the margin."""

from __future__ import annotations

import math

import pytest
import torch

from qtts.inference.logprobs import SequenceLogProbs
from qtts.tasks.dpo_losses import dpo_loss, pair_logprob


def test_policy_equal_to_reference_gives_ln2_and_no_margin():
    chosen, rejected = torch.tensor([-120.0, -80.5]), torch.tensor([-90.0, -200.0])
    loss = dpo_loss(chosen, rejected, chosen.clone(), rejected.clone(), beta=0.5)
    assert loss.total.item() == pytest.approx(math.log(2), abs=1e-7)
    assert loss.margin.item() == 0.0 and loss.chosen_reward.item() == 0.0 and loss.accuracy.item() == 0.0


def test_hand_computed_values_with_nll():
    chosen, rejected = torch.tensor([-10.0, -20.0]), torch.tensor([-12.0, -18.0])
    ref_chosen, ref_rejected = torch.tensor([-11.0, -20.0]), torch.tensor([-11.0, -19.0])
    nll = torch.tensor([2.0, 4.0])
    loss = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.1, chosen_nll=nll, nll_weight=0.5)
    margins = [0.1 * ((-10 + 11) - (-12 + 11)), 0.1 * ((-20 + 20) - (-18 + 19))]  # 0.2, -0.1
    dpo = sum(math.log1p(math.exp(-m)) for m in margins) / 2
    assert loss.dpo.item() == pytest.approx(dpo, rel=1e-6)
    assert loss.total.item() == pytest.approx(dpo + 0.5 * 3.0, rel=1e-6)
    assert loss.margin.item() == pytest.approx(0.05, rel=1e-6) and loss.accuracy.item() == 0.5
    assert loss.chosen_reward.item() == pytest.approx(0.05, rel=1e-6)  # (0.1 + 0) / 2
    assert loss.rejected_reward.item() == pytest.approx(0.0, abs=1e-7)  # (-0.1 + 0.1) / 2


def test_gradient_raises_chosen_lowers_rejected_and_widens_the_margin():
    chosen = torch.tensor([-50.0, -60.0], requires_grad=True)
    rejected = torch.tensor([-55.0, -40.0], requires_grad=True)
    ref_chosen, ref_rejected = chosen.detach().clone(), rejected.detach().clone()
    loss = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.1)
    loss.total.backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()  # descent raises ℓw and lowers ℓl
    with torch.no_grad():
        chosen -= 10 * chosen.grad
        rejected -= 10 * rejected.grad
    after = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.1)
    assert after.margin > loss.margin and after.total < loss.total and after.accuracy == 1.0


def test_length_normalisation_uses_the_mean_per_step():
    values = torch.tensor([[[-1.0], [-3.0], [0.0]], [[-2.0], [-2.0], [-2.0]]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    lp = SequenceLogProbs(values, mask, torch.tensor([True, True]))
    assert pair_logprob(lp).tolist() == [-4.0, -6.0] and pair_logprob(lp, True).tolist() == [-2.0, -2.0]


def test_bad_arguments_are_named():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(x, x, x, x, beta=0)
    with pytest.raises(ValueError, match="shapes"):
        dpo_loss(x, torch.zeros(3), x, x)
    with pytest.raises(ValueError, match="chosen_nll"):
        dpo_loss(x, x, x, x, nll_weight=1.0)
