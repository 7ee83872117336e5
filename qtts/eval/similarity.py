"""Speaker similarity (SIM) as Seed-TTS-eval scores it: the cosine between the speaker embeddings of a generated clip
and of its prompt, both 16 kHz and full length, averaged over utterances by the caller.

:func:`open_speaker_embedder` picks the embedding model from ``source``:

* ``None`` → the built-in default: Resemblyzer's GE2E LSTM encoder, whose weights ship inside the PyPI package
  ``resemblyzer`` (eval extra). Small and CPU-fast, for smoke tests and quick checks; not the model of published
  SIM numbers;
* a UniSpeech ``wavlm_large_finetune.pth`` (the file, or a folder holding it; see :mod:`qtts.eval.wavlm_ecapa`)
  → WavLM-Large + ECAPA-TDNN, the model Seed-TTS-eval reports;
* anything :func:`qtts.runs.open_trained` opens whose talker has a speaker encoder → that model's own ECAPA-TDNN
  x-vector (how close a clone is in the model's own speaker space).

Nothing is downloaded: a path that is none of these raises :class:`SpeakerEmbedderError` naming it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from qtts.audio.io import resample
from qtts.eval.asr import ASR_SAMPLE_RATE, to_asr_rate

SAMPLE_RATE = ASR_SAMPLE_RATE  # Seed-TTS-eval resamples both clips to 16 kHz before embedding

class SpeakerEmbedderError(ValueError):
    """A source that is not a speaker-embedding model, or a model without a speaker encoder."""


def _check_wavs(wavs: Sequence[torch.Tensor]) -> None:
    for i, wav in enumerate(wavs):
        if not isinstance(wav, torch.Tensor) or wav.dim() != 1:
            shape = tuple(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
            raise ValueError(f"wav {i}: expected a 1-D tensor at 16 kHz (see to_asr_rate), got {shape}")
        if wav.numel() == 0:
            raise ValueError(f"wav {i} is empty: a speaker embedding needs audio")


class SpeakerEmbedder(ABC):
    """A speaker-embedding model: 16 kHz mono waveforms in, one embedding per waveform out."""

    name: str
    dim: int  # embedding size

    @abstractmethod
    def embed(self, wavs: Sequence[torch.Tensor]) -> torch.Tensor:
        """1-D float tensors at 16 kHz (full length, each embedded on its own) → (N, dim) float32 on the CPU."""

    def embed_at(self, wavs: Sequence[torch.Tensor], sample_rate: int) -> torch.Tensor:
        """:meth:`embed` for audio at any rate (and 1- or 2-D): resampled to 16 kHz first."""
        return self.embed([to_asr_rate(w, sample_rate) for w in wavs])


def speaker_similarity(embedder: SpeakerEmbedder, wavs: Sequence[torch.Tensor],
                       references: Sequence[torch.Tensor]) -> list[float]:
    """The cosine similarity of each ``wavs[i]`` to ``references[i]`` (16 kHz 1-D tensors), in [-1, 1]."""
    if len(wavs) != len(references):
        raise ValueError(f"{len(wavs)} wavs but {len(references)} references: SIM compares them pair by pair")
    if not wavs:
        return []
    embeddings = embedder.embed([*wavs, *references])
    generated, prompts = embeddings[: len(wavs)], embeddings[len(wavs):]
    return F.cosine_similarity(generated, prompts, dim=1).tolist()


# -- the built-in default: Resemblyzer ---------------------------------------------------------------------------


class ResemblyzerEmbedder(SpeakerEmbedder):
    """Resemblyzer's ``VoiceEncoder`` (GE2E, 3-layer LSTM over 40-band mels of 1.6 s windows, averaged and
    L2-normed into 256 dims) with its shipped ``pretrained.pt``.

    Its ``preprocess_wav`` does two things; only the first is kept. The volume is raised to -30 dBFS (never
    lowered), because the encoder reads a *linear* mel, so loudness moves the embedding and the weights were trained
    on normalised audio. Long silences are *not* trimmed by its WebRTC VAD: Seed-TTS-eval embeds every clip at full
    length, and a generated clip's pauses are part of what is scored (trimming would also make SIM depend on a
    VAD's decisions on synthetic audio)."""

    name = "resemblyzer"
    dim = 256

    def __init__(self, device: str | torch.device = "cpu"):
        try:
            from resemblyzer import VoiceEncoder
        except ImportError as e:
            raise SpeakerEmbedderError(
                "the default speaker embedder needs the eval extra (pip install -e '.[eval]': resemblyzer, "
                f"setuptools<81 for its webrtcvad import): {e}"
            ) from e
        self.device = torch.device(device)
        self.encoder = VoiceEncoder(device=self.device, verbose=False)
        self.encoder.eval()

    def embed(self, wavs: Sequence[torch.Tensor]) -> torch.Tensor:
        import numpy as np
        from resemblyzer import hparams
        from resemblyzer.audio import normalize_volume

        _check_wavs(wavs)
        out = []
        for wav in wavs:
            x = wav.detach().float().cpu().numpy()
            if np.any(x):  # a silent clip has no level to raise (its dBFS is -inf)
                x = normalize_volume(x, hparams.audio_norm_target_dBFS, increase_only=True)
            out.append(torch.from_numpy(self.encoder.embed_utterance(x.astype(np.float32))))
        return torch.stack(out).float() if out else torch.zeros(0, self.dim)


# -- Seed-TTS-eval's model: WavLM-Large + ECAPA-TDNN --------------------------------------------------------------


class WavLMEcapaEmbedder(SpeakerEmbedder):
    """UniSpeech's fine-tuned WavLM-Large + ECAPA-TDNN (:mod:`qtts.eval.wavlm_ecapa`), one clip at a time as
    Seed-TTS-eval runs it (batching would pad, and the instance norm and pooling would see the padding)."""

    def __init__(self, checkpoint: str | Path, wavlm: str | Path | None = None, device: str | torch.device = "cpu",
                 only_if_missing: bool = False):
        from qtts.eval.wavlm_ecapa import load_wavlm_ecapa

        self.device = torch.device(device)
        self.model = load_wavlm_ecapa(checkpoint, wavlm, only_if_missing=only_if_missing).to(self.device)
        self.name = f"wavlm-ecapa:{checkpoint}"
        self.dim = self.model.ecapa_config.emb_dim

    @torch.inference_mode()
    def embed(self, wavs: Sequence[torch.Tensor]) -> torch.Tensor:
        _check_wavs(wavs)
        out = [self.model(w.detach().float().to(self.device)).float().cpu() for w in wavs]
        return torch.stack(out) if out else torch.zeros(0, self.dim)


# -- a qtts model's own speaker encoder ---------------------------------------------------------------------------


class QttsSpeakerEmbedder(SpeakerEmbedder):
    """The talker's speaker encoder of a qtts/released model: the x-vector the Synthesizer computes for a reference
    (``SpeakerEncoder.embed_audio`` on the clip at the encoder's rate, its own log-mels). The 16 kHz input is
    resampled up to that rate (24 kHz), so the band above 8 kHz is empty, as it is for every SIM model here."""

    def __init__(self, source: str | Path, device: str | torch.device = "cpu"):
        from qtts.runs import open_trained

        try:
            trained = open_trained(source)
        except (FileNotFoundError, ValueError) as e:
            raise SpeakerEmbedderError(
                f"{source} is not a speaker-embedding model: expected a UniSpeech {_unispeech_hint()}, or a qtts "
                f"model / run / checkpoint with a speaker encoder ({e})"
            ) from e
        encoder = trained.model.speaker_encoder
        if encoder is None:
            raise SpeakerEmbedderError(
                f"{source}: the model ({trained.model.config.tts_model_type}) has no speaker encoder; only Base "
                "models embed reference audio"
            )
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device).eval()
        self.sample_rate = encoder.config.sample_rate
        self.dim = encoder.config.enc_dim
        self.name = f"qtts-speaker-encoder:{source}"

    @torch.inference_mode()
    def embed(self, wavs: Sequence[torch.Tensor]) -> torch.Tensor:
        _check_wavs(wavs)
        dtype = next(self.encoder.parameters()).dtype
        out = []
        for wav in wavs:
            wav = resample(wav.detach().float().cpu().unsqueeze(0), SAMPLE_RATE, self.sample_rate)[0]
            out.append(self.encoder.embed_audio(wav.to(self.device, dtype)).float().cpu())
        return torch.stack(out) if out else torch.zeros(0, self.dim)


def _unispeech_hint() -> str:
    from qtts.eval.wavlm_ecapa import CHECKPOINT_NAME

    return f"{CHECKPOINT_NAME} (file, or a folder holding it)"


def open_speaker_embedder(source: str | Path | None = None, device: str = "cpu") -> SpeakerEmbedder:
    """The speaker embedder for ``source`` (see the module docstring): ``None`` → Resemblyzer; a UniSpeech
    checkpoint → WavLM-Large + ECAPA-TDNN; a qtts model → its speaker encoder."""
    if source is None:
        return ResemblyzerEmbedder(device)
    path = Path(source)
    if not path.exists():
        raise SpeakerEmbedderError(f"speaker model {path} does not exist (models are only loaded from local paths)")
    from qtts.eval.wavlm_ecapa import find_unispeech_files

    unispeech = find_unispeech_files(path)
    if unispeech is not None:
        checkpoint, wavlm = unispeech
        return WavLMEcapaEmbedder(checkpoint, wavlm, device=device, only_if_missing=True)
    return QttsSpeakerEmbedder(path, device)
