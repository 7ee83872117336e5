"""Direct preference optimisation (DPO, Rafailov et al. 2023) on sequence log-probabilities of utterances.

For a pair of utterances of one prompt, the chosen w (higher reward) and the rejected l, with log-probabilities ℓ
under the policy being trained and ℓ_ref under the frozen reference model:

    loss = −log σ(β [(ℓw − ℓw_ref) − (ℓl − ℓl_ref)])

The implicit rewards β(ℓ − ℓ_ref) of both sides, their margin and the share of pairs where the chosen one's is
higher (accuracy) are what to watch: the loss starts at ln 2 (policy = reference) and falls as the margin grows.
``length_normalize`` uses the mean log-probability per step instead of the sum (``SequenceLogProbs.mean``), so a
long utterance does not dominate a pair by its length alone. ``nll_weight`` adds the chosen utterance's negative
log-likelihood per step (as RPO / "DPO + SFT"), which keeps the chosen side's probability from falling while the
margin grows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from qtts.inference.logprobs import SequenceLogProbs


@dataclass
class DPOLoss:
    total: torch.Tensor  # dpo + nll_weight · nll, float32, what is differentiated
    dpo: torch.Tensor  # mean over pairs of −log σ(margin)
    nll: torch.Tensor  # mean over pairs of the chosen side's NLL per step (0 when not asked)
    chosen_reward: torch.Tensor  # mean β(ℓw − ℓw_ref), detached
    rejected_reward: torch.Tensor  # mean β(ℓl − ℓl_ref), detached
    margin: torch.Tensor  # mean of chosen − rejected reward, detached
    accuracy: torch.Tensor  # share of pairs whose chosen reward is higher, detached


def pair_logprob(logprobs: SequenceLogProbs, length_normalize: bool = False) -> torch.Tensor:
    """(B,) float64: the sequence log-probability DPO compares (the sum over steps, or their mean)."""
    return logprobs.mean if length_normalize else logprobs.sequence


def dpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float = 0.1, chosen_nll: torch.Tensor | None = None, nll_weight: float = 0.0) -> DPOLoss:
    """The DPO loss of B pairs from their (B,) sequence log-probabilities (sums or per-step means, the same on both
    sides): ``chosen`` / ``rejected`` under the policy (with gradients), ``ref_*`` under the reference (no
    gradients needed). ``chosen_nll`` (B,): the chosen utterances' mean NLL per step, weighted by ``nll_weight``."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    shapes = {tuple(t.shape) for t in (chosen, rejected, ref_chosen, ref_rejected)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"DPO takes four (pairs,) tensors, got shapes {sorted(shapes)}")
    if nll_weight and chosen_nll is None:
        raise ValueError("nll_weight > 0 needs chosen_nll")
    chosen_reward = beta * (chosen.double() - ref_chosen.double().detach())
    rejected_reward = beta * (rejected.double() - ref_rejected.double().detach())
    logits = chosen_reward - rejected_reward
    dpo = -F.logsigmoid(logits).mean()
    nll = chosen_nll.double().mean() if chosen_nll is not None else torch.zeros((), dtype=torch.float64,
                                                                                 device=chosen.device)
    total = (dpo + nll_weight * nll if nll_weight else dpo).float()
    return DPOLoss(total, dpo.detach().float(), nll.detach().float(), chosen_reward.detach().mean().float(),
                   rejected_reward.detach().mean().float(), logits.detach().mean().float(),
                   (logits.detach() > 0).float().mean())
