"""Special token ids of the released Qwen3-TTS models.

Text ids index the talker's text embedding (the Qwen2 vocabulary plus the TTS markers); codec ids
index its codec embedding, right after the 2048 real group-0 codes. The two frozen dataclasses
default to the released values and read/write the config.json keys, so a custom model that moves
an id only changes its config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

IM_START = 151644  # <|im_start|>
IM_END = 151645  # <|im_end|>
ASSISTANT = 77091  # "assistant", one BPE token
NEWLINE = 198  # "\n"
TTS_PAD = 151671  # <tts_pad>
TTS_BOS = 151672  # <tts_text_bos>
TTS_EOS = 151673  # <tts_text_eod>

CODEC_PAD = 2148
CODEC_BOS = 2149
CODEC_EOS = 2150
CODEC_THINK = 2154
CODEC_NOTHINK = 2155
CODEC_THINK_BOS = 2156
CODEC_THINK_EOS = 2157


class _ConfigIds:
    """Shared by both id sets: map fields to their config.json keys (``_keys``)."""

    _keys: dict[str, str | None]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]):
        """Ids from a config dict; keys it lacks keep the released value."""
        given = {f: int(config[k]) for f, k in cls._keys.items() if k is not None and config.get(k) is not None}
        return cls(**given)

    def to_config(self) -> dict[str, int]:
        return {k: getattr(self, f) for f, k in self._keys.items() if k is not None}


@dataclass(frozen=True)
class TextSpecialIds(_ConfigIds):
    im_start: int = IM_START
    im_end: int = IM_END
    assistant: int = ASSISTANT
    newline: int = NEWLINE
    tts_pad: int = TTS_PAD
    tts_bos: int = TTS_BOS
    tts_eos: int = TTS_EOS

    # keys of the top-level config.json; the newline id has none
    _keys = {
        "im_start": "im_start_token_id", "im_end": "im_end_token_id", "assistant": "assistant_token_id",
        "newline": None, "tts_pad": "tts_pad_token_id", "tts_bos": "tts_bos_token_id", "tts_eos": "tts_eos_token_id",
    }


@dataclass(frozen=True)
class CodecSpecialIds(_ConfigIds):
    pad: int = CODEC_PAD
    bos: int = CODEC_BOS
    eos: int = CODEC_EOS
    think: int = CODEC_THINK
    nothink: int = CODEC_NOTHINK
    think_bos: int = CODEC_THINK_BOS
    think_eos: int = CODEC_THINK_EOS

    # keys of config.json's talker_config
    _keys = {
        "pad": "codec_pad_id", "bos": "codec_bos_id", "eos": "codec_eos_token_id", "think": "codec_think_id",
        "nothink": "codec_nothink_id", "think_bos": "codec_think_bos_id", "think_eos": "codec_think_eos_id",
    }


RELEASED_TEXT_IDS = TextSpecialIds()
RELEASED_CODEC_IDS = CodecSpecialIds()
