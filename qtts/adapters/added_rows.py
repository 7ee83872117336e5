"""Rows a fine-tune adds to the embedding tables, saved beside its LoRA adapter so that the adapter folder alone
turns the base model it was trained from into the fine-tuned one.

A custom-voice or new-language fine-tune trains more than the LoRA matrices: the speakers' and the language's
codec rows and the added tokens' text rows (on frozen tables). A peft folder holds only the LoRA matrices, so
``added_rows.safetensors`` (those rows) and ``added_rows.json`` (the names they carry: ``spk_id``,
``spk_is_dialect``, ``codec_language_id``, and the text table's size) go next to it, with the tokenizer files when
tokens were added. Applying them to a base whose text table is smaller grows it: the base's rows load as they are,
the adapter's rows fill the rest (a partial load of mismatched tables).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from qtts.models.talker import TTSModel
from qtts.models.talker.config import speaker_row

ROWS_FILE = "added_rows.safetensors"
NAMES_FILE = "added_rows.json"
TABLES = ("codec_embedding", "text_embedding")


def _table(model: TTSModel, name: str) -> nn.Embedding:
    table = getattr(model.talker.model, name)
    return getattr(table, "base_layer", table)  # under LoRA on the embeddings


def save_added_rows(model: TTSModel, folder: str | os.PathLike, rows: dict[str, list[int]],
                    tokenizer_folder: str | os.PathLike | None = None) -> None:
    """Write ``rows`` (``{table: row ids}``) of ``model``'s tables and the speaker and language names of those
    codec rows into ``folder``; copy the tokenizer files of ``tokenizer_folder`` when text rows were added."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, ids in rows.items():
        if ids:
            index = torch.tensor(sorted(set(ids)), dtype=torch.long)
            tensors[f"{name}.rows"] = index
            tensors[f"{name}.weight"] = _table(model, name).weight.detach()[index].float().cpu().contiguous()
    talker = model.config.talker_config
    codec_rows = set(rows.get("codec_embedding", []))
    speakers = {k: v for k, v in (talker.spk_id or {}).items() if speaker_row(v) in codec_rows}
    names = {"text_vocab_size": int(_table(model, "text_embedding").num_embeddings), "spk_id": speakers,
             "spk_is_dialect": {k: v for k, v in (talker.spk_is_dialect or {}).items() if k in speakers},
             "codec_language_id": {k: v for k, v in (talker.codec_language_id or {}).items() if v in codec_rows}}
    save_file(tensors, str(folder / ROWS_FILE))
    (folder / NAMES_FILE).write_text(json.dumps(names, indent=2) + "\n")
    if rows.get("text_embedding") and tokenizer_folder is not None:
        from qtts.models.export import TOKENIZER_FILES

        for name in TOKENIZER_FILES:
            if (Path(tokenizer_folder) / name).is_file():
                shutil.copyfile(Path(tokenizer_folder) / name, folder / name)


def has_added_rows(folder: str | os.PathLike) -> bool:
    return (Path(folder) / NAMES_FILE).is_file()


@torch.no_grad()
def apply_added_rows(model: TTSModel, folder: str | os.PathLike) -> None:
    """Put an adapter folder's added rows and names into ``model`` (before its LoRA loads: LoRA on the embeddings
    needs the grown table). A name the model already gives another row is an error; so is a row the model uses
    for something else."""
    from qtts.adapters.speakers import used_codec_rows

    folder = Path(folder)
    names = json.loads((folder / NAMES_FILE).read_text())
    tensors = load_file(str(folder / ROWS_FILE))
    talker = model.config.talker_config
    for key in ("spk_id", "spk_is_dialect", "codec_language_id"):
        mine = getattr(talker, key) or {}
        clash = {k: (mine[k], v) for k, v in names.get(key, {}).items() if k in mine and mine[k] != v
                 and key != "spk_is_dialect"}
        if clash:
            raise ValueError(f"{folder}: {key} of the adapter and the model disagree on {clash}")
    if "codec_embedding.rows" in tensors:
        already = {speaker_row(v)  # the adapter's own names, already in the model
                   for key in ("spk_id", "codec_language_id") for k, v in names.get(key, {}).items()
                   if (getattr(talker, key) or {}).get(k) == v}
        taken = sorted(set(tensors["codec_embedding.rows"].tolist()) & (used_codec_rows(talker) - already))
        if taken:
            raise ValueError(f"{folder}: codec rows {taken} of the adapter are used by the model for other ids")
    size = int(names.get("text_vocab_size", 0))
    if size > _table(model, "text_embedding").num_embeddings:
        grow_text_embedding(model, size)
    for name in TABLES:
        if f"{name}.rows" in tensors:
            weight = _table(model, name).weight
            weight[tensors[f"{name}.rows"]] = tensors[f"{name}.weight"].to(weight.device, weight.dtype)
    for key in ("spk_id", "spk_is_dialect", "codec_language_id"):
        if names.get(key):
            setattr(talker, key, {**(getattr(talker, key) or {}), **names[key]})


@torch.no_grad()
def grow_text_embedding(model: TTSModel, size: int) -> None:
    """Resize the text table to ``size`` rows: the existing rows are kept, new ones start at their mean."""
    table = model.talker.model.text_embedding
    if isinstance(getattr(table, "base_layer", None), nn.Embedding):
        raise ValueError("grow the text table before LoRA wraps it")
    if size < table.num_embeddings:
        raise ValueError(f"text table has {table.num_embeddings} rows; will not shrink it to {size}")
    grown = nn.Embedding(size, table.embedding_dim, device=table.weight.device, dtype=table.weight.dtype)
    grown.weight[: table.num_embeddings] = table.weight
    grown.weight[table.num_embeddings:] = table.weight.mean(0)
    model.talker.model.text_embedding = grown
    model.config.talker_config.text_vocab_size = size
