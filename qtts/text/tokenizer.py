"""The text tokenizer: a thin wrapper over a Hugging Face ``tokenizers`` pipeline.

Released checkpoints carry a Qwen2 BPE (vocab.json, merges.txt, tokenizer_config.json, sometimes
tokenizer.json); with ``folder=None`` the built-in conversion (``qwen2_bpe``) is used. Nothing is
ever fetched from the network.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path

from tokenizers import Tokenizer

from qtts.text.qwen2_bpe import FILES, builtin_tokenizer_dir
from qtts.text.special_ids import TextSpecialIds


class IncompleteTokenizerFolder(FileNotFoundError):
    """A model folder lacks a tokenizer file (the message names the folder and the file)."""


class TextTokenizer:
    """Text <-> ids. Special tokens in the text (``<|im_start|>``, ``<tts_pad>``, …) become their
    ids and are never split; nothing is added around the text. ``folder`` is where it came from."""

    def __init__(self, backend: Tokenizer, folder: Path | None = None):
        self.backend = backend
        self.folder = folder

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Many texts at once (parallel in Rust): the fast path for data preparation."""
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce, added tokens included (151676 for Qwen3-TTS;
        the talker's text embedding is padded beyond it, to 151936 rows)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    @cached_property
    def special_ids(self) -> TextSpecialIds:
        """The ChatML/TTS ids as this tokenizer spells them (equal to the released ids for the
        Qwen2 vocabulary; looked up, so an extended vocabulary keeps working)."""
        return TextSpecialIds(
            im_start=self._added("<|im_start|>"), im_end=self._added("<|im_end|>"),
            assistant=self._single("assistant"), newline=self._single("\n"),
            tts_pad=self._added("<tts_pad>"), tts_bos=self._added("<tts_text_bos>"),
            tts_eos=self._added("<tts_text_eod>"),
        )

    def _added(self, token: str) -> int:
        token_id = self.backend.token_to_id(token)
        if token_id is None:
            raise KeyError(f"the tokenizer from {self.folder} has no token {token!r}")
        return token_id

    def _single(self, text: str) -> int:
        ids = self.encode(text)
        if len(ids) != 1:
            raise KeyError(f"the tokenizer from {self.folder} encodes {text!r} as {ids}, not one id")
        return ids[0]

    def __repr__(self) -> str:
        return f"TextTokenizer(folder={str(self.folder)!r}, vocab_size={self.vocab_size})"


def has_tokenizer(folder: str | os.PathLike | None) -> bool:
    """Whether a model folder ships its own text tokenizer (tokenizer.json, or the vocab.json form)."""
    return folder is not None and any((Path(folder) / name).is_file() for name in ("tokenizer.json", "vocab.json"))


def load_text_tokenizer(folder: str | os.PathLike | None = None) -> TextTokenizer:
    """Load the tokenizer of a local model folder, or the built-in Qwen2 BPE when ``folder`` is None.

    A folder needs tokenizer.json, or vocab.json + merges.txt + tokenizer_config.json (what the
    released checkpoints ship); the latter is read by ``transformers`` exactly as the official
    runtime reads it, offline.
    """
    folder = builtin_tokenizer_dir() if folder is None else Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"tokenizer folder {folder} does not exist")
    if (folder / "tokenizer.json").is_file():
        return TextTokenizer(Tokenizer.from_file(str(folder / "tokenizer.json")), folder)
    for name in ("tokenizer_config.json", "vocab.json", "merges.txt"):
        if not (folder / name).is_file():
            raise IncompleteTokenizerFolder(
                f"tokenizer folder {folder} is incomplete: {name} is missing "
                "(a tokenizer needs tokenizer.json, or vocab.json + merges.txt + tokenizer_config.json)"
            )
    from transformers import AutoTokenizer  # slow import: only for folders without tokenizer.json

    hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, use_fast=True)
    return TextTokenizer(hf.backend_tokenizer, folder)


def write_tokenizer_folder(dst: str | os.PathLike) -> Path:
    """Write the built-in tokenizer into a model folder in the official format (vocab.json,
    merges.txt, tokenizer_config.json, tokenizer.json), so the folder loads in transformers and
    qwen-tts like a released checkpoint."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    src = builtin_tokenizer_dir()
    for name in FILES:
        shutil.copyfile(src / name, dst / name)
    return dst
