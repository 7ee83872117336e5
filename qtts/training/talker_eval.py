"""Validation callback for talker trainings: every K validations, speak held-out sentences and log their WER.

Why: the validation loss is teacher-forced; whether the model being trained speaks intelligibly from text alone (and
stops) only shows when it generates. The callback runs ``qtts.eval.heldout`` on the LightningModule's own model (the
same module, in eval mode, no reload; its train/eval flags are restored afterwards) through a ``Synthesizer``, and
logs ``val/wer`` (and ``val/sim`` / ``val/mos`` when an embedder / MOS predictor is configured) with the first clips'
audio to the run's loggers. It runs on global rank zero (sharded models are not supported: their weights are not
whole on one rank) and inside its own RNG scope, so a run with it draws the same training randomness as without,
and resumes exactly (the validation count is part of the checkpoint).

The codec that decodes the generated codes is ``codec``, else the task's ``codec`` (``task.codec``), else the codec
recorded in the codes folder the data module reads (``info.json``, written by ``qtts data extract-codes``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from qtts.training.media import log_audio


class HeldOutEvaluation(L.Callback):
    """sentences: a test set (``qtts.eval.testset.read_testset``: JSONL or Seed-TTS-eval, e.g. the held-out set of
    ``python -m data_prep.synthetic OUT --testset``); the first ``count`` of them (of
    ``languages`` only, when given) are spoken every ``every`` validations. ``asr``: a model path for
    ``qtts.eval.asr.open_asr`` (None: the built-in one). ``speaker_embedder``: SIM against the sentences' prompt
    audio, with ``qtts.eval.similarity.open_speaker_embedder`` of this path, or of its built-in default for
    ``true``; ``mos``: ``qtts.eval.naturalness.open_mos`` of this name or path (``dnsmos``); None: not scored.
    ``voice`` / ``text_layout``: how the sentences are voiced and laid out (``qtts.eval.run.item_requests``): set them
    to what the run trains (e.g. ``xvector`` / ``non_streaming`` for a Base talker trained on x-vector examples in
    the non-streaming layout) — a talker asked in a layout it never saw stops or babbles whatever it has learned.
    ``audio``: how many of the clips are logged as audio. Generation is greedy by default (``sampling``: the
    ``Synthesizer``'s settings to override); ``max_new_tokens`` bounds a model that does not stop yet. ``device``:
    where the ASR and the speaker embedder run (default CPU; the model generates where it trains)."""

    def __init__(self, sentences: str, every: int = 1, count: int = 8, languages: list[str] | None = None,
                 asr: str | None = None, speaker_embedder: str | bool | None = None, mos: str | None = None,
                 codec: str | None = None, audio: int = 2, batch_size: int = 8, max_new_tokens: int = 256,
                 sampling: dict | None = None, device: str | None = None, voice: str = "auto",
                 text_layout: str = "default"):
        from qtts.eval.testset import read_testset
        from qtts.text.languages import get_language

        if every < 1 or count < 1:
            raise ValueError(f"every and count must be >= 1, got every={every}, count={count}")
        items = read_testset(sentences)
        if languages:
            keep = {get_language(x).code for x in languages}
            items = [s for s in items if get_language(s.language).code in keep]
        if not items:
            raise ValueError(f"{sentences}: no sentences in languages {languages}")
        self.sentences = items[:count]
        self.every, self.audio, self.batch_size = every, audio, batch_size
        self.sampling = {"do_sample": False, "subtalker_dosample": False, "repetition_penalty": 1.0,
                         "max_new_tokens": max_new_tokens, **(sampling or {})}
        self.asr_path, self.embedder_name, self.mos_name, self.codec = asr, speaker_embedder, mos, codec
        self.device, self.voice, self.text_layout = device, voice, text_layout
        self.validations = 0
        self._scorers: dict[str, Any] = {}
        self._synth_parts: dict[str, Any] = {}

    # -- checkpointed state: the validation count, so "every K" continues where it was ------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"validations": self.validations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.validations = int(state.get("validations", 0))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from qtts.training.strategies import holds_full_weights

        if not holds_full_weights(trainer.strategy):
            raise ValueError(f"callbacks.heldout_eval: generation needs the whole model on rank 0; under "
                             f"{type(trainer.strategy).__name__} its weights are sharded (use one device or ddp, "
                             "or evaluate the run's checkpoints after training)")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.validations += 1
        if self.validations % self.every or not trainer.is_global_zero:
            return
        metrics, wavs, rate = self.evaluate(pl_module)
        step = trainer.global_step
        for logger in trainer.loggers:
            logger.log_metrics({f"val/{k}": v for k, v in metrics.items()}, step=step)
        for sentence, wav in list(zip(self.sentences, wavs))[: self.audio]:
            if wav.numel():
                log_audio(trainer.loggers, f"val/heldout_{sentence.id}", wav, rate, step)
        rank_zero_info("held-out sentences: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))

    def evaluate(self, pl_module: L.LightningModule) -> tuple[dict[str, float], list[torch.Tensor], int]:
        """Speak and score the sentences with ``pl_module.model``: (metrics, waveforms, sample rate). The modules'
        train/eval flags and every RNG are as before afterwards."""
        from qtts.eval.heldout import score_sentences, synthesize_sentences
        from qtts.inference.synthesizer import Synthesizer

        model = pl_module.model
        flags = {m: m.training for m in model.modules()}
        states = random.getstate(), np.random.get_state()
        device = pl_module.device
        devices = [device] if device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), torch.inference_mode():
                codec, tokenizer = self._parts(pl_module)
                synth = Synthesizer(model, codec.to(device), tokenizer)
                wavs = synthesize_sentences(synth, self.sentences, self.batch_size, clamp_codes=True, voice=self.voice,
                                            text_layout=self.text_layout, **self.sampling)
                asr, embedder, mos = self._open_scorers()
                scores = score_sentences(wavs, synth.sample_rate, self.sentences, asr, embedder, mos)
        finally:
            for module, training in flags.items():
                module.train(training)
            random.setstate(states[0])
            np.random.set_state(states[1])
        return scores.metrics(), wavs, synth.sample_rate

    # -- what the synthesis needs, opened once --------------------------------------------------------------------
    def _parts(self, pl_module: L.LightningModule):
        if not self._synth_parts:
            from qtts.models.codec.model import SpeechTokenizer
            from qtts.text.tokenizer import load_text_tokenizer

            datamodule = getattr(pl_module._trainer, "datamodule", None)  # None: a task outside a Trainer
            codec = self.codec or getattr(pl_module.hparams, "codec", None) or _codes_codec(datamodule)
            if codec is None:
                raise ValueError("HeldOutEvaluation needs a codec to decode: set its codec, or task.codec, or train "
                                 "on an extract-codes folder whose info.json names its codec")
            tokenizer = datamodule.text_tokenizer() if hasattr(datamodule, "text_tokenizer") else \
                load_text_tokenizer(None)
            self._synth_parts = {"codec": SpeechTokenizer.from_pretrained(codec).eval(), "tokenizer": tokenizer}
        return self._synth_parts["codec"], self._synth_parts["tokenizer"]

    def _open_scorers(self):
        if not self._scorers:
            from qtts.eval.asr import open_asr

            device = self.device or "cpu"
            self._scorers["asr"] = open_asr(self.asr_path, device=device)
            self._scorers["embedder"] = None
            self._scorers["mos"] = None
            if self.embedder_name not in (None, False):
                from qtts.eval.similarity import open_speaker_embedder

                source = None if self.embedder_name is True else self.embedder_name
                self._scorers["embedder"] = open_speaker_embedder(source, device=device)
            if self.mos_name is not None:
                from qtts.eval.naturalness import open_mos

                self._scorers["mos"] = open_mos(self.mos_name)
        return self._scorers["asr"], self._scorers["embedder"], self._scorers["mos"]


def _codes_codec(datamodule: Any) -> str | None:
    """The codec recorded by ``qtts data extract-codes`` in the (first) codes folder the data module reads."""
    corpus = getattr(datamodule, "corpus", None)
    if isinstance(corpus, (list, tuple)) and corpus:
        corpus = corpus[0]
    if isinstance(corpus, dict):
        corpus = corpus.get("path")
    if not isinstance(corpus, (str, Path)):
        return None
    info = Path(corpus) / "info.json"
    return json.loads(info.read_text()).get("codec") if info.is_file() else None
