"""On-line RL post-training of the talker: GSPO, or GRPO with ``importance: token`` (``task=gspo``,
``experiment=gspo``).

Each training step takes a batch of prompts (test-set items: ``qtts.eval.testset``, voiced per item as ``qtts eval
tts`` voices them, ``qtts.eval.run.item_requests``) and

1. samples ``group_size`` utterances of each with the current policy through the Synthesizer (the model code
   inference runs, no gradients, dropout off), recording each step's log-probability: log π_old
   (``qtts.inference.rollouts.sample_rollouts``), seeded from (``seed``, global step) so a resumed run samples what
   an uninterrupted one would;
2. scores them with the configured rewards (``qtts.eval.rewards``; each component is logged) and normalises the
   rewards within each prompt's group (``qtts.tasks.gspo_losses.group_advantages``; all-equal groups skipped);
3. runs ``ppo_epochs`` passes over the samples in ``minibatches`` shuffled minibatches, one optimiser update each:
   log π comes teacher-forced from the training forward (``qtts.inference.logprobs.sequence_logprobs``, the one
   definition of an utterance's log-probability, under the same sampling distribution the rollouts drew from) and
   the loss is ``clipped_policy_loss``. At the first minibatch the weights are still the rollouts', so the ratio must
   be 1: the largest per-step gap between the two log-probabilities is logged (``train/rollout_logprob_gap``) and
   warned about beyond ``MISMATCH_WARNING``.

The policy's distribution is the model's generation config with temperature alone: top-k and top-p are switched
off (``task.sampling`` may set the temperatures, the repetition penalty and the lengths, not those), because a
truncated distribution gives log π = −inf to a code the updated policy no longer keeps, and the ratio with it.
Modules run with dropout off in both phases (``_policy_mode``), so π_old and π are one function of the weights.

The reference of the optional KL term (``kl_coef`` > 0) is the starting point, ``init_from``:

* LoRA: the policy with its adapter turned off (no second copy of the weights; one extra no-grad forward per
  minibatch).
* Full weights: only with ``reference: copy``, a frozen copy of the model made before the first update. It costs
  one more set of weights in memory (for a float32 0.6B talker about 2.4 GB; roughly a quarter more than the
  policy's weights, gradients and AdamW moments together) and a no-grad forward per minibatch; it is never saved
  in checkpoints (it is ``init_from``, reloaded on resume). Without it, ``kl_coef`` > 0 is refused.

One device only for now (``on_fit_start`` refuses more ranks: see there). ``trainer.max_steps`` counts optimiser
updates (Lightning's global step under manual optimisation): a rollout step takes ``ppo_epochs × minibatches`` of
them (a minibatch left without samples, when groups are skipped, takes a step without gradients, which changes
nothing), so ``checkpoint.every_n_steps`` should be a multiple of that. Everything else is the talker task's: LoRA
or full weights, the optimiser and schedule, checkpoints that hold only what trains, the export.
"""

from __future__ import annotations

import copy
import zlib
from contextlib import nullcontext
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn

from qtts.eval.rewards import RewardConfig, Rewards, RewardSample, RewardScores, load_reward_config
from qtts.eval.testset import TestItem
from qtts.inference.logprobs import SequenceLogProbs, sequence_logprobs
from qtts.inference.rollouts import Rollouts
from qtts.inference.sampling import SamplingConfig
from qtts.models.talker.config import TTSConfig
from qtts.tasks.gspo_losses import CLIP_RANGES, Advantages, PolicyLoss, clipped_policy_loss, group_advantages
from qtts.tasks.talker import TalkerTask

# What task.sampling may set: the rest of the sampling config is the model's, with top-k / top-p off.
SAMPLING_KEYS = ("temperature", "subtalker_temperature", "repetition_penalty", "max_new_tokens", "min_new_tokens")
AUDIO_FREE = ("eos", "duration")  # built-in reward components computed from the codes alone
MISMATCH_WARNING = 1e-3  # nats per step between recorded and teacher-forced log π_old before a warning


def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """A 31-bit seed from the run's seed, a global step and a stream (rollouts 0, minibatch order 1)."""
    return zlib.crc32(f"{seed}/{step}/{stream}".encode()) % 2**31


class GSPOTask(TalkerTask):
    """init_from: the model to improve (a released or exported folder; the KL reference). rewards: a ``RewardConfig``'s
    fields (weights per component, duration bands, scorer sources), or a YAML file of them (as ``qtts mine-pairs
    --rewards``). group_size: samples per prompt. importance: ``"sequence"`` (GSPO) or ``"token"`` (GRPO). clip_low
    / clip_high: ε_low / ε_high (None: GSPO's 3e-4 / 4e-4, or GRPO's 0.2 / 0.28). ppo_epochs, minibatches: passes
    over a rollout and updates per pass. kl_coef: β of the KL to the reference (``reference``: ``"auto"`` is the
    adapter-off policy under LoRA and none for full weights; ``"copy"`` a frozen copy, full weights only). groups:
    the policy covers all 16 code groups or group 0 only (``"first"``). sampling: overrides of the generation config
    (``SAMPLING_KEYS``; None keeps its value). rollout_batch_size: rows per generation (None: the whole rollout at
    once). voice: how items are voiced (``qtts.eval.run.choose_voice``). decode_audio: decode rollouts for the
    rewards (None: when a weighted component other than ``eos`` / ``duration`` is configured). advantage_eps: the
    eps of the advantages. grad_clip: the gradients' norm limit (None: no clipping). The other arguments are
    ``TalkerTask``'s (the speaker encoder stays frozen)."""

    def __init__(self, init_from: str, model: TTSConfig | dict | None = None, rewards: dict | str | None = None,
                 group_size: int = 8, importance: Literal["sequence", "token"] = "sequence",
                 clip_low: float | None = None, clip_high: float | None = None, ppo_epochs: int = 1,
                 minibatches: int = 2, kl_coef: float = 0.0, reference: Literal["auto", "copy"] = "auto",
                 groups: Literal["all", "first"] = "all", sampling: dict | None = None,
                 rollout_batch_size: int | None = None, voice: str = "auto", decode_audio: bool | None = None,
                 advantage_eps: float = 1e-6, grad_clip: float | None = 1.0, lr: float = 1e-6,
                 betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.0, warmup_steps: int = 0,
                 min_lr_ratio: float = 1.0, gradient_checkpointing: bool = False, seed: int = 0,
                 codec: str | None = None, lora: dict | None = None):
        if group_size < 2:
            raise ValueError(f"task.group_size must be >= 2 (advantages compare samples), got {group_size}")
        if importance not in CLIP_RANGES:
            raise ValueError(f"task.importance must be 'sequence' (GSPO) or 'token' (GRPO), got {importance!r}")
        for name, value in (("ppo_epochs", ppo_epochs), ("minibatches", minibatches)):
            if value < 1:
                raise ValueError(f"task.{name} must be >= 1, got {value}")
        if rollout_batch_size is not None and rollout_batch_size < 1:
            raise ValueError(f"task.rollout_batch_size must be >= 1, got {rollout_batch_size}")
        if kl_coef < 0:
            raise ValueError(f"task.kl_coef must be >= 0, got {kl_coef}")
        if reference not in ("auto", "copy"):
            raise ValueError(f"task.reference must be 'auto' or 'copy', got {reference!r}")
        if reference == "copy" and lora is not None:
            raise ValueError("task.reference=copy is for full weights: a LoRA policy's reference is its adapter off")
        if kl_coef > 0 and lora is None and reference != "copy":
            raise ValueError("task.kl_coef > 0 with full weights needs a reference: set task.reference=copy (a "
                             "frozen copy of the weights in memory) or task.kl_coef=0")
        if groups not in ("all", "first"):
            raise ValueError(f"task.groups must be 'all' or 'first', got {groups!r}")
        for name, value in (("clip_low", clip_low), ("clip_high", clip_high)):
            if value is not None and not 0 <= value < (1 if name == "clip_low" else float("inf")):
                raise ValueError(f"task.{name} must be in [0, 1) for clip_low, >= 0 for clip_high, got {value}")
        unknown = sorted(set(sampling or {}) - set(SAMPLING_KEYS))
        if unknown:
            raise ValueError(f"task.sampling: {unknown} cannot be set (top-k / top-p stay off for importance "
                             f"ratios); known: {list(SAMPLING_KEYS)}")
        reward_config = (load_reward_config(rewards) if isinstance(rewards, str)
                         else RewardConfig(**dict(rewards or {})))
        super().__init__(model=model, init_from=init_from, speaker_encoder="frozen", lr=lr, betas=betas,
                         weight_decay=weight_decay, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio,
                         gradient_checkpointing=gradient_checkpointing, seed=seed, codec=codec, log_media=False,
                         lora=lora)
        self.save_own_hyperparameters()
        self.automatic_optimization = False
        self.rewards = Rewards(reward_config)
        weighted = list(self.rewards.weights)
        self._decode = decode_audio if decode_audio is not None else any(n not in AUDIO_FREE for n in weighted)
        self._synth: list = []  # the rollout Synthesizer over self.model, made on first use
        # full weights with reference=copy: a frozen copy of init_from's weights (a list: no submodule, no checkpoint)
        self._reference: list = []
        if reference == "copy":
            frozen = copy.deepcopy(self.model).eval()
            self._reference.append(frozen.requires_grad_(False))

    # -- the policy -------------------------------------------------------------------------------------------
    def synthesizer(self):
        """A ``Synthesizer`` over the model being trained, with ``init_from``'s tokenizer and sampling config (top-k,
        top-p off; ``task.sampling`` over it) and, when the rollouts are decoded, the codec (``task.codec``, else
        ``init_from``'s ``speech_tokenizer/``)."""
        if not self._synth:
            from qtts.inference.synthesizer import Synthesizer
            from qtts.models.codec.model import SUBFOLDER, SpeechTokenizer
            from qtts.text.tokenizer import has_tokenizer, load_text_tokenizer

            source = self.hparams.init_from
            codec = None
            if self._decode:
                folder = self.codec_folder()
                if folder is None:
                    raise ValueError(f"the rewards {list(self.rewards.weights)} need audio and {source} has no "
                                     f"{SUBFOLDER}/: set task.codec=TOKENIZER_FOLDER (or task.decode_audio=false)")
                codec = SpeechTokenizer.from_pretrained(folder).to(self.device)
            sampling = SamplingConfig.from_folder(source).replace(
                top_k=0, top_p=1.0, subtalker_top_k=0, subtalker_top_p=1.0, **dict(self.hparams.sampling or {}))
            self._synth.append(Synthesizer(self.model, codec, load_text_tokenizer(
                source if has_tokenizer(source) else None), sampling))
            self._policy_mode()
        return self._synth[0]

    def _policy_mode(self) -> None:
        """Every module in eval mode (no dropout: the policy is the function the rollouts sampled), except the
        decoder stacks' own flag when gradient checkpointing is on (it recomputes only in training mode)."""
        from qtts.models.talker.talker import Decoder

        self.model.eval()
        if self.hparams.gradient_checkpointing:
            for module in self.model.modules():
                if isinstance(module, Decoder):
                    module.training = True

    def sampling_config(self) -> SamplingConfig:
        return self.synthesizer().sampling

    def rollout(self, items: list[TestItem], seed: int) -> tuple[Rollouts, RewardScores]:
        """``group_size`` samples of each item under the current weights (no gradients) and their rewards."""
        from qtts.eval.run import item_requests
        from qtts.inference.rollouts import sample_rollouts

        synth = self.synthesizer()
        self._policy_mode()
        with torch.no_grad():
            requests = item_requests(synth, items, self.hparams.voice)
            rollouts = sample_rollouts(synth, requests, self.hparams.group_size, self.hparams.rollout_batch_size,
                                       self.hparams.groups, audio=self._decode, seed=seed)
        ended = rollouts.logprobs.ended.tolist()
        empty = torch.zeros(0)
        samples = [RewardSample(item.text, item.language, rollouts.audio[row] if rollouts.audio else empty,
                                rollouts.sample_rate, len(rollouts.codes[row]), ended[row], item.ref_audio)
                   for p, item in enumerate(items) for row in range(*rollouts.group(p).indices(len(rollouts)))]
        return rollouts, self.rewards(samples)

    def logprobs(self, rollouts: Rollouts, rows: torch.Tensor) -> tuple[SequenceLogProbs, Any, Any]:
        """Teacher-forced log-probabilities of some rollout rows under the current weights (gradients follow the
        caller's mode), with the batch they were scored on."""
        index = rows.tolist()
        tracks, xvectors = self.synthesizer().teacher_forced_batch(
            [rollouts.requests[i] for i in index], [rollouts.codes[i] for i in index], rollouts.logprobs.ended[rows])
        logprobs = sequence_logprobs(self.model, tracks, xvectors, self.hparams.groups, self.sampling_config())
        return logprobs, tracks, xvectors

    def reference_frames(self, tracks, xvectors) -> torch.Tensor | None:
        """(B, S) per-step log-probabilities under the reference, or None without a KL term."""
        if not self.hparams.kl_coef:
            return None
        if self._peft:
            model, context = self.model, self._peft[0].disable_adapter()
        else:
            model, context = self._reference[0], nullcontext()
        with torch.no_grad(), context:
            return sequence_logprobs(model, tracks, xvectors, self.hparams.groups, self.sampling_config()).frames

    def minibatch_loss(self, rollouts: Rollouts, advantages: Advantages, rows: torch.Tensor
                       ) -> tuple[PolicyLoss, float]:
        """The loss of some rollout rows, and the largest per-step |log π − log π_old| among them."""
        logprobs, tracks, xvectors = self.logprobs(rollouts, rows)
        old = rollouts.logprobs.select(rows)
        if not torch.equal(logprobs.mask.cpu(), old.mask.cpu()):
            raise RuntimeError("the teacher-forced steps of the rollouts differ from the recorded ones (rows "
                               f"{rows.tolist()}): the rollouts and the training forward read different layouts")
        frames = logprobs.frames
        old_frames = old.frames.clone().to(frames.device)  # a normal tensor (the recording ran in inference mode)
        mask = logprobs.mask
        gap = float((frames.detach() - old_frames).abs()[mask].max()) if bool(mask.any()) else 0.0
        h = self.hparams
        loss = clipped_policy_loss(frames, old_frames, mask, advantages.values[rows].to(frames.device),
                                   h.importance, h.clip_low, h.clip_high, advantages.valid[rows].to(frames.device),
                                   self.reference_frames(tracks, xvectors), h.kl_coef)
        return loss, gap

    # -- steps ---------------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if self.trainer.world_size > 1:
            # Each rank would sample its own prompts and skip different groups: a rank whose minibatch is empty
            # takes no backward while the others wait in DDP's all-reduce. Refused rather than left to hang.
            raise ValueError("GSPO runs on one device for now (trainer.devices=1, trainer.num_nodes=1): multi-rank "
                             "rollouts with skipped groups would desynchronise DDP's gradient all-reduce")
        self.rewards.device = str(self.device)  # the scorers open on first use, where the model is
        if self._reference:
            self._reference[0].to(self.device)

    def training_step(self, batch: list[TestItem], batch_idx: int) -> None:
        h = self.hparams
        step = self.global_step
        rollouts, scores = self.rollout(batch, step_seed(h.seed, step))
        advantages = group_advantages(scores.total, h.group_size, h.advantage_eps)
        rows = advantages.valid.nonzero().flatten()
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        generator = torch.Generator().manual_seed(step_seed(h.seed, step, 1))
        stats: list[PolicyLoss] = []
        gap = None
        for _ in range(h.ppo_epochs):
            order = rows[torch.randperm(len(rows), generator=generator)]
            for part in order.tensor_split(h.minibatches):
                optimizer.zero_grad(set_to_none=True)
                if len(part):
                    self._policy_mode()
                    loss, part_gap = self.minibatch_loss(rollouts, advantages, part)
                    if gap is None:
                        gap = part_gap
                        if gap > MISMATCH_WARNING:
                            rank_zero_warn(f"GSPO step {step}: the teacher-forced log π differs from the rollouts' "
                                           f"recorded log π_old by up to {gap:.2e} per step at the first minibatch "
                                           "(the ratio should be 1 there): low precision, or a layout mismatch")
                    if not torch.isfinite(loss.total):
                        raise FloatingPointError(f"non-finite GSPO loss at step {step}, prompts "
                                                 f"{[item.id for item in batch]}")
                    self.manual_backward(loss.total)
                    if h.grad_clip is not None:
                        self.clip_gradients(optimizer, gradient_clip_val=h.grad_clip,
                                            gradient_clip_algorithm="norm")
                    stats.append(loss)
                # A minibatch without samples (every group skipped, or fewer samples than minibatches) still takes
                # its step, without gradients (AdamW leaves such parameters and their moments as they are): every
                # rollout step is ppo_epochs × minibatches global steps, so max_steps and checkpoints stay aligned.
                optimizer.step()
                scheduler.step()
        self._log_rollouts("train", rollouts, scores, advantages)
        n = len(rollouts)
        if stats:
            self.log_dict({f"train/{name}": sum(float(getattr(s, name)) for s in stats) / len(stats)
                           for name in ("policy", "kl", "clip_fraction", "ratio")}, batch_size=n)
            loss = sum(float(s.total.detach()) for s in stats) / len(stats)
            self.log("train/loss", loss, prog_bar=True, batch_size=n)
        if gap is not None:
            self.log("train/rollout_logprob_gap", gap, batch_size=n)

    def validation_step(self, batch: list[TestItem], batch_idx: int) -> None:
        """The validation prompts' rollouts (seeded by the batch alone: every validation samples alike) and their
        rewards; a few prompts' first samples to the loggers when the rollouts are decoded (``log_rollout_audio``)."""
        from qtts.training.media import log_rollout_audio

        rollouts, scores = self.rollout(batch, step_seed(self.hparams.seed, -1 - batch_idx))
        self._log_rollouts("val", rollouts, scores, group_advantages(scores.total, self.hparams.group_size,
                                                                     self.hparams.advantage_eps), sync_dist=True)
        if batch_idx == 0 and rollouts.audio and self.loggers and self.trainer.is_global_zero:
            log_rollout_audio(self.loggers, "val/rollout", rollouts, self.global_step)

    def _log_rollouts(self, prefix: str, rollouts: Rollouts, scores: RewardScores, advantages: Advantages,
                      **kwargs) -> None:
        n = len(rollouts)
        values = {f"{prefix}/reward": float(scores.total.mean()),
                  f"{prefix}/skipped_groups": float(advantages.skipped_groups),
                  f"{prefix}/frames": sum(len(c) for c in rollouts.codes) / n,
                  f"{prefix}/ended": float(rollouts.logprobs.ended.float().mean())}
        # a custom component by its function's name ("module:function" → "function")
        values |= {f"{prefix}/reward_{name.rpartition(':')[2]}": float(v.mean())
                   for name, v in scores.components.items()}
        self.log(f"{prefix}/reward", values.pop(f"{prefix}/reward"), prog_bar=True, batch_size=n, **kwargs)
        self.log_dict(values, batch_size=n, **kwargs)
