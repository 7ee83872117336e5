"""Rewards of sampled utterances for post-training (DPO pair mining, GSPO), from the scorers of ``qtts eval``.

Why one interface: DPO ranks the G samples of a prompt by a scalar, GSPO normalises it within the group, and both
should optimise what ``qtts eval tts`` reports. A :class:`Rewards` scores a batch of :class:`RewardSample` s and
returns every component per sample and their weighted sum (:class:`RewardScores`). Components (each in [0, 1] for
a reward, [-1, 0] for a penalty, so weights are comparable):

* ``intelligibility``: 1 − min(WER, 1), the ASR transcript scored against the text by the Seed-TTS-eval rules
  (``qtts.eval.scoring``; CER for Chinese, Japanese, Korean). An empty clip is all deletions: 0.
* ``similarity``: the cosine between the speaker embeddings of the clip and of its prompt audio
  (``qtts.eval.similarity``); 0 for a sample without a prompt (all samples of a prompt share that, so the ranking
  within a group is unchanged) or without audio.
* ``naturalness``: the predicted MOS (``qtts.eval.naturalness``; DNSMOS OVRL by default) mapped from [1, 5] to
  [0, 1]; 0 without audio.
* ``eos``: −1 when the sample never chose EOS (it ran into ``max_new_tokens``), else 0.
* ``duration``: how far the frames per text unit (words, or characters for Chinese, Japanese, Korean, after
  normalisation) lie outside a plausible band, relative to the band's edge, capped at 1:
  −min(1, (lo − r) / lo) below it, −min(1, (r − hi) / hi) above it, 0 inside. A model that babbles or stops
  early says the text in implausibly many or few frames.
* any callable, named by its import path ``"module:function"`` (or given as a function): ``fn(samples) →`` one
  float per sample.

Only components with a non-zero weight are computed, so a reward without ``similarity`` never loads a speaker model.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from qtts.audio.io import load_audio
from qtts.eval.asr import ASR, ASR_SAMPLE_RATE, open_asr, to_asr_rate, transcribe_clips
from qtts.eval.naturalness import MOSPredictor, open_mos
from qtts.eval.normalize import normalize
from qtts.eval.scoring import score_utterance, unit_of
from qtts.eval.similarity import SpeakerEmbedder, open_speaker_embedder, speaker_similarity

BUILT_IN = ("intelligibility", "similarity", "naturalness", "eos", "duration")
CustomReward = Callable[[Sequence["RewardSample"]], Sequence[float]]


@dataclass
class RewardSample:
    """One sampled utterance to score: its ``text`` in ``language``, the waveform (1-D, at ``sample_rate``; empty
    when the model stopped at once), its number of codec ``frames``, whether it ``ended`` with EOS, and the prompt
    audio its voice was cloned from (``reference``: a path, or a 1-D tensor at 16 kHz; None for other voices)."""

    text: str
    language: str
    audio: torch.Tensor
    sample_rate: int
    frames: int
    ended: bool = True
    reference: str | os.PathLike | torch.Tensor | None = None


@dataclass
class RewardScores:
    """Per sample: each component (``{name: (N,) float64}``, unweighted) and ``total`` (N,), the weighted sum."""

    components: dict[str, torch.Tensor]
    total: torch.Tensor

    def rows(self) -> list[dict[str, float]]:
        """One ``{component: value, ..., "total": value}`` per sample (for logs and datasets)."""
        names = list(self.components)
        return [{**{n: float(self.components[n][i]) for n in names}, "total": float(self.total[i])}
                for i in range(len(self.total))]


@dataclass
class RewardConfig:
    """Weights per component (a built-in name of the module docstring, or a custom ``"module:function"``), the
    duration band in frames per unit (word, or character), and the scorers' sources (None: the built-in defaults
    of ``open_asr``, ``open_speaker_embedder``, ``open_mos``)."""

    weights: dict[str, float] = field(default_factory=lambda: {"intelligibility": 1.0, "eos": 1.0, "duration": 1.0})
    frames_per_word: tuple[float, float] = (1.5, 15.0)
    frames_per_char: tuple[float, float] = (1.0, 10.0)
    asr: str | None = None
    sim: str | None = None
    mos: str | None = None

    def __post_init__(self) -> None:
        for name in ("frames_per_word", "frames_per_char"):
            lo, hi = (float(v) for v in getattr(self, name))
            if not 0 < lo < hi:
                raise ValueError(f"rewards.{name}: need 0 < low < high, got {(lo, hi)}")
            setattr(self, name, (lo, hi))
        for key, weight in self.weights.items():
            if not isinstance(weight, (int, float)) or isinstance(weight, bool):
                raise ValueError(f"rewards.weights.{key}: a number, got {weight!r}")
        self.weights = {k: float(v) for k, v in self.weights.items()}


def load_reward_config(path: str | os.PathLike) -> RewardConfig:
    """A ``RewardConfig`` from a YAML (or JSON) file of its fields; an unknown field or a bad value names the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"rewards file {path} does not exist")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of RewardConfig fields, got {type(values).__name__}")
    known = {f.name for f in fields(RewardConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {unknown}; known: {sorted(known)}")
    try:
        return RewardConfig(**values)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from e


def import_reward(path: str) -> CustomReward:
    """The callable named by ``"module:function"`` (dots after the colon reach attributes)."""
    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"a custom reward is named 'module:function', got {path!r}")
    try:
        target = functools.reduce(getattr, name.split("."), importlib.import_module(module))
    except (ImportError, AttributeError) as e:
        raise ValueError(f"custom reward {path!r} cannot be imported: {e}") from e
    if not callable(target):
        raise ValueError(f"custom reward {path!r} is not callable")
    return target


def duration_penalty(frames: int, units: int, band: tuple[float, float]) -> float:
    """The ``duration`` component (≤ 0): see the module docstring. ``units`` ≥ 1."""
    lo, hi = band
    rate = frames / units
    if rate < lo:
        return -min(1.0, (lo - rate) / lo)
    if rate > hi:
        return -min(1.0, (rate - hi) / hi)
    return 0.0


def text_units(text: str, language: str) -> int:
    """The words (characters for Chinese, Japanese, Korean) of ``text`` after normalisation, at least 1."""
    normalized = normalize(text, language)
    count = len(normalized.replace(" ", "")) if unit_of(language) == "char" else len(normalized.split())
    return max(1, count)


class Rewards:
    """The weighted rewards of ``config``; scorers are opened on first use unless given (``asr``,
    ``speaker_embedder``, ``mos``: already opened models, shared with an evaluation). ``custom``: callables by name,
    besides those the weights name by import path (``{name: fn}``; give the name a weight)."""

    def __init__(self, config: RewardConfig | Mapping | None = None, asr: ASR | None = None,
                 speaker_embedder: SpeakerEmbedder | None = None, mos: MOSPredictor | None = None,
                 custom: Mapping[str, CustomReward] | None = None, device: str = "cpu"):
        self.config = config if isinstance(config, RewardConfig) else RewardConfig(**dict(config or {}))
        self.device = device
        self._asr, self._embedder, self._mos = asr, speaker_embedder, mos
        self.custom: dict[str, CustomReward] = dict(custom or {})
        for name in self.config.weights:
            if name not in BUILT_IN and name not in self.custom:
                if ":" not in name:
                    raise ValueError(f"rewards.weights: unknown component {name!r}: one of {list(BUILT_IN)}, a "
                                     "custom reward's import path 'module:function', or a name given in custom=")
                self.custom[name] = import_reward(name)
        self.weights = {k: w for k, w in self.config.weights.items() if w != 0.0}
        unweighted = [name for name in self.custom if name not in self.config.weights]
        if unweighted:
            raise ValueError(f"custom rewards {unweighted} have no weight in rewards.weights")

    @property
    def asr(self) -> ASR:
        if self._asr is None:
            self._asr = open_asr(self.config.asr, device=self.device)
        return self._asr

    @property
    def speaker_embedder(self) -> SpeakerEmbedder:
        if self._embedder is None:
            self._embedder = open_speaker_embedder(self.config.sim, device=self.device)
        return self._embedder

    @property
    def mos(self) -> MOSPredictor:
        if self._mos is None:
            self._mos = open_mos(self.config.mos)
        return self._mos

    def describe(self) -> dict:
        """What these rewards are (weights, duration bands, scorers), for the settings a result records."""
        config = self.config
        return {"weights": self.weights, "frames_per_word": list(config.frames_per_word),
                "frames_per_char": list(config.frames_per_char),
                "asr": self._asr.name if self._asr is not None else config.asr,
                "sim": getattr(self._embedder, "name", None) or config.sim,
                "mos": getattr(self._mos, "name", None) or config.mos}

    def __call__(self, samples: Sequence[RewardSample]) -> RewardScores:
        """Score ``samples``: the components with a non-zero weight, and their weighted sum."""
        if not samples:
            raise ValueError("no samples to score")
        audio16 = [to_asr_rate(s.audio, s.sample_rate) if s.audio.numel() else torch.zeros(0) for s in samples]
        components: dict[str, list[float]] = {}
        for name in self.weights:
            if name == "intelligibility":
                values = self._intelligibility(samples, audio16)
            elif name == "similarity":
                values = self._similarity(samples, audio16)
            elif name == "naturalness":
                values = self._naturalness(audio16)
            elif name == "eos":
                values = [0.0 if s.ended else -1.0 for s in samples]
            elif name == "duration":
                values = [duration_penalty(s.frames, text_units(s.text, s.language), self._band(s.language))
                          for s in samples]
            else:
                values = [float(v) for v in self.custom[name](samples)]
                if len(values) != len(samples):
                    raise ValueError(f"custom reward {name!r} returned {len(values)} values for {len(samples)} "
                                     "samples")
            components[name] = values
        tensors = {name: torch.tensor(values, dtype=torch.float64) for name, values in components.items()}
        total = torch.zeros(len(samples), dtype=torch.float64)
        for name, values in tensors.items():
            total += self.weights[name] * values
        return RewardScores(tensors, total)

    def _band(self, language: str) -> tuple[float, float]:
        return self.config.frames_per_char if unit_of(language) == "char" else self.config.frames_per_word

    def _intelligibility(self, samples: Sequence[RewardSample], audio16: list[torch.Tensor]) -> list[float]:
        hypotheses = transcribe_clips(self.asr, audio16, [s.language for s in samples])
        return [1.0 - min(score_utterance(s.text, h, s.language).rate, 1.0) for s, h in zip(samples, hypotheses)]

    def _similarity(self, samples: Sequence[RewardSample], audio16: list[torch.Tensor]) -> list[float]:
        values = [0.0] * len(samples)
        rows = [i for i, s in enumerate(samples) if s.reference is not None and audio16[i].numel()]
        if rows:
            loaded: dict[int, torch.Tensor] = {}  # a prompt shared by a group's samples is loaded once
            refs = []
            for i in rows:
                ref = samples[i].reference
                if id(ref) not in loaded:
                    loaded[id(ref)] = ref if isinstance(ref, torch.Tensor) else load_audio(Path(ref),
                                                                                          ASR_SAMPLE_RATE)[0][0]
                refs.append(loaded[id(ref)])
            for i, sim in zip(rows, speaker_similarity(self.speaker_embedder, [audio16[i] for i in rows], refs)):
                values[i] = float(sim)
        return values

    def _naturalness(self, audio16: list[torch.Tensor]) -> list[float]:
        values = [0.0] * len(audio16)
        live = [i for i, w in enumerate(audio16) if w.numel()]
        if live:
            for i, scores in zip(live, self.mos.score([audio16[i] for i in live])):
                values[i] = min(1.0, max(0.0, (float(scores["mos"]) - 1.0) / 4.0))
        return values
