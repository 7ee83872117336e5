"""Batches of dual-track sequences: right padding or packing for training, left padding for prefills.

Packed rows concatenate several utterances; ``document_ids`` number them within the row and
``position_ids`` restart at 0 for each, so attention (``qtts.models.layers.attention_mask``) and RoPE see
every utterance as if it were alone, and the loss is the same as with one utterance per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from qtts.models.talker.layout import IGNORE_INDEX, DualTrackSequence
from qtts.text.special_ids import RELEASED_TEXT_IDS, TextSpecialIds


@dataclass
class DualTrackBatch:
    """Sequences stacked to (B, T); padding has every mask False and labels -100.

    attention_mask: real positions. position_ids: 0.. per utterance (restarting inside packed
    rows; padding 0). document_ids: index of the utterance within its row, -1 on padding; attend
    only within a document (``qtts.models.layers.attention_mask``). trailing_text_ids (B, K): right-padded
    with tts_pad, ``trailing_lengths`` the real lengths. Per-row x-vector slots are in
    row-major order of ``xvector_mask`` = the order of the sequences given to the collate.
    """

    text_ids: Tensor
    text_mask: Tensor
    codec_ids: Tensor
    codec_mask: Tensor
    frame_codes: Tensor
    frame_mask: Tensor
    xvector_mask: Tensor
    labels: Tensor
    code_labels: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    document_ids: Tensor
    trailing_text_ids: Tensor
    trailing_lengths: Tensor

    def to(self, device) -> DualTrackBatch:
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return int(self.text_ids.shape[0])


_PAD_VALUES = {"labels": IGNORE_INDEX, "code_labels": IGNORE_INDEX}
_TRACK_FIELDS = [f.name for f in fields(DualTrackSequence) if f.name != "trailing_text_ids"]


def _stack(rows: list[dict[str, Tensor]], length: int, left: bool) -> dict[str, Tensor]:
    out = {}
    side = "left" if left else "right"
    for name in rows[0]:
        pad = _PAD_VALUES.get(name, -1 if name == "document_ids" else 0)
        t = pad_sequence([r[name] for r in rows], batch_first=True, padding_value=pad, padding_side=side)
        extra = length - t.shape[1]
        if extra:
            filler = torch.full((t.shape[0], extra, *t.shape[2:]), pad, dtype=t.dtype)
            t = torch.cat([filler, t] if left else [t, filler], dim=1)
        out[name] = t
    return out


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple if multiple > 1 else n


def _trailing(seqs: Sequence[DualTrackSequence], pad_id: int) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([int(s.trailing_text_ids.shape[0]) for s in seqs], dtype=torch.long)
    k = int(lengths.max()) if len(seqs) else 0
    ids = torch.full((len(seqs), k), pad_id, dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, : s.trailing_text_ids.shape[0]] = s.trailing_text_ids
    return ids, lengths


def pack_sequences(
    rows: Sequence[Sequence[DualTrackSequence]],
    *,
    pad_to_multiple_of: int = 1,
    max_length: int | None = None,
    text_special: TextSpecialIds = RELEASED_TEXT_IDS,
) -> DualTrackBatch:
    """Training batch: each row concatenates its sequences (right-padded to the longest row).

    ``position_ids`` restart at 0 for every utterance and ``document_ids`` number them within the
    row, so attention and RoPE see each utterance as if alone.
    """
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("every packed row needs at least one sequence")
    built = []
    for r in rows:
        row = {name: torch.cat([getattr(s, name) for s in r]) for name in _TRACK_FIELDS}
        row["attention_mask"] = torch.ones(row["text_ids"].shape[0], dtype=torch.bool)
        row["position_ids"] = torch.cat([torch.arange(len(s)) for s in r])
        row["document_ids"] = torch.cat([torch.full((len(s),), d, dtype=torch.long) for d, s in enumerate(r)])
        built.append(row)
    longest = max(r["text_ids"].shape[0] for r in built)
    if max_length is not None and longest > max_length:
        raise ValueError(f"a packed row has {longest} positions, more than max_length={max_length}")
    length = _round_up(longest, pad_to_multiple_of)
    out = _stack(built, length, left=False)
    flat = [s for r in rows for s in r]
    trailing, lengths = _trailing(flat, text_special.tts_pad)
    return DualTrackBatch(**out, trailing_text_ids=trailing, trailing_lengths=lengths)


def collate_training(seqs: Sequence[DualTrackSequence], *, pad_to_multiple_of: int = 1) -> DualTrackBatch:
    """One sequence per row, right padding (a DataLoader ``collate_fn``)."""
    return pack_sequences([[s] for s in seqs], pad_to_multiple_of=pad_to_multiple_of)


def collate_prefill(
    seqs: Sequence[DualTrackSequence],
    *,
    text_special: TextSpecialIds = RELEASED_TEXT_IDS,
) -> DualTrackBatch:
    """Inference prefills, left padding (every row ends at the same column, ready to decode).

    position_ids = cumsum(attention_mask) - 1 (padding 0); trailing text right-padded with tts_pad.
    """
    if not seqs:
        raise ValueError("no sequences to collate")
    built = []
    for s in seqs:
        row = {name: getattr(s, name) for name in _TRACK_FIELDS}
        row["attention_mask"] = torch.ones(len(s), dtype=torch.bool)
        row["position_ids"] = torch.arange(len(s))
        row["document_ids"] = torch.zeros(len(s), dtype=torch.long)
        built.append(row)
    out = _stack(built, max(len(s) for s in seqs), left=True)
    trailing, lengths = _trailing(seqs, text_special.tts_pad)
    return DualTrackBatch(**out, trailing_text_ids=trailing, trailing_lengths=lengths)


def plan_packs(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """First-fit decreasing: indices grouped into rows of total length <= max_length."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    packs: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = int(lengths[i])
        if n > max_length:
            raise ValueError(f"item {i} has length {n} > max_length {max_length}")
        for p, r in enumerate(room):
            if n <= r:
                packs[p].append(i)
                room[p] -= n
                break
        else:
            packs.append([i])
            room.append(max_length - n)
    return packs
