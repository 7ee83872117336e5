"""Train the ECAPA speaker encoder as a speaker classifier (AAM-softmax), the usual x-vector recipe.

The released Base models learn their speaker encoder jointly with the talker; training it alone
first gives a strong initialisation, a tool to check speaker similarity, and a speaker encoder
for new voices. Parameters live under ``speaker_encoder.*`` exactly as in the released checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from torch import nn

from qtts.audio.features import SpeakerMel
from qtts.models.talker.speaker_encoder import SpeakerEncoder, SpeakerEncoderConfig
from qtts.tasks.losses import aam_softmax_loss, equal_error_rate
from qtts.training.media import log_audio
from qtts.training.schedules import warmup_cosine


class SpeakerEncoderTask(L.LightningModule):
    def __init__(self, model: SpeakerEncoderConfig | dict, num_speakers: int, num_languages: int = 0, lr: float = 1e-3,
                 weight_decay: float = 1e-4, warmup_steps: int = 100, margin: float = 0.2, scale: float = 30.0,
                 margin_warmup_steps: int = 0, log_media: bool = True):
        super().__init__()
        model = model if isinstance(model, SpeakerEncoderConfig) else SpeakerEncoderConfig(**model)
        self.save_hyperparameters(ignore=["model"])
        self.hparams["model"] = asdict(model)  # plain data: checkpoints load with weights_only=True
        self.speaker_encoder = SpeakerEncoder(model)
        self.mel = SpeakerMel(n_mels=model.mel_dim, sample_rate=model.sample_rate)
        # The released encoder has no output normalisation; its x-vectors share a large common offset
        # that makes every cosine close to 1. The classification head centres and scales them first
        # (the model itself, and what it hands the talker, stay exactly the released ones).
        self.head_norm = nn.BatchNorm1d(model.enc_dim, affine=False)
        self.speaker_weights = nn.Parameter(torch.randn(num_speakers, model.enc_dim) / math.sqrt(model.enc_dim))
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []

    def embed(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        mels = self.mel(wav, lengths)
        frames = self.mel.num_frames(lengths) if lengths is not None else None
        return self.speaker_encoder(mels, frames)

    @property
    def margin(self) -> float:
        """The angular margin, ramped up linearly over ``margin_warmup_steps`` (classes first, then tight)."""
        ramp = self.hparams.margin_warmup_steps
        return self.hparams.margin * (min(1.0, self.global_step / ramp) if ramp > 0 else 1.0)

    def _normalize(self, emb: torch.Tensor) -> torch.Tensor:
        if self.training and emb.shape[0] == 1:  # batch statistics need two items: use the running ones
            norm = self.head_norm
            return torch.nn.functional.batch_norm(emb, norm.running_mean, norm.running_var, training=False)
        return self.head_norm(emb)

    def _step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        emb = self.embed(batch["wav"], batch["lengths"])
        loss, cosine = aam_softmax_loss(self._normalize(emb), self.speaker_weights, batch["speaker"], self.margin,
                                        self.hparams.scale)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.global_step}, batch {batch['ids']}")
        return loss, cosine, emb

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, cosine, _ = self._step(batch)
        acc = (cosine.argmax(-1) == batch["speaker"]).float().mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["ids"]))
        self.log("train/acc", acc, prog_bar=True, batch_size=len(batch["ids"]))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss, cosine, emb = self._step(batch)
        acc = (cosine.argmax(-1) == batch["speaker"]).float().mean()
        self.log("val/loss", loss, sync_dist=True, batch_size=len(batch["ids"]))
        self.log("val/acc", acc, sync_dist=True, batch_size=len(batch["ids"]))
        self._val.append((emb.detach().cpu(), batch["speaker"].cpu()))
        if batch_idx == 0 and self.hparams.log_media and self.trainer.is_global_zero and self.loggers:
            n = int(batch["lengths"][0])
            log_audio(self.loggers, "val/input", batch["wav"][0, :n], self.mel.sample_rate, self.global_step,
                      self.mel(batch["wav"][:1, :n])[0].T)

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        emb = torch.nn.functional.normalize(torch.cat([e for e, _ in self._val]), dim=-1)
        labels = torch.cat([s for _, s in self._val])
        self._val.clear()
        scores = emb @ emb.T
        pairs = torch.triu(torch.ones_like(scores, dtype=torch.bool), diagonal=1)
        eer = equal_error_rate(scores[pairs], (labels[:, None] == labels[None, :])[pairs])
        if not math.isnan(eer):
            self.log("val/eer", eer, rank_zero_only=True)

    def configure_optimizers(self) -> dict[str, Any]:
        decay = [p for n, p in self.named_parameters() if p.ndim > 1]
        no_decay = [p for n, p in self.named_parameters() if p.ndim <= 1]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.hparams.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=self.hparams.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(self.hparams.warmup_steps, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
