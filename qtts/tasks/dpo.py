"""DPO post-training of the talker on mined preference pairs (``qtts mine-pairs``; ``task=dpo``, ``experiment=dpo``).

Each pair is one request spoken twice (the chosen and the rejected codes); both are scored teacher-forced by the
training forward (``qtts.inference.logprobs.sequence_logprobs`` over ``Synthesizer.teacher_forced_batch``: the one
definition of an utterance's log-probability, under the model's own distribution, ``sampling=None``) and the loss
is ``qtts.tasks.dpo_losses.dpo_loss``. Everything else is the talker task's: LoRA or full weights, the optimiser and
schedule, checkpoints that hold only what trains, the export (merged model, and ``adapter/`` for LoRA).

Each validation also logs what the policy says now for a few of its pairs' requests (sampled, decoded by the run's
codec, ``log_samples``), the way GSPO's validation logs its rollouts (``qtts.training.media.log_rollout_audio``).

The reference model is the starting point (``init_from``), never a second copy of the weights:

* LoRA: the policy with its adapter turned off (peft's ``disable_adapter()``), one extra no-grad forward per step.
  At the first step the adapter's B matrices are zero, so policy = reference and the loss is exactly ln 2.
* Full weights: the reference log-probability of every pair (train and validation) is computed once, no-grad, before
  the first update (the weights are ``init_from``'s then), kept by pair id and saved in every checkpoint, so a
  resumed run uses the same values rather than recomputing them from weights that have moved. Chosen over a frozen
  copy because a copy doubles the model's memory and costs a forward per step; the cache costs one forward per pair.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from qtts.inference.logprobs import SequenceLogProbs, sequence_logprobs
from qtts.models.talker.config import TTSConfig
from qtts.tasks.dpo_losses import DPOLoss, dpo_loss, pair_logprob
from qtts.tasks.talker import TalkerTask

REFERENCE_KEY = "dpo_reference"  # the checkpoint entry of the full-weight reference log-probabilities


class DPOTask(TalkerTask):
    """init_from: the model to improve (a released or exported folder; also the reference). beta: DPO's β.
    length_normalize: compare mean log-probabilities per step instead of sums. nll_weight: weight of the chosen
    side's NLL per step. groups: the policy covers all 16 code groups or group 0 only (``"first"``).
    reference_batch_size: pairs per no-grad forward when the full-weight reference is computed. The other
    arguments are ``TalkerTask``'s (the speaker encoder stays frozen: x-vectors come stored with the pairs)."""

    def __init__(self, init_from: str, model: TTSConfig | dict | None = None, beta: float = 0.1,
                 length_normalize: bool = False, nll_weight: float = 0.0,
                 groups: Literal["all", "first"] = "all", reference_batch_size: int = 8, lr: float = 1e-5,
                 betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.0, warmup_steps: int = 0,
                 min_lr_ratio: float = 1.0, gradient_checkpointing: bool = False, seed: int = 0,
                 codec: str | None = None, lora: dict | None = None):
        if beta <= 0:
            raise ValueError(f"task.beta must be > 0, got {beta}")
        if nll_weight < 0:
            raise ValueError(f"task.nll_weight must be >= 0, got {nll_weight}")
        if groups not in ("all", "first"):
            raise ValueError(f"task.groups must be 'all' or 'first', got {groups!r}")
        if reference_batch_size < 1:
            raise ValueError(f"task.reference_batch_size must be >= 1, got {reference_batch_size}")
        super().__init__(model=model, init_from=init_from, speaker_encoder="frozen", lr=lr, betas=betas,
                         weight_decay=weight_decay, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio,
                         gradient_checkpointing=gradient_checkpointing, seed=seed, codec=codec, log_media=False,
                         lora=lora)
        self.save_own_hyperparameters()
        self._synth: list = []  # the request builder (a codec-less Synthesizer over self.model), made on first use
        self._sampler: list = []  # the validation samples' Synthesizer (with the codec), made on first use
        self._reference: dict[str, list[float]] = {}  # full weights: pair id → [ℓ chosen, ℓ rejected]

    # -- requests → teacher-forced rows ------------------------------------------------------------------
    def synthesizer(self):
        """A ``Synthesizer`` without codec over the model being trained, with ``init_from``'s tokenizer: it lays
        pairs out exactly as generation read them. Building it leaves the modules' train/eval flags as they were."""
        if not self._synth:
            self._synth.append(self._new_synthesizer(None))
        return self._synth[0]

    def sampler(self):
        """A ``Synthesizer`` over the model being trained that speaks (the run's codec, ``codec_folder``, and
        ``init_from``'s generation config), for the validation samples; None when the run has no codec."""
        if not self._sampler:
            from qtts.models.codec.model import SpeechTokenizer

            folder = self.codec_folder()
            if folder is None:
                return None
            self._sampler.append(self._new_synthesizer(SpeechTokenizer.from_pretrained(folder).to(self.device)))
        return self._sampler[0]

    def _new_synthesizer(self, codec):
        from qtts.inference.sampling import SamplingConfig
        from qtts.inference.synthesizer import Synthesizer
        from qtts.text.tokenizer import has_tokenizer, load_text_tokenizer

        source = self.hparams.init_from
        flags = {m: m.training for m in self.model.modules()}
        synth = Synthesizer(self.model, codec, load_text_tokenizer(source if has_tokenizer(source) else None),
                            SamplingConfig.from_folder(source))
        for module, training in flags.items():
            module.train(training)
        return synth

    def pair_logprobs(self, rows: list[dict[str, Any]]) -> tuple[SequenceLogProbs, Any, Any]:
        """Log-probabilities of the pairs' chosen (rows 0..n-1) then rejected (n..2n-1) codes under the model as it
        is now (gradients follow the caller's mode), with the teacher-forced batch they were scored on."""
        from qtts.eval.pairs import pair_requests

        requests = pair_requests(rows)
        codes = [torch.as_tensor(r[f"{side}_codes"], dtype=torch.long) for side in ("chosen", "rejected")
                 for r in rows]
        ended = [bool(r[f"{side}_ended"]) for side in ("chosen", "rejected") for r in rows]
        tracks, xvectors = self.synthesizer().teacher_forced_batch(requests + requests, codes, ended)
        return sequence_logprobs(self.model, tracks, xvectors, self.hparams.groups), tracks, xvectors

    # -- the reference -----------------------------------------------------------------------------------
    def reference(self, rows: list[dict[str, Any]], tracks, xvectors) -> torch.Tensor:
        """(2n,) the reference's log-probabilities of the chosen then rejected sides (as ``pair_logprob``)."""
        normalize = self.hparams.length_normalize
        if self._peft:
            with torch.no_grad(), self._peft[0].disable_adapter():
                logprobs = sequence_logprobs(self.model, tracks, xvectors, self.hparams.groups)
            return pair_logprob(logprobs, normalize)
        missing = [r["id"] for r in rows if r["id"] not in self._reference]
        if missing:
            raise ValueError(f"pair(s) {missing[:5]} have no reference log-probability: the pairs dataset changed "
                             "since the run started (start a new run on it)")
        values = [self._reference[r["id"]][side] for side in (0, 1) for r in rows]
        return torch.tensor(values, dtype=torch.float64, device=self.device)

    def _ensure_reference(self) -> None:
        """Full weights: before the first update, the reference log-probability of every pair of the data."""
        if self._peft or self._reference:
            return
        if self.global_step > 0:
            raise ValueError("the full-weight DPO reference is missing from the checkpoint this run resumed from")
        datamodule = getattr(self.trainer, "datamodule", None)
        sets = [getattr(datamodule, name, None) for name in ("train_set", "val_set")]
        rows = [row for dataset in sets if dataset is not None for row in dataset.rows]
        if not rows:
            raise ValueError("DPO with full weights needs the pairs' data module (PairDataModule) to compute the "
                             "reference log-probabilities")
        size = self.hparams.reference_batch_size
        with torch.no_grad():
            for first in range(0, len(rows), size):
                batch = rows[first:first + size]
                logprobs, _, _ = self.pair_logprobs(batch)
                values = pair_logprob(logprobs, self.hparams.length_normalize).tolist()
                for i, row in enumerate(batch):
                    self._reference[row["id"]] = [values[i], values[len(batch) + i]]

    # -- steps ------------------------------------------------------------------------------------------
    def dpo_losses(self, rows: list[dict[str, Any]]) -> DPOLoss:
        self._ensure_reference()
        n = len(rows)
        logprobs, tracks, xvectors = self.pair_logprobs(rows)
        policy = pair_logprob(logprobs, self.hparams.length_normalize)
        reference = self.reference(rows, tracks, xvectors)
        nll = -logprobs.mean[:n] if self.hparams.nll_weight else None
        return dpo_loss(policy[:n], policy[n:], reference[:n], reference[n:], self.hparams.beta, nll,
                        self.hparams.nll_weight)

    def _log(self, prefix: str, loss: DPOLoss, n: int, **kwargs) -> None:
        self.log(f"{prefix}/loss", loss.total, prog_bar=True, batch_size=n, **kwargs)
        self.log_dict({f"{prefix}/{name}": getattr(loss, name) for name in
                       ("dpo", "nll", "chosen_reward", "rejected_reward", "margin", "accuracy")}, batch_size=n,
                      **kwargs)

    def training_step(self, batch: list[dict[str, Any]], batch_idx: int) -> torch.Tensor:
        loss = self.dpo_losses(batch)
        if not torch.isfinite(loss.total):
            raise FloatingPointError(f"non-finite DPO loss at step {self.global_step}, pairs "
                                     f"{[r['id'] for r in batch]}")
        self._log("train", loss, len(batch))
        return loss.total

    def validation_step(self, batch: list[dict[str, Any]], batch_idx: int) -> None:
        self._log("val", self.dpo_losses(batch), len(batch), sync_dist=True)
        if batch_idx == 0 and self.loggers and self.trainer.is_global_zero:
            self.log_samples(batch)

    def log_samples(self, rows: list[dict[str, Any]]) -> int:
        """What the policy says now for the first few pairs' requests: one sample each, seeded by the run's seed (every
        validation samples alike), at most as many frames as the longest side of those pairs, decoded and logged as
        ``val/sample_<k>`` (``qtts.training.media.log_rollout_audio``, as GSPO's validation logs its rollouts).
        Returns how many clips were logged (0 without a codec)."""
        from qtts.eval.pairs import pair_requests
        from qtts.inference.rollouts import sample_rollouts
        from qtts.training.media import ROLLOUT_CLIPS, log_rollout_audio

        synth = self.sampler()
        if synth is None:
            return 0
        rows = rows[:ROLLOUT_CLIPS]
        frames = max(len(r[f"{side}_codes"]) for r in rows for side in ("chosen", "rejected"))
        with torch.no_grad():
            rollouts = sample_rollouts(synth, pair_requests(rows), 1, groups=self.hparams.groups,
                                       seed=self.hparams.seed, max_new_tokens=max(frames, 1))
        return log_rollout_audio(self.loggers, "val/sample", rollouts, self.global_step)

    # -- checkpoints ------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self._reference:
            checkpoint[REFERENCE_KEY] = dict(self._reference)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._reference = dict(checkpoint.get(REFERENCE_KEY) or {})
