"""A new language for a trained model: its codec-embedding row, and optionally new text tokens.

The talker learns a language through its think-block row (``codec_language_id``) and through its text. A new
language gets a free codec row, started from the mean of the existing language rows (a neutral "some language"
point the model already reads there). Scripts the BPE splits badly can add whole tokens: they become added tokens
of the tokenizer, and their text-embedding rows start as the mean of the sub-tokens they replace, so the model
reads them as it read the pieces before training; the table grows when the padding rows run out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer

from qtts.adapters.added_rows import grow_text_embedding
from qtts.models.talker import TTSModel
from qtts.text.tokenizer import TextTokenizer

LANGUAGE_ROWS_START = 2048  # first row after the codes; the released languages sit at 2050–2074


@torch.no_grad()
def add_language(model: TTSModel, name: str, row: int | None = None) -> int:
    """Register ``name`` in ``codec_language_id`` with a free row (or ``row``), initialised from the mean of the
    existing language rows; returns the row."""
    from qtts.adapters.speakers import used_codec_rows

    config = model.config.talker_config
    languages = dict(config.codec_language_id or {})
    name = name.lower()
    if name in languages:
        raise ValueError(f"language {name!r} already has codec row {languages[name]}")
    used = used_codec_rows(config)
    if row is None:
        row = next((r for r in range(LANGUAGE_ROWS_START, config.vocab_size) if r not in used), None)
        if row is None:
            raise ValueError("no free codec-embedding row for a new language")
    elif row in used:
        raise ValueError(f"codec row {row} is already used")
    table = model.talker.model.codec_embedding.weight
    if languages:
        table[row] = table[list(languages.values())].mean(0)
    config.codec_language_id = {**languages, name: int(row)}
    return int(row)


@torch.no_grad()
def extend_vocabulary(model: TTSModel, tokenizer: TextTokenizer, tokens: Sequence[str], multiple_of: int = 64
                      ) -> TextTokenizer:
    """Add ``tokens`` (words or subwords of the new language) to the tokenizer and the text embedding; returns
    the extended tokenizer. Rows start as the mean of the rows of the ids the old tokenizer gave the token."""
    tokens = [t for t in dict.fromkeys(tokens) if tokenizer.token_to_id(t) is None]
    if not tokens:
        return tokenizer
    backend = Tokenizer.from_str(tokenizer.backend.to_str())
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in tokens])
    extended = TextTokenizer(backend, tokenizer.folder)
    ids = [extended.token_to_id(t) for t in tokens]
    if max(ids) >= model.talker.model.text_embedding.num_embeddings:  # the padding rows are used up: grow
        grow_text_embedding(model, -(-(max(ids) + 1) // multiple_of) * multiple_of)
    embedding = model.talker.model.text_embedding
    for token, new_id in zip(tokens, ids):
        pieces = tokenizer.encode(token)
        embedding.weight[new_id] = embedding.weight[pieces].mean(0)
    return extended


def add_language_to_folder(base: str | os.PathLike, out: str | os.PathLike, name: str, *, row: int | None = None,
                           tokens: Sequence[str] = ()) -> int:
    """``qtts languages add``: ``base`` → ``out`` with the language registered (and its tokens added)."""
    from qtts.models.export import export_release
    from qtts.text.qwen2_bpe import write_official_files
    from qtts.text.tokenizer import has_tokenizer, load_text_tokenizer

    base = Path(base)
    model = TTSModel.from_pretrained(base)
    tokenizer = load_text_tokenizer(base if has_tokenizer(base) else None)
    row = add_language(model, name, row)
    extended = extend_vocabulary(model, tokenizer, tokens)
    export_release(model, out, source=base)
    if tokens:
        added = tuple(t for t in dict.fromkeys(tokens) if tokenizer.token_to_id(t) is None)
        write_official_files(extended.backend, out, extra_tokens=added)
    return row
