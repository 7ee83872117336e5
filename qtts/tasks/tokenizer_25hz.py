"""Stage 1 of the 25 Hz tokenizer's training: ASR with the single-codebook VQ inside the encoder
(``reference/tokenizer-25hz.md`` §3; issue 14, "Training" 1).

16 kHz utterances → Whisper log-mel → the encoder's ASR path (``WhisperVQEncoder.forward``: blocks, stride-2 conv
to 25 Hz, the VQ in training mode, transposed conv back, the remaining blocks, pooling, ``proj``) → an ASR head
(``qtts.models.tokenizer_25hz.asr_head``: CTC over characters by default, or a causal LM from a local transformers
folder, the paper's Qwen2-Audio-style setting). Loss = head loss (logged as ``ctc`` or ``lm_ce``) +
``commitment_weight`` × the VQ's commitment loss; the codebook itself learns by EMA (k-means-initialised on the
first batch from scratch, dead codes restarted on batch vectors, as ``task.vq`` says), everything else by
gradients. The detokenizer (DiT, BigVGAN) rides along frozen so the export is the whole released folder.

Validation decodes greedily and scores the transcripts with ``qtts.eval.scoring`` (the Seed-TTS-eval normaliser
and rules: the paper's Table 3 measure): ``val/wer`` is the mean per-utterance error rate × 100 (CER for zh/ja/ko),
per language too. Training ends by writing ``<run>/export``: the tokenizer folder (``Tokenizer25Hz.save_pretrained``,
loadable by qwen-tts) with the head in ``export/asr_head/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.distributed as dist

from qtts.eval.scoring import OVERALL, UtteranceScore, score_utterance, summarize, summarize_by_language
from qtts.models.codec.vq_training import VQTrainingConfig
from qtts.models.tokenizer_25hz.asr_head import HEAD_FOLDER, ASRHead, CausalLMHead, CTCHead, load_asr_head
from qtts.models.tokenizer_25hz.config import Tokenizer25HzConfig
from qtts.models.tokenizer_25hz.model import Tokenizer25Hz
from qtts.models.tokenizer_25hz.whisper_init import init_from_whisper_
from qtts.training.schedules import warmup_cosine

HEADS = ("ctc", "causal_lm")


class Tokenizer25HzASRTask(L.LightningModule):
    """model: the tokenizer config (from scratch) · init_from: a 25 Hz tokenizer folder to continue from (its
    ``asr_head/`` too, when it has one; its config replaces ``model``) · vocabulary: the characters of the
    transcripts (the data module supplies them; the CTC head's) · head: the ASR head, ``ctc`` or ``causal_lm`` (a
    causal LM from the local transformers folder ``lm``; ``model.encoder_config.output_dim`` must equal its hidden
    size; ``max_new_tokens`` bounds its validation transcripts) · whisper_init: a local Whisper (or Qwen2-Audio)
    folder whose encoder initialises the stem, blocks and final norm of a tokenizer trained from scratch ·
    vq: ``VQTrainingConfig`` fields (decay, kmeans_iters, dead_code_ratio) · commitment_weight: λ of the commitment
    loss · seed: with the step, seeds k-means and dead-code restarts (so a resumed run draws the same)."""

    def __init__(self, model: Tokenizer25HzConfig | dict | None = None, vocabulary: list[str] | None = None,
                 init_from: str | None = None, head: Literal["ctc", "causal_lm"] = "ctc", lm: str | None = None,
                 max_new_tokens: int = 128, whisper_init: str | None = None, vq: dict | None = None,
                 commitment_weight: float = 0.25, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.98),
                 weight_decay: float = 0.01, warmup_steps: int = 0, seed: int = 0):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"task.head must be one of {list(HEADS)}, got {head!r}")
        if isinstance(commitment_weight, bool) or not isinstance(commitment_weight, (int, float)) \
                or commitment_weight < 0:
            raise ValueError(f"task.commitment_weight must be a number ≥ 0, got {commitment_weight!r}")
        if not lr > 0:
            raise ValueError(f"task.lr must be > 0, got {lr!r}")
        if warmup_steps < 0:
            raise ValueError(f"task.warmup_steps must be ≥ 0, got {warmup_steps!r}")
        if init_from and whisper_init:
            raise ValueError("task.whisper_init initialises a tokenizer trained from scratch; task.init_from "
                             "continues a trained one: set one of them")
        if init_from:
            self.tokenizer = Tokenizer25Hz.from_pretrained(init_from).train()
        elif model is not None:
            config = model if isinstance(model, Tokenizer25HzConfig) else Tokenizer25HzConfig.from_dict(model)
            self.tokenizer = Tokenizer25Hz(config)
            self.tokenizer.encoder.tokenizer.audio_quantizer.codebook.reset_()  # k-means on the first batch
            if whisper_init:
                init_from_whisper_(self.tokenizer.encoder.tokenizer, whisper_init)
        else:
            raise ValueError("task: give model (a tokenizer config, to train from scratch) or init_from (a folder)")
        self.tokenizer.decoder.requires_grad_(False)
        self._head_kind, self._lm, self._max_new_tokens = head, lm, max_new_tokens
        self.head = self._build_head(init_from, vocabulary)
        output_dim = self.tokenizer.config.encoder_config.output_dim
        if self.head.input_dim != output_dim:
            raise ValueError(f"model.encoder_config.output_dim {output_dim} must equal the ASR head's input width "
                             f"{self.head.input_dim} (a causal LM's hidden size)")
        self.save_hyperparameters(ignore=["model"])
        self.hparams["model"] = self.tokenizer.config.to_dict()  # plain data: checkpoints load with weights_only
        vocabulary = getattr(self.head, "vocabulary", None)
        self.hparams["vocabulary"] = list(vocabulary) if vocabulary is not None else None
        self.vq = VQTrainingConfig(**(vq or {}))
        self._scores: list[tuple[str, UtteranceScore]] = []

    def _build_head(self, init_from: str | None, vocabulary: list[str] | None) -> ASRHead:
        kind = self._head_kind
        if init_from and (Path(init_from) / HEAD_FOLDER).is_dir():
            head = load_asr_head(Path(init_from) / HEAD_FOLDER)
            if head.TYPE != kind:
                raise ValueError(f"task.head is {kind!r} but task.init_from's {HEAD_FOLDER}/ holds a "
                                 f"{head.TYPE!r} head")
            if kind == CausalLMHead.TYPE:
                return head
            missing = sorted(set(vocabulary or []) - set(head.vocabulary))
            if missing:
                raise ValueError(f"task.init_from: {init_from}/{HEAD_FOLDER} cannot write the data's character(s) "
                                 f"{missing}")
            return head
        if kind == CausalLMHead.TYPE:
            if not self._lm:
                raise ValueError("task.lm: the causal_lm head needs a local transformers causal-LM folder")
            return CausalLMHead(self._lm, self._max_new_tokens)
        if not vocabulary:
            raise ValueError("task.vocabulary: the CTC head needs the transcripts' characters (the data module "
                             "TranscribedAudioDataModule supplies them)")
        return CTCHead(self.tokenizer.config.encoder_config.output_dim, list(vocabulary))

    @property
    def asr_loss_name(self) -> str:
        """The head's loss in the logs: ``ctc``, or ``lm_ce`` (the causal LM's cross-entropy)."""
        return "ctc" if isinstance(self.head, CTCHead) else "lm_ce"

    @property
    def encoder(self):
        return self.tokenizer.encoder

    def forward_batch(self, batch: dict[str, Any]):
        """A collated batch (16 kHz ``wav``, ``lengths``) → the encoder network's ``EncoderOutput``."""
        if "texts" not in batch:
            raise ValueError("the batch has no transcripts: use data=asr_corpus (TranscribedAudioDataModule)")
        wavs = [w[:n] for w, n in zip(batch["wav"], batch["lengths"].tolist())]
        mel, mel_lengths = self.encoder.features(wavs)
        # k-means seeds and code restarts draw from a generator seeded by (seed, step), not the global RNG: a
        # resumed run makes the same draws.
        generator = torch.Generator().manual_seed(hash((self.hparams.seed, int(self.global_step))) % 2**62)
        return self.encoder.tokenizer(mel, mel_lengths, self.vq, generator)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self.forward_batch(batch)
        asr = self.head.loss(out.hidden, out.lengths, batch["texts"])
        loss = asr + self.hparams.commitment_weight * out.vq.commitment_loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss ({self.asr_loss_name} {float(asr)}, commitment "
                                     f"{float(out.vq.commitment_loss)}) at step {self.global_step}, "
                                     f"batch {batch['ids']}")
        n = len(batch["texts"])
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log_dict({f"train/{self.asr_loss_name}": asr, "train/commitment": out.vq.commitment_loss,
                       "train/vq_perplexity": out.vq.stats["perplexity"], "train/vq_usage": out.vq.stats["usage"]},
                      batch_size=n)
        return loss

    # -- validation ---------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._scores = []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.forward_batch(batch)
        n = len(batch["texts"])
        asr = self.head.loss(out.hidden, out.lengths, batch["texts"])
        self.log(f"val/{self.asr_loss_name}", asr, sync_dist=True, batch_size=n)
        self.log("val/vq_perplexity", out.vq.stats["perplexity"], sync_dist=True, batch_size=n)
        self.log("val/vq_usage", out.vq.stats["usage"], sync_dist=True, batch_size=n)
        for item, ref, hyp, lang in zip(batch["ids"], batch["texts"], self.head.transcribe(out.hidden, out.lengths),
                                        batch["language_codes"]):
            self._scores.append((lang, score_utterance(ref, hyp, lang, item)))

    def on_validation_epoch_end(self) -> None:
        scores = self._scores
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, scores)
            scores = [s for part in gathered for s in part]
        if not scores:
            return
        overall = summarize(s for _, s in scores)
        self.log("val/wer", overall.mean_rate_x100)
        self.log("val/wer_corpus", overall.corpus_rate_x100)
        self.log("val/utterances", float(overall.count))  # all ranks' clips: what the rates average over
        by_language = summarize_by_language(scores)
        if len(by_language) > 2:  # more than one language besides the overall summary
            for language, summary in by_language.items():
                if language != OVERALL:
                    self.log(f"val/wer_{language}", summary.mean_rate_x100)

    # -- optimisation, export -----------------------------------------------------------------------
    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.hparams.lr, betas=tuple(self.hparams.betas),
                                weight_decay=self.hparams.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = warmup_cosine(self.hparams.warmup_steps, total) if self.hparams.warmup_steps else (lambda s: 1.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, schedule),
                                                   "interval": "step"}}

    def export(self, folder: str | Path) -> Path:
        """The released tokenizer folder, with the ASR head in ``asr_head/`` (stage 2 continues from both)."""
        folder = Path(folder)
        self.tokenizer.save_pretrained(folder)
        self.head.save_pretrained(folder / HEAD_FOLDER)
        return folder

    def on_train_end(self) -> None:
        if self.trainer.is_global_zero and self.trainer.default_root_dir:
            self.export(Path(self.trainer.default_root_dir) / "export")
