"""ChatML prompts of the released models, as token ids.

Upstream tokenizes each whole template string and then slices it, so the first content token can
merge with the role's trailing newline (a text that starts with a newline shifts the split). These
builders do the same, which keeps ids identical to the official runtime in every case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class _Encoder(Protocol):
    def encode(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class ChatIds:
    """A tokenized template: ``ids`` is the whole string, ``content`` its slice of the user's text."""

    ids: tuple[int, ...]
    start: int
    stop: int  # may be negative, as a slice bound

    @property
    def content(self) -> list[int]:
        return list(self.ids[self.start : self.stop])

    @property
    def role(self) -> list[int]:
        """What comes before the content: ``<|im_start|> assistant \\n`` (empty for an instruct)."""
        return list(self.ids[: self.start])

    @property
    def role_and_content(self) -> list[int]:
        """Role + content: the text ids the official fine-tuning keeps (``ids[:-5]`` for a target)."""
        return list(self.ids[: self.stop])


def target_text(text: str) -> str:
    """The text to speak, closed and followed by an open assistant turn (the speech to generate)."""
    return f"<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n"


def ref_text(text: str) -> str:
    """The transcript of an in-context (voice clone) reference clip."""
    return f"<|im_start|>assistant\n{text}<|im_end|>\n"


def instruct_text(instruct: str) -> str:
    """A style/voice description (VoiceDesign, CustomVoice 1.7B), as a user turn."""
    return f"<|im_start|>user\n{instruct}<|im_end|>\n"


def target_ids(tokenizer: _Encoder, text: str) -> ChatIds:
    """Role = ``ids[:3]``, content = ``ids[3:-5]`` (the last five: ``<|im_end|>\\n<|im_start|>assistant\\n``)."""
    return ChatIds(tuple(tokenizer.encode(target_text(text))), 3, -5)


def ref_text_ids(tokenizer: _Encoder, text: str) -> ChatIds:
    """Content = ``ids[3:-2]`` (the last two: ``<|im_end|>\\n``)."""
    return ChatIds(tuple(tokenizer.encode(ref_text(text))), 3, -2)


def instruct_ids(tokenizer: _Encoder, instruct: str) -> ChatIds:
    """Used whole: content = all ids."""
    ids = tuple(tokenizer.encode(instruct_text(instruct)))
    return ChatIds(ids, 0, len(ids))
