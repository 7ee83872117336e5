"""GSPO (Zheng et al. 2025) and GRPO (Shao et al. 2024) objectives on per-step log-probabilities of sampled utterances.

Both sample G utterances per prompt with the policy as it was (π_old), score them, and compare each with its group:

    A_i = (r_i − mean(r)) / (std(r) + eps)                                        (group-normalised advantage)

std is the unbiased one (``torch.std``, as GRPO's reference code). A group whose G rewards are all equal carries no
preference (every A_i would be 0 / eps): it is skipped (weight 0, counted in ``skipped_groups``), and the means below
run over the samples of the other groups only.

The clipped surrogate, maximised (the loss is its negative), differs in where the importance ratio lives:

* ``importance="sequence"`` (GSPO): one ratio per utterance, the geometric mean of its per-step ratios,
  s_i = exp(mean_t (log π − log π_old)), and the objective mean_i min(s_i A_i, clip(s_i, 1 − ε_low, 1 + ε_high) A_i).
  The ratio is length-normalised, so it stays near 1 and the clip range is small (GSPO's 3e-4 / 4e-4).
* ``importance="token"`` (GRPO): a ratio per step, r_t = exp(log π_t − log π_old,t), the clipped term per step
  averaged over the utterance's steps, then over utterances (clip range 0.2 / 0.28, DAPO's "clip higher").

A step is a frame (its log-probability summed over the policy's code groups) or the final EOS
(``qtts.inference.logprobs``). ``kl_coef`` > 0 adds β · KL to a reference policy, estimated per step by k3:
exp(ref − π) − (ref − π) − 1 (≥ 0, unbiased; Schulman's estimator, as GRPO), averaged over steps then utterances.

The clip fraction is the share of ratios (utterances, or steps) whose clipped term won the min: there the gradient is
zero, so a clip fraction near 1 means the minibatch updates have walked off the rollouts' policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Importance = Literal["sequence", "token"]
CLIP_RANGES: dict[str, tuple[float, float]] = {"sequence": (3e-4, 4e-4), "token": (0.2, 0.28)}  # (ε_low, ε_high)


@dataclass
class Advantages:
    """values (N,): each sample's advantage (0 in skipped groups). valid (N,): samples of groups not skipped.
    skipped_groups: how many of the prompts' groups had all-equal rewards."""

    values: Tensor
    valid: Tensor
    skipped_groups: int


@dataclass
class PolicyLoss:
    total: Tensor  # −objective + kl_coef · kl, float32, what is differentiated
    policy: Tensor  # −(clipped surrogate), detached
    kl: Tensor  # mean k3 estimate (0 without a reference), detached
    clip_fraction: Tensor  # share of ratios clipped (utterances for "sequence", steps for "token"), detached
    ratio: Tensor  # mean importance ratio (same units), detached
    samples: int  # utterances that entered the loss (those of groups not skipped)


def group_advantages(rewards: Tensor, group_size: int, eps: float = 1e-6) -> Advantages:
    """Advantages of prompt-major rewards (N,) = (prompts · ``group_size``,), row i·G + j being sample j of prompt
    i (``qtts.inference.rollouts.Rollouts``); see the module docstring."""
    if group_size < 2:
        raise ValueError(f"group-normalised advantages need group_size >= 2, got {group_size}")
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be (prompts · group_size,) = (N,) with N a multiple of {group_size}, "
                         f"got shape {tuple(rewards.shape)}")
    groups = rewards.double().view(-1, group_size)
    skipped = groups.amax(1) == groups.amin(1)
    values = (groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + eps)
    values = torch.where(skipped.unsqueeze(1), torch.zeros_like(values), values)
    return Advantages(values.flatten(), (~skipped).repeat_interleave(group_size), int(skipped.sum()))


def clipped_policy_loss(logprobs: Tensor, old_logprobs: Tensor, mask: Tensor, advantages: Tensor,
                        importance: Importance = "sequence", clip_low: float | None = None,
                        clip_high: float | None = None, valid: Tensor | None = None,
                        ref_logprobs: Tensor | None = None, kl_coef: float = 0.0) -> PolicyLoss:
    """The loss of B sampled utterances from their per-step log-probabilities (B, S): ``logprobs`` under the policy
    being trained (with gradients), ``old_logprobs`` under the policy that sampled them, ``ref_logprobs`` under the
    reference (needed when ``kl_coef`` > 0); ``mask`` (B, S) their real steps; ``advantages`` (B,). ``valid`` (B,):
    the samples to average over (default all; skipped groups' samples are False). ``clip_low`` / ``clip_high``:
    ε_low, ε_high (default ``CLIP_RANGES[importance]``)."""
    if importance not in CLIP_RANGES:
        raise ValueError(f"importance must be 'sequence' (GSPO) or 'token' (GRPO), got {importance!r}")
    default_low, default_high = CLIP_RANGES[importance]
    low = default_low if clip_low is None else clip_low
    high = default_high if clip_high is None else clip_high
    if not (0 <= low < 1 and high >= 0):
        raise ValueError(f"clip range must have 0 <= clip_low < 1 and clip_high >= 0, got {low}, {high}")
    if logprobs.shape != old_logprobs.shape or logprobs.shape != mask.shape or logprobs.dim() != 2:
        raise ValueError(f"logprobs, old_logprobs and mask must be (B, S) alike, got {tuple(logprobs.shape)}, "
                         f"{tuple(old_logprobs.shape)}, {tuple(mask.shape)}")
    if advantages.shape != logprobs.shape[:1]:
        raise ValueError(f"advantages must be (B,) = ({logprobs.shape[0]},), got {tuple(advantages.shape)}")
    if kl_coef < 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
    if kl_coef > 0 and ref_logprobs is None:
        raise ValueError("kl_coef > 0 needs ref_logprobs")
    mask = mask.bool()
    valid = torch.ones_like(advantages, dtype=torch.bool) if valid is None else valid.bool()
    valid = valid & mask.any(1)
    n = int(valid.sum())
    zero = logprobs.new_zeros((), dtype=torch.float64)
    if n == 0:  # every group skipped: nothing to learn, a loss that keeps the graph (zero gradient)
        total = (logprobs.double() * 0).sum().float()
        return PolicyLoss(total, zero, zero, zero.float(), zero.float() + 1, 0)
    lp, old, adv = logprobs.double()[valid], old_logprobs.double().detach()[valid], advantages.double()[valid]
    m = mask[valid]
    steps = m.sum(1).clamp(min=1)
    delta = torch.where(m, lp - old, torch.zeros((), dtype=lp.dtype, device=lp.device))

    if importance == "sequence":
        ratio = torch.exp(delta.sum(1) / steps)  # (n,)
        surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - low, 1 + high) * adv)
        objective = surrogate.mean()
        clipped = ((adv > 0) & (ratio > 1 + high)) | ((adv < 0) & (ratio < 1 - low))
        clip_fraction, mean_ratio = clipped.double().mean(), ratio.detach().mean()
    else:
        ratio = torch.exp(delta)  # (n, S); 1 on padding
        a = adv.unsqueeze(1)
        per_step = torch.minimum(ratio * a, ratio.clamp(1 - low, 1 + high) * a)
        objective = (torch.where(m, per_step, torch.zeros_like(per_step)).sum(1) / steps).mean()
        clipped = (((a > 0) & (ratio > 1 + high)) | ((a < 0) & (ratio < 1 - low))) & m
        clip_fraction = clipped.sum().double() / m.sum()
        mean_ratio = ratio.detach()[m].mean()

    kl = zero
    if ref_logprobs is not None:
        diff = ref_logprobs.double().detach()[valid] - lp
        k3 = torch.where(m, torch.exp(diff) - diff - 1, torch.zeros_like(diff))
        kl = (k3.sum(1) / steps).mean()
    total = -objective + (kl_coef * kl if kl_coef else 0)
    return PolicyLoss(total.float(), -objective.detach(), kl.detach(), clip_fraction.float(),
                      mean_ratio.float(), n)


def gspo_loss(logprobs: Tensor, old_logprobs: Tensor, mask: Tensor, rewards: Tensor, group_size: int,
              importance: Importance = "sequence", clip_low: float | None = None, clip_high: float | None = None,
              ref_logprobs: Tensor | None = None, kl_coef: float = 0.0,
              eps: float = 1e-6) -> tuple[PolicyLoss, Advantages]:
    """The whole rollout's loss in one call: advantages of ``rewards`` (prompt-major, ``group_size`` per prompt),
    then ``clipped_policy_loss`` over the samples of the groups not skipped."""
    advantages = group_advantages(rewards, group_size, eps)
    loss = clipped_policy_loss(logprobs, old_logprobs, mask, advantages.values, importance, clip_low, clip_high,
                               advantages.valid, ref_logprobs, kl_coef)
    return loss, advantages
