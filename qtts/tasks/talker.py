"""Training of the dual-track talker (pretraining stages, post-training, full fine-tuning).

The model is the released ``TTSModel`` (talker + code predictor, and for Base models the speaker
encoder); batches are dual-track sequences (``qtts.data.sequences``) whose labels are already aligned.
Loss = CE(group 0) + ``predictor_weight`` · CE(groups 1..15) (``dual_track_loss``). The speaker encoder
is trained with the talker (as in the paper) or frozen (``speaker_encoder: frozen``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch

from qtts.data.batching import DualTrackBatch
from qtts.data.sequences import embed_dual_track
from qtts.models.talker.config import TTSConfig
from qtts.models.talker.model import TTSModel
from qtts.tasks.talker_losses import dual_track_loss
from qtts.training.schedules import warmup_cosine


class TalkerTask(L.LightningModule):
    """model: a ``TTSConfig`` (or its dict) for a new model; ``init_from``: a released / exported model folder
    to start from instead (the folder's config then wins over ``model``)."""

    def __init__(self, model: TTSConfig | dict | None = None, init_from: str | None = None,
                 predictor_weight: float = 0.3, predictor_fraction: float = 1.0,
                 speaker_encoder: Literal["joint", "frozen"] = "joint", lr: float = 2e-4,
                 betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.1, warmup_steps: int = 0,
                 min_lr_ratio: float = 0.1, gradient_checkpointing: bool = False, seed: int = 0):
        super().__init__()
        if model is None and init_from is None:
            raise ValueError("give model (a config for a new model) or init_from (a model folder)")
        if not 0.0 < predictor_fraction <= 1.0:
            raise ValueError(f"predictor_fraction must be in (0, 1], got {predictor_fraction}")
        if init_from is not None:
            self.model = TTSModel.from_pretrained(init_from).train()
        else:
            self.model = TTSModel(model if isinstance(model, TTSConfig) else TTSConfig.from_dict(model))
        self.config = self.model.config
        self.save_hyperparameters(ignore=["model"])
        self.hparams["model"] = self.config.to_dict()  # plain data: checkpoints load with weights_only=True
        self.model.talker.gradient_checkpointing = gradient_checkpointing
        if self.model.speaker_encoder is not None and speaker_encoder == "frozen":
            self.model.speaker_encoder.requires_grad_(False)
        self._clock: float | None = None

    # -- the forward pass both steps share --------------------------------------------------------------
    def losses(self, batch: dict[str, Any]):
        tracks: DualTrackBatch = batch["tracks"]
        talker = self.model.talker
        xvectors = self.xvectors(batch, tracks)
        embeds = embed_dual_track(tracks, text_embed=talker.embed_text, codec_embed=talker.embed_codec,
                                  residual_embeds=talker.code_predictor.model.codec_embedding, xvectors=xvectors)
        out = talker(embeds, position_ids=tracks.position_ids, document_ids=tracks.document_ids)
        generator = torch.Generator().manual_seed(hash((self.hparams.seed, self.global_step)) % 2**62)
        return dual_track_loss(out.hidden, out.logits, tracks.labels, tracks.code_labels, talker.predictor_logits,
                               self.hparams.predictor_weight, self.hparams.predictor_fraction, generator)

    def xvectors(self, batch: dict[str, Any], tracks: DualTrackBatch) -> torch.Tensor | None:
        """One speaker-encoder vector per x-vector slot, from the batch's reference clips."""
        slots = int(tracks.xvector_mask.sum())
        if slots == 0:
            return None
        if self.model.speaker_encoder is None or "reference" not in batch:
            raise ValueError("the batch has x-vector slots but "
                             + ("the model has no speaker encoder (set data.xvector=false)"
                                if self.model.speaker_encoder is None else "no reference clips"))
        encoder = self.model.speaker_encoder
        context = torch.no_grad() if self.hparams.speaker_encoder == "frozen" else torch.enable_grad()
        with context:
            return encoder.embed_audio(batch["reference"], batch["reference_lengths"])

    # -- steps ------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.losses(batch)
        if not torch.isfinite(loss.total):
            raise FloatingPointError(f"non-finite loss at step {self.global_step}, batch {batch['ids']}")
        n = len(batch["ids"])
        self.log("train/loss", loss.total, prog_bar=True, batch_size=n)
        self.log_dict({"train/talker_loss": loss.talker, "train/predictor_loss": loss.predictor,
                       "train/talker_acc": loss.talker_accuracy,
                       "train/predictor_acc": loss.predictor_accuracy.mean()}, batch_size=n)
        tokens = int(batch["tracks"].attention_mask.sum())
        now = time.perf_counter()
        if self._clock is not None:
            self.log("train/tokens_per_s", tokens / max(now - self._clock, 1e-9), batch_size=n)
        self._clock = now
        return loss.total

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss = self.losses(batch)
        n = len(batch["ids"])
        self.log_dict({"val/loss": loss.total, "val/talker_loss": loss.talker, "val/predictor_loss": loss.predictor,
                       "val/talker_acc": loss.talker_accuracy}, sync_dist=True, batch_size=n)
        for group, accuracy in enumerate(loss.predictor_accuracy.tolist(), start=1):
            self.log(f"val/acc_group_{group:02d}", accuracy, sync_dist=True, batch_size=n)

    # -- optimisation, export ---------------------------------------------------------------------------
    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                # Norms, biases and embedding tables are not weight-decayed (standard LM practice).
                (no_decay if p.dim() < 2 or "embedding" in name else decay).append(p)
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.hparams.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}],
                                      lr=self.hparams.lr, betas=tuple(self.hparams.betas))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = warmup_cosine(self.hparams.warmup_steps, total, self.hparams.min_lr_ratio)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
                                 "interval": "step"}}

    def export(self, folder: str | Path) -> Path:
        """The released folder format (``config.json`` + ``model.safetensors``), loadable by qwen-tts."""
        self.model.save_pretrained(folder)
        return Path(folder)

    def on_train_end(self) -> None:
        if self.trainer.is_global_zero and self.trainer.default_root_dir:
            self.export(Path(self.trainer.default_root_dir) / "export")
