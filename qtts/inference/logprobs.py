"""Log-probabilities of whole utterances, teacher-forced: the one definition that post-training (DPO, GSPO) uses.

A step of an utterance is one talker position that chose something: a frame (group 0 by the talker, groups 1..15
by the code predictor from the talker's hidden state and the groups before) or, last, EOS. Its log-probability is

    log p_talker(c_0) + Σ_{k=1..15} log p_predictor(c_k | h, c_0 … c_{k-1})      (policy over ``"all"`` groups)
    log p_talker(c_0)                                                              (``"first"``: group 0 only)

and an EOS step is ``log p_talker(EOS)``. The utterance's is the sum over its steps (``SequenceLogProbs.sequence``);
GSPO's importance ratio uses the mean over steps (``.mean``), token-level GRPO the steps themselves (``.frames``).

The values come from the training forward (``TTSModel.forward_tracks`` over rows of ``layout.build_sequence``, the
code predictor's teacher-forced ``Talker.predictor_logits``), never from a second implementation of the model, so
they are what a loss differentiates. ``CodeSampler(record=…)`` records the same quantities while the Synthesizer
samples; the two agree to float precision (tested).

Policy. ``sampling=None`` scores the model's own distribution (``log_softmax`` of the raw logits, every id).
A ``SamplingConfig`` scores the distribution the Synthesizer draws from under it, built by the same functions in the
same order (``qtts.inference.sampling``): group 0 gets the repetition penalty over the earlier frames' group-0
codes, specials suppressed, EOS blocked before ``min_new_tokens``, then temperature, top-k, top-p; groups 1..15 get
the ``subtalker_*`` temperature, top-k, top-p. Top-k / top-p truncate: an id outside the kept set has probability
0, and its log-probability is ``-inf`` (not NaN; the gradient of the other ids stays finite). Codes scored under the
config they were sampled with are always inside it (up to ties at the cut), but the same codes scored under another
policy (the weights after an update, a smaller top-k) can fall outside: ``outside`` marks those steps. Losses that
compare policies (importance ratios, KL) therefore score with temperature alone (``top_k=0, top_p=1``; or
``sampling=None``), which never gives ``-inf``. Greedy decoding has no log-probabilities and is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from qtts.data.batching import DualTrackBatch
from qtts.inference.sampling import SamplingConfig, chosen_logprob, constrain, warp
from qtts.models.talker import Talker, TTSModel
from qtts.models.talker.layout import IGNORE_INDEX

PolicyGroups = Literal["all", "first"]


@dataclass
class SequenceLogProbs:
    """Per-step log-probabilities of a batch of utterances (rows), right-padded to the longest.

    values (B, S, K): step s's log-probability per policy group (K = 16 for ``"all"``, 1 for ``"first"``); 0 on
    padding and for groups 1..15 of an EOS step. mask (B, S): real steps (frames, then EOS where the row ended).
    ended (B,): whether the row's last step is EOS (else it stopped at ``max_new_tokens``). The sums (``frames``,
    ``sequence``, ``mean``) are float64: an utterance's log-probability is a sum of thousands of float32 values
    (hundreds of nats), which float32 accumulation would round by more than the values differ.
    """

    values: Tensor
    mask: Tensor
    ended: Tensor

    @property
    def frames(self) -> Tensor:
        """(B, S): each step's log-probability (its groups summed); 0 on padding."""
        return self.values.double().sum(-1)

    @property
    def steps(self) -> Tensor:
        """(B,) the number of steps of each row (frames + 1 where it ended)."""
        return self.mask.sum(-1)

    @property
    def sequence(self) -> Tensor:
        """(B,) log π(utterance): the sum over its steps."""
        return self.frames.sum(-1)

    @property
    def mean(self) -> Tensor:
        """(B,) the mean over steps (GSPO's length-normalised sequence log-probability)."""
        return self.sequence / self.steps.clamp(min=1)

    @property
    def outside(self) -> Tensor:
        """(B, S) real steps whose ids the policy's top-k / top-p left out (their log-probability is ``-inf``)."""
        return torch.isneginf(self.values).any(-1) & self.mask

    def first_group(self) -> SequenceLogProbs:
        """The same steps under the group-0 policy."""
        return replace(self, values=self.values[..., :1])

    @classmethod
    def cat(cls, parts: Sequence[SequenceLogProbs]) -> SequenceLogProbs:
        """The rows of several batches in one, padded to the longest (all of the same policy groups)."""
        if not parts:
            raise ValueError("no log-probabilities to concatenate")
        if len({p.values.shape[-1] for p in parts}) > 1:
            raise ValueError("cannot concatenate log-probabilities of different policy groups")
        length = max(p.values.shape[1] for p in parts)
        return cls(torch.cat([_pad_steps(p.values, length) for p in parts]),
                   torch.cat([_pad_steps(p.mask, length) for p in parts]), torch.cat([p.ended for p in parts]))

    def select(self, rows: Tensor | Sequence[int]) -> SequenceLogProbs:
        """Some rows (an index or a boolean mask), with the padding steps none of them has dropped."""
        values, mask, ended = self.values[rows], self.mask[rows], self.ended[rows]
        length = int(mask.sum(-1).max()) if len(mask) else 0
        return SequenceLogProbs(values[:, :length], mask[:, :length], ended)


def _pad_steps(t: Tensor, length: int) -> Tensor:
    """(B, S, …) right-padded with zeros (False) to ``length`` steps."""
    return torch.cat([t, t.new_zeros(t.shape[0], length - t.shape[1], *t.shape[2:])], 1)


def check_policy(sampling: SamplingConfig | None, groups: str) -> None:
    """A clear error for a policy without log-probabilities (greedy) or an unknown ``groups``."""
    if groups not in ("all", "first"):
        raise ValueError(f"groups must be 'all' or 'first', got {groups!r}")
    if sampling is None:
        return
    if not sampling.do_sample:
        raise ValueError("greedy decoding (do_sample=False) has no log-probabilities: score with do_sample=True")
    if groups == "all" and not sampling.subtalker_dosample:
        raise ValueError("a policy over all groups needs subtalker_dosample=True (or groups='first')")


def sequence_logprobs(model: TTSModel, tracks: DualTrackBatch, xvectors: Tensor | None = None,
                      groups: PolicyGroups = "all", sampling: SamplingConfig | None = None) -> SequenceLogProbs:
    """The log-probabilities of the labelled utterances of ``tracks``, one per row (``collate_training`` of
    ``build_sequence(…, target_codes=…)``; labels say what each step chose), with gradients unless the caller turns
    them off. ``xvectors``: one per x-vector slot, as ``TTSModel.forward_tracks`` takes them. See the module
    docstring for ``groups`` and ``sampling``."""
    check_policy(sampling, groups)
    if bool((tracks.document_ids > 0).any()):
        raise ValueError("sequence_logprobs scores one utterance per row; these rows are packed "
                         "(collate the sequences with collate_training)")
    out = model.forward_tracks(tracks, xvectors, packed=False)
    return step_logprobs(model.talker, out.hidden, out.logits, tracks.labels, tracks.code_labels, groups, sampling)


def step_logprobs(talker: Talker, hidden: Tensor, logits: Tensor, labels: Tensor, code_labels: Tensor,
                  groups: PolicyGroups = "all", sampling: SamplingConfig | None = None) -> SequenceLogProbs:
    """From a training forward already run: hidden (B, T, H), logits (B, T, V), labels (B, T) and code_labels
    (B, T, G-1) as ``layout`` aligns them. Every frame goes through the code predictor (a sequence's probability
    needs all of them: no ``predictor_fraction`` here)."""
    check_policy(sampling, groups)
    supervised = labels != IGNORE_INDEX
    counts = supervised.sum(1)
    if not bool((counts > 0).all()):
        rows = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(f"row(s) {rows} have no labelled step to score")
    rows, cols = supervised.nonzero(as_tuple=True)  # row-major: each row's steps in order
    steps = (supervised.cumsum(1) - 1)[rows, cols]
    batch, length = labels.shape[0], int(counts.max())
    ids = labels[rows, cols]
    config = talker.config
    eos = config.codec_eos_token_id

    first = logits[rows, cols].float()
    if sampling is not None:
        c = sampling
        vocab = first.shape[-1]
        allowed = torch.zeros_like(first, dtype=torch.bool)
        allowed[:, : config.code_predictor_config.vocab_size] = True
        allowed[:, eos] = steps >= c.min_new_tokens
        # the group-0 ids of the row's earlier steps: first step of each id per row, compared with this step
        earliest = torch.full((batch * vocab,), length, dtype=torch.long, device=ids.device)
        earliest.scatter_reduce_(0, rows * vocab + ids, steps, reduce="amin")
        seen = earliest.view(batch, vocab)[rows] < steps.unsqueeze(1)
        first = warp(constrain(first, seen, allowed, c.repetition_penalty), c.temperature, c.top_k, c.top_p)
    parts = [chosen_logprob(first, ids).unsqueeze(1)]

    if groups == "all":
        frame = code_labels[rows, cols, 0] != IGNORE_INDEX
        residual = torch.zeros(len(ids), config.num_code_groups - 1, dtype=parts[0].dtype, device=ids.device)
        if bool(frame.any()):
            codes = torch.cat([ids[frame, None], code_labels[rows[frame], cols[frame]]], dim=1)  # c0 … c15
            predicted = talker.predictor_logits(hidden[rows[frame], cols[frame]], codes).float()
            if sampling is not None:
                c = sampling
                predicted = warp(predicted, c.subtalker_temperature, c.subtalker_top_k, c.subtalker_top_p)
            residual = residual.index_put((frame.nonzero().flatten(),), chosen_logprob(predicted, codes[:, 1:]))
        parts.append(residual)
    per_step = torch.cat(parts, dim=1)  # (M, K)

    values = per_step.new_zeros(batch, length, per_step.shape[1]).index_put((rows, steps), per_step)
    mask = torch.zeros(batch, length, dtype=torch.bool, device=ids.device).index_put(
        (rows, steps), torch.ones_like(ids, dtype=torch.bool))
    ended = torch.zeros(batch, dtype=torch.bool, device=ids.device).index_put(
        (rows[ids == eos],), torch.ones_like(rows[ids == eos], dtype=torch.bool))
    return SequenceLogProbs(values, mask, ended)
