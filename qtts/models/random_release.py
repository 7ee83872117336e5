"""A complete model folder in the released layout with random weights: for parity tests and speed benchmarks.

The folder holds what a released checkpoint holds (``config.json``, ``model.safetensors``, the text tokenizer
files, ``generation_config.json`` and ``speech_tokenizer/``), so qwen-tts's ``Qwen3TTSModel.from_pretrained`` and
``qtts.Synthesizer.from_pretrained`` load the very same weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from qtts.models.codec.model import SUBFOLDER, CodecConfig, SpeechTokenizer
from qtts.models.export import RELEASED_GENERATION_CONFIG
from qtts.models.random_weights import randomize_codec, randomize_tts
from qtts.models.talker import TTSConfig, TTSModel
from qtts.text.tokenizer import write_tokenizer_folder


def tiny_codec_config() -> CodecConfig:
    """A CPU-sized codec that speaks the talker's codes: 16 groups of 2048 at the released 12.5 Hz (1920-sample
    hop), with few, narrow layers; trainable like the released one (decoder codebook_dim = encoder hidden_size).
    ``qtts/configs/model/codec_tiny_12hz.yaml`` is the same model (a test holds them equal)."""
    encoder = dict(num_filters=4, upsampling_ratios=[8, 6, 5, 4], num_residual_layers=1, hidden_size=32,
                   num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, head_dim=16,
                   intermediate_size=64, codebook_size=2048, codebook_dim=16, vector_quantization_hidden_dimension=16,
                   num_quantizers=16, upsample_groups=32, frame_rate=12.5)
    decoder = dict(latent_dim=32, codebook_dim=32, codebook_size=2048, decoder_dim=32, hidden_size=32,
                   intermediate_size=64, head_dim=16, num_attention_heads=2, num_key_value_heads=2,
                   num_hidden_layers=1, num_quantizers=16, upsample_rates=[8, 5, 4, 3], upsampling_ratios=[2, 2])
    return CodecConfig(encoder_config=encoder, decoder_config=decoder, encoder_valid_num_quantizers=16,
                       encode_downsample_rate=1920, decode_upsample_rate=1920)


def write_random_release(folder: str | os.PathLike, config: TTSConfig, codec: CodecConfig | None = None,
                         seed: int = 0, eos_scale: float | None = None,
                         generation_config: dict | None = None) -> Path:
    """Write a random model of ``config`` (and a random codec of ``codec``, default the released shapes).

    ``eos_scale`` rescales the EOS row of ``codec_head``: 0 makes EOS never win against the 2048 codes (fixed
    output lengths, for benchmarks and long parity runs); ~3 makes it win every few frames (batches that end at
    different steps); None leaves it as drawn.
    """
    folder = Path(folder)
    with torch.device("cpu"):
        model = TTSModel(config)
    randomize_tts(model, seed)
    if eos_scale is not None:
        with torch.no_grad():
            model.talker.codec_head.weight[config.talker_config.codec_eos_token_id] *= eos_scale
    model.save_pretrained(folder)
    del model
    speech = SpeechTokenizer(codec or CodecConfig())
    randomize_codec(speech, seed + 1)
    speech.save_pretrained(folder / SUBFOLDER)
    write_tokenizer_folder(folder)
    (folder / "generation_config.json").write_text(json.dumps(generation_config or RELEASED_GENERATION_CONFIG))
    return folder
