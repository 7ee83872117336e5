"""The whole 12 Hz speech tokenizer as released: ``speech_tokenizer/{config.json, model.safetensors}``.

``SpeechTokenizer`` owns ``encoder`` and ``decoder`` so its state dict has the released keys, loads a
released (or qwen-tts-saved) folder with ``strict=True``, and writes folders that qwen-tts loads back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qtts.models.checkpoint import (
    CONFIG_NAME,
    check_weights,
    load_weights,
    read_json,
    save_folder,
)
from qtts.models.codec.config import CodecDecoderConfig, CodecEncoderConfig
from qtts.models.codec.decoder import CodecDecoder
from qtts.models.codec.encoder import CodecEncoder
from qtts.models.config_io import JsonConfig

MODEL_TYPE = "qwen3_tts_tokenizer_12hz"
FEATURE_EXTRACTOR_NAME = "preprocessor_config.json"
SUBFOLDER = "speech_tokenizer"  # where a TTS model folder keeps its tokenizer


@dataclass
class CodecConfig(JsonConfig):
    """Top level of ``speech_tokenizer/config.json`` (field names are the released keys).

    Read and written by ``JsonConfig``: keys this class does not know (``architectures``, ``dtype``,
    ``transformers_version``, …) are kept in ``extra`` so ``from_dict(d).to_dict() == d`` for a complete
    config; every field is written (``COMPLETE_FILES``), the sub-configs by their classes (``NESTED``).
    """

    COMPLETE_FILES = True
    NESTED = {"encoder_config": CodecEncoderConfig, "decoder_config": CodecDecoderConfig}

    encoder_config: CodecEncoderConfig = field(default_factory=CodecEncoderConfig)
    decoder_config: CodecDecoderConfig = field(default_factory=CodecDecoderConfig)
    encoder_valid_num_quantizers: int = 16
    input_sample_rate: int = 24_000
    output_sample_rate: int = 24_000
    encode_downsample_rate: int = 1920
    decode_upsample_rate: int = 1920
    model_type: str = MODEL_TYPE
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.encoder_config, dict):  # from Hydra / plain YAML
            self.encoder_config = CodecEncoderConfig.from_dict(self.encoder_config)
        if isinstance(self.decoder_config, dict):
            self.decoder_config = CodecDecoderConfig.from_dict(self.decoder_config)
        if self.model_type != MODEL_TYPE:
            raise ValueError(f"model_type must be {MODEL_TYPE!r} (the 12 Hz tokenizer), got {self.model_type!r}")
        enc, dec = self.encoder_config, self.decoder_config
        # qwen-tts trusts these numbers; a mismatch would silently mis-truncate codes or audio, so refuse it.
        if self.encode_downsample_rate != enc.hop_length:
            raise ValueError(
                f"encode_downsample_rate {self.encode_downsample_rate} "
                f"must equal the encoder's hop length {enc.hop_length}"
            )
        if self.decode_upsample_rate != dec.total_upsample:
            raise ValueError(
                f"decode_upsample_rate {self.decode_upsample_rate} "
                f"must equal the decoder's upsampling {dec.total_upsample}"
            )
        if not 0 < self.encoder_valid_num_quantizers <= enc.num_quantizers:
            raise ValueError(
                f"encoder_valid_num_quantizers {self.encoder_valid_num_quantizers} must be in 1..{enc.num_quantizers}"
            )
        if self.encoder_valid_num_quantizers != dec.num_quantizers:
            raise ValueError(
                f"encoder_valid_num_quantizers {self.encoder_valid_num_quantizers} must equal "
                f"decoder_config.num_quantizers {dec.num_quantizers} (the decoder reads every kept code)"
            )
        if self.input_sample_rate != enc.sampling_rate:
            raise ValueError(
                f"input_sample_rate {self.input_sample_rate} "
                f"must equal encoder_config.sampling_rate {enc.sampling_rate}"
            )

    def feature_extractor_dict(self) -> dict[str, Any]:
        """What ``AutoFeatureExtractor`` needs for qwen-tts's wrapper: transformers' Encodec extractor,
        which right-pads a batch with zeros and returns the padding mask the encoder truncates by."""
        return {
            "chunk_length_s": None, "feature_extractor_type": "EncodecFeatureExtractor", "feature_size": 1,
            "overlap": None, "padding_side": "right", "padding_value": 0.0, "return_attention_mask": True,
            "sampling_rate": self.input_sample_rate,
        }


class SpeechTokenizer(nn.Module):
    """Waveforms at 24 kHz ⇄ codes (T, 16) at 12.5 Hz, as qwen-tts's ``Qwen3TTSTokenizer`` computes them."""

    def __init__(self, config: CodecConfig | None = None, feature_extractor: dict[str, Any] | None = None):
        super().__init__()
        self.config = config = config or CodecConfig()
        self.encoder = CodecEncoder(config.encoder_config)
        self.decoder = CodecDecoder(config.decoder_config)
        self.feature_extractor = feature_extractor or config.feature_extractor_dict()  # written back verbatim

    @property
    def sample_rate(self) -> int:
        return self.config.output_sample_rate

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> SpeechTokenizer:
        """Load a tokenizer folder, or a TTS model folder's ``speech_tokenizer/``; every key must match."""
        folder = resolve_folder(folder)
        config_path = folder / CONFIG_NAME
        try:
            config = CodecConfig.from_dict(read_json(config_path))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{config_path}: {e}") from e
        extractor_path = folder / FEATURE_EXTRACTOR_NAME
        model = cls(config, read_json(extractor_path) if extractor_path.is_file() else None)
        weights, weights_path = load_weights(folder)
        check_weights(model.state_dict(), weights, weights_path)
        model.load_state_dict(weights, strict=True)
        return model.eval()

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write ``model.safetensors``, ``preprocessor_config.json`` and (last) ``config.json``, each to a
        temporary name first, so a killed job never leaves a truncated file that looks complete."""
        save_folder(folder, self.state_dict(), self.config.to_dict(), {FEATURE_EXTRACTOR_NAME: self.feature_extractor})

    @torch.inference_mode()
    def encode(self, wavs: list[torch.Tensor]) -> list[torch.Tensor]:
        """1-D waveforms at ``input_sample_rate`` → codes (ceil(len / 1920), 16) int64 each.

        Like qwen-tts, the list is encoded as one zero-padded batch and each item keeps its own frames;
        its last frame may differ from encoding it alone, since the causal convs see the padding.
        """
        lengths = [_check_wav(w, i) for i, w in enumerate(wavs)]
        param = next(self.parameters())
        batch = torch.zeros(len(wavs), 1, max(lengths), dtype=param.dtype, device=param.device)
        for i, w in enumerate(wavs):
            batch[i, 0, : lengths[i]] = w
        codes = self.encoder.encode(batch, self.config.encoder_valid_num_quantizers)
        return [c[:, : self.encoder.num_frames(n)].T for c, n in zip(codes, lengths)]

    @torch.inference_mode()
    def decode(self, codes: list[torch.Tensor], windowed: bool = False, chunk_size: int = 300,
               left_context: int = 25) -> list[torch.Tensor]:
        """Codes (T, 16) each → 1-D waveforms of T · 1920 samples, decoded as one batch ``chunk_size`` frames
        at a time, so memory stays bounded on long inputs.

        Each chunk continues the decoder's streaming state (conv context, attention KV cache), so the audio
        equals one whole-sequence pass and the streaming decoder at any length. ``windowed=True`` decodes each
        chunk afresh after re-reading ``left_context`` frames, as qwen-tts does: past ``chunk_size`` frames
        that differs slightly from one pass (the decoder reaches further back), and is for sample parity with
        qwen-tts only.
        """
        frames = [_check_codes(c, i, self.config) for i, c in enumerate(codes)]
        batch = torch.zeros(len(codes), max(frames), self.config.decoder_config.num_quantizers, dtype=torch.long,
                            device=next(self.parameters()).device)
        for i, c in enumerate(codes):
            batch[i, : frames[i]] = c
        batch, hop = batch.transpose(1, 2), self.config.decode_upsample_rate
        starts = range(0, batch.shape[-1], chunk_size)
        if windowed:
            contexts = [min(left_context, start) for start in starts]
            pieces = [self.decoder(batch[..., start - context: start + chunk_size])[..., context * hop:]
                      for start, context in zip(starts, contexts)]
        else:
            pieces = list(self.decoder.decode_stream(batch[..., start: start + chunk_size] for start in starts))
        audio = torch.cat(pieces, dim=-1)[:, 0]
        return [a[: n * hop] for a, n in zip(audio, frames)]

def resolve_folder(folder: str | os.PathLike) -> Path:
    """The tokenizer folder itself, or the ``speech_tokenizer/`` inside a TTS model folder."""
    folder = Path(folder)
    if (folder / SUBFOLDER / CONFIG_NAME).is_file():
        return folder / SUBFOLDER
    if not (folder / CONFIG_NAME).is_file():
        raise FileNotFoundError(
            f"{folder}: no {CONFIG_NAME} (nor {SUBFOLDER}/{CONFIG_NAME}); not a speech tokenizer folder"
        )
    return folder


def _check_wav(wav: torch.Tensor, index: int) -> int:
    if not isinstance(wav, torch.Tensor) or wav.dim() != 1 or wav.numel() == 0:
        shape = tuple(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
        raise ValueError(f"waveform {index} must be a non-empty 1-D tensor, got {shape}")
    return wav.numel()


def _check_codes(codes: torch.Tensor, index: int, config: CodecConfig) -> int:
    k, size = config.decoder_config.num_quantizers, config.decoder_config.codebook_size
    if not isinstance(codes, torch.Tensor) or codes.dim() != 2 or codes.shape[1] != k or codes.shape[0] == 0:
        shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
        raise ValueError(f"codes {index} must be a (frames ≥ 1, {k}) tensor, got {shape}")
    if codes.is_floating_point() or codes.is_complex() or codes.min() < 0 or codes.max() >= size:
        raise ValueError(f"codes {index} must be integers in [0, {size}), got {codes.dtype} "
                         f"in [{codes.min().item()}, {codes.max().item()}]")
    return codes.shape[0]
