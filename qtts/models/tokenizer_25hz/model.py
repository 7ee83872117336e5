"""The 25 Hz tokenizer as a folder: ``config.json`` (``model_type = "qwen3_tts_tokenizer_25hz"``) +
``model.safetensors`` with qwen-tts's keys (``encoder.tokenizer.…``, ``decoder.dit.…``, ``decoder.bigvgan.…``),
loaded with every key and shape checked, both ways.

``Tokenizer25Hz`` encodes (16 kHz waveforms → codes and the reference mel) and decodes (codes, x-vector,
reference mel → 24 kHz waveforms). The x-vector comes from a speaker encoder outside the folder (CAM++ upstream).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
from torch import nn

from qtts.audio.features import LogMelSpectrogram
from qtts.audio.loudness import normalize_peak
from qtts.models.checkpoint import (
    CONFIG_NAME,
    check_weights,
    load_weights,
    read_json,
    save_folder,
)
from qtts.models.codec.model import resolve_folder
from qtts.models.tokenizer_25hz.config import ENCODER_SAMPLE_RATE, MEL_HOP, Tokenizer25HzConfig
from qtts.models.tokenizer_25hz.decoder import Detokenizer25Hz
from qtts.models.tokenizer_25hz.encoder import Tokenizer25HzEncoder


class ReferenceMel(LogMelSpectrogram):
    """The reference mel the detokenizer is conditioned on (qwen-tts's ``MelSpectrogramFeatures`` as its
    x-vector extractor builds it): 16 kHz, FFT 1024, window 640, hop 160 (100 Hz), ``mel_dim`` Slaney mels over
    0–8 kHz, magnitude with eps 1e-9, natural log floored at 1e-5, ``(n_fft - hop) / 2`` reflect padding, so
    ``samples // 160`` frames."""

    def __init__(self, n_mels: int = 80):
        super().__init__(sample_rate=ENCODER_SAMPLE_RATE, n_fft=1024, hop_length=MEL_HOP, win_length=640,
                         n_mels=n_mels, f_min=0.0, f_max=8000.0, power=1.0, eps=1e-9, log=True, log_floor=1e-5,
                         center=False)


class Encoded(NamedTuple):
    """What ``Tokenizer25Hz.encode`` returns per item: ``codes`` (ceil(len / 640),) int64 and ``ref_mels``
    (len // 160, mel_dim) at 100 Hz. The x-vector qwen-tts also returns comes from a speaker encoder (CAM++ ONNX
    upstream), which is not part of this folder."""

    codes: list[torch.Tensor]
    ref_mels: list[torch.Tensor]


class Tokenizer25Hz(nn.Module):
    """16 kHz waveforms → 25 Hz codes (one codebook) and the 100 Hz reference mel, as qwen-tts's
    ``Qwen3TTSTokenizerV1Model.encode`` computes them (its x-vector comes from a speaker encoder that is not
    part of this folder's weights), and back: ``decode`` (``Qwen3TTSTokenizerV1Model.decode``)."""

    def __init__(self, config: Tokenizer25HzConfig | None = None):
        super().__init__()
        self.config = config = config or Tokenizer25HzConfig()
        self.encoder = Tokenizer25HzEncoder(config.encoder_config)
        self.decoder = Detokenizer25Hz(config.decoder_config)
        self.ref_mel = ReferenceMel(config.decoder_config.dit_config.mel_dim)

    @property
    def input_sample_rate(self) -> int:
        return self.config.input_sample_rate

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> Tokenizer25Hz:
        """Load a 25 Hz tokenizer folder (ours or qwen-tts's ``save_pretrained``), or a TTS model folder's
        ``speech_tokenizer/``: every key must be there with the config's shape, and no other."""
        folder = resolve_folder(folder)
        config_path = folder / CONFIG_NAME
        try:
            config = Tokenizer25HzConfig.from_dict(read_json(config_path))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{config_path}: {e}") from e
        model = cls(config)
        weights, path = load_weights(folder)
        check_weights(model.state_dict(), weights, path)
        model.load_state_dict(weights, strict=True)
        return model.eval()

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write ``model.safetensors`` then (last) ``config.json``, each atomically."""
        save_folder(folder, self.state_dict(), self.config.to_dict())

    @torch.inference_mode()
    def encode(self, wavs: list[torch.Tensor]) -> Encoded:
        """1-D waveforms at 16 kHz → ``Encoded``: codes per item and its reference mel. The batch is padded and
        each item's codes equal encoding it alone."""
        for i, w in enumerate(wavs):
            if not isinstance(w, torch.Tensor) or w.dim() != 1 or w.numel() == 0 or not w.is_floating_point():
                shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
                raise ValueError(f"waveform {i} must be a non-empty 1-D float tensor at 16 kHz, got {shape}")
            if len(w) <= self.ref_mel.padding:
                raise ValueError(f"waveform {i} has {len(w)} samples; the reference mel reflects "
                                 f"{self.ref_mel.padding} at each end, so it needs more (codes alone: encoder.encode)")
        codes = self.encoder.encode(wavs)
        return Encoded(codes, [self.reference_mel(w) for w in wavs])

    def reference_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """A 1-D 16 kHz waveform (more than 432 samples) → its reference mel (len // 160, mel_dim), of the waveform
        peak-normalised to −6 dBFS as qwen-tts does (sox ``norm -6``), so the level of the recording drops out."""
        return self.ref_mel(normalize_peak(wav.float(), -6.0))

    @property
    def output_sample_rate(self) -> int:
        return self.config.output_sample_rate

    @torch.inference_mode()
    def decode(self, codes: list[torch.Tensor], xvectors: torch.Tensor | list[torch.Tensor],
               ref_mels: list[torch.Tensor], *, num_steps: int = 10, guidance_scale: float = 0.5,
               sway_coefficient: float | None = -1.0, noise: list[torch.Tensor] | None = None,
               generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Per item: codes (N,), the speaker's x-vector (enc_emb_dim,) and reference mel (frames, mel_dim), as
        ``encode`` and a speaker encoder give them → waveform (N · decode_upsample_rate,) at
        ``output_sample_rate``. A batch of different lengths gives each item what it gets alone (same noise);
        sampler arguments and ``noise``/``generator`` as in ``Detokenizer25Hz.forward`` (qwen-tts's defaults)."""
        wavs = self.decoder(codes, xvectors, ref_mels, num_steps=num_steps, guidance_scale=guidance_scale,
                            sway_coefficient=sway_coefficient, noise=noise, generator=generator)
        return [w[: len(n) * self.config.decode_upsample_rate] for w, n in zip(wavs, codes)]
