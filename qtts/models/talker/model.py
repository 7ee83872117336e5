"""The composed TTS model of a released folder: ``talker`` (+ ``speaker_encoder`` for Base models).

``TTSModel.from_pretrained`` reads ``config.json`` and ``model.safetensors`` (or its shards) with strict key
checking; ``save_pretrained`` writes the same format, which qwen-tts loads back. A ``speech_tokenizer/``
subfolder is the codec's business (``qtts.models.codec.SpeechTokenizer``) and is left alone here.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from qtts.models.checkpoint import (
    CONFIG_NAME,
    check_weights,
    load_weights,
    read_json,
    save_folder,
)
from qtts.models.talker.config import TTSConfig
from qtts.models.talker.layout import embed_dual_track
from qtts.models.talker.speaker_encoder import SpeakerEncoder
from qtts.models.talker.talker import Talker


class TTSModel(nn.Module):
    """State-dict keys are the released ones: ``talker.*`` and, for Base, ``speaker_encoder.*``."""

    def __init__(self, config: TTSConfig | None = None, talker_device: str | torch.device | None = None):
        super().__init__()
        self.config = config = config or TTSConfig()
        with torch.device(talker_device) if talker_device is not None else nullcontext():
            self.talker = Talker(config.talker_config)
        self.speaker_encoder = SpeakerEncoder(config.speaker_encoder_config) if config.has_speaker_encoder else None

    @classmethod
    def empty(cls, config: TTSConfig) -> TTSModel:
        """The model with its talker on the ``meta`` device (no memory, no init time): fill it with
        ``load_state_dict(…, assign=True)``, or inspect released shapes without allocating them. (The speaker
        encoder is small and its mel front end holds plain tensors, so it is built for real.)"""
        return cls(config, talker_device="meta")

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, dtype: torch.dtype | None = torch.float32) -> TTSModel:
        """Load a model folder; every key must match. ``dtype=None`` keeps the file's dtypes."""
        folder = Path(folder)
        config_path = folder / CONFIG_NAME
        try:
            config = TTSConfig.from_dict(read_json(config_path))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{config_path}: {e}") from e
        weights, path = load_weights(folder)
        return cls.from_state(config, weights, path, dtype)

    @classmethod
    def from_state(cls, config: TTSConfig, weights: dict[str, torch.Tensor], source: str | os.PathLike,
                   dtype: torch.dtype | None = torch.float32) -> TTSModel:
        """A model from a state dict with the released keys (checked strictly; errors name ``source``)."""
        model = cls.empty(config)
        check_weights(model.state_dict(), weights, source)
        if dtype is not None:
            weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}
        model.load_state_dict(weights, strict=True, assign=True)
        return model.eval()

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write ``model.safetensors`` then ``config.json`` (each atomically; unknown config keys kept)."""
        save_folder(folder, self.state_dict(), self.config.to_dict())

    # -- training rows ------------------------------------------------------------------------------------
    def reference_xvectors(self, batch: dict) -> torch.Tensor | None:
        """One speaker-encoder vector per x-vector slot of a collated batch (``collate_talker``), from its
        reference clips (or the mels its data workers computed); None when the batch has no slots."""
        if "reference" not in batch:
            return None  # no x-vector slots (embed_dual_track checks that the counts match)
        encoder = self.speaker_encoder
        if encoder is None:
            raise ValueError("the batch has x-vector slots but the model has no speaker encoder "
                             "(set data.xvector=false for CustomVoice / VoiceDesign models)")
        mels = batch.get("reference_mels")
        if mels is not None and mels.shape[-1] == encoder.config.mel_dim:
            return encoder(mels.to(encoder.fc.weight.dtype), batch["reference_frames"])
        return encoder.embed_audio(batch["reference"], batch["reference_lengths"])

    def embed_tracks(self, tracks, xvectors: torch.Tensor | None = None) -> torch.Tensor:
        """Input embeddings of dual-track rows (a ``DualTrackSequence`` or a collated batch of them: training rows
        and inference prefills alike): text + codec embeddings, x-vectors in their slots (``embed_dual_track``)."""
        talker = self.talker
        return embed_dual_track(tracks, text_embed=talker.embed_text, codec_embed=talker.embed_codec,
                                residual_embeds=talker.code_predictor.model.codec_embedding, xvectors=xvectors)

    def forward_tracks(self, tracks, xvectors: torch.Tensor | None = None, packed: bool = True):
        """The talker over collated dual-track rows (``qtts.data.batching.DualTrackBatch``): ``embed_tracks`` →
        ``TalkerOutput`` (hidden states, logits)."""
        embeds = self.embed_tracks(tracks, xvectors)
        # Rows holding one utterance need no mask (right padding sits after every real query, so causal attention
        # never reaches it): SDPA then takes its fused causal kernels. Packed rows keep attention per utterance.
        return self.talker(embeds, position_ids=tracks.position_ids,
                           document_ids=tracks.document_ids if packed else None)

