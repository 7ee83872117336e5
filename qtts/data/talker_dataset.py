"""Talker training examples: rows of an extracted-codes dataset → dual-track sequences (+ x-vector audio).

A row (``qtts data extract-codes``) carries the text, language, speaker, audio path and the frames × 16
codes. Each item becomes one ``build_sequence`` training example; Base models also get a reference clip
for the speaker encoder, which is trained with the talker. Per-item choices (language prefix "auto" or
explicit, streaming or non-streaming text layout, which reference clip and where to crop it) come from
the sampler's per-item seed, so batches are the same with any worker count and after a resume.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from qtts.audio.features import SpeakerMel
from qtts.audio.io import SAMPLE_RATE, load_audio
from qtts.data.batching import collate_training, pack_sequences, plan_packs
from qtts.models.talker.config import language_row, speaker_row
from qtts.models.talker.layout import DualTrackSequence, build_sequence, sequence_length
from qtts.text.languages import codec_language_ids
from qtts.text.templates import target_ids


class TalkerCorpus(Dataset):
    """Map-style dataset of talker training examples.

    rows: a ``datasets.Dataset`` of extracted codes (``open_codes``), or a list of such dicts.
    tokenizer: the text tokenizer (``load_text_tokenizer``); texts are tokenized once here.
    xvector: reserve the x-vector slot and return a reference clip (Base models).
    reference: "self" (the utterance itself) or "other" (another utterance of the same speaker, when it has
        one): the latter teaches cloning from a different recording, as at inference.
    auto_language_prob: share of examples with the "auto" prefix instead of the explicit language.
    streaming_prob: share of examples with the streaming text layout (text leading the audio).
    speakers: custom voices: ``{speaker name: codec row}`` (a model's ``spk_id``); every example puts its
        speaker's row in the speaker slot. With ``xvector`` too, a ``clone_prob`` share of them takes the x-vector
        layout instead, so the model keeps cloning voices while it learns the named ones.
    languages: the trained model's ``codec_language_id`` (``{name: row}``): each row's language (a code or name of
        the registry, ``languages:`` in the config) takes the model's row for it, so a language added to a model
        (``qtts languages add``) trains on its own row. None: the registry's rows (the released ids and the
        ``languages:`` of the config).
    """

    def __init__(self, rows: Any, tokenizer: Any, *, xvector: bool = False, reference: str = "self",
                 reference_seconds: float = 6.0, auto_language_prob: float = 0.2, streaming_prob: float = 0.0,
                 speakers: dict[str, int] | None = None, clone_prob: float = 0.0,
                 languages: dict[str, int] | None = None, sample_rate: int = SAMPLE_RATE):
        if reference not in ("self", "other"):
            raise ValueError(f"reference must be 'self' or 'other', got {reference!r}")
        for name, p in (("auto_language_prob", auto_language_prob), ("streaming_prob", streaming_prob),
                        ("clone_prob", clone_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if clone_prob > 0 and not (xvector and speakers):
            raise ValueError("clone_prob mixes x-vector examples into speaker-row training: it needs speakers and "
                             "xvector=true")
        self.rows = rows
        self.speakers = {str(k).lower(): speaker_row(v) for k, v in (speakers or {}).items()}
        self.clone_prob = clone_prob if speakers else 1.0
        self.xvector, self.reference, self.reference_seconds = xvector, reference, reference_seconds
        self.auto_language_prob, self.streaming_prob = auto_language_prob, streaming_prob
        self.sample_rate = sample_rate
        texts = _column(rows, "text")
        self.text_ids = [target_ids(tokenizer, text).content for text in texts]
        self.num_frames = [int(n) for n in _column(rows, "num_frames")]
        by_speaker: dict[str, list[int]] = defaultdict(list)
        for i, speaker in enumerate(_column(rows, "speaker")):
            by_speaker[speaker].append(i)
        self._same_speaker = by_speaker
        self._speakers = list(_column(rows, "speaker"))
        self.language_rows = _language_rows(rows, codec_language_ids() if languages is None else languages)
        if self.speakers:
            unknown = sorted({str(name) for name in by_speaker if str(name).lower() not in self.speakers})
            if unknown:
                raise ValueError(f"speakers {unknown[:10]} of the data have no row in speakers "
                                 f"({sorted(self.speakers)}); add them to the model first (qtts speakers add)")

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self) -> list[int]:
        """Positions of each example (the longest layout it can take), for batching and packing."""
        slot = self.xvector or bool(self.speakers)
        return [sequence_length(len(t), n_target_frames=n, explicit_language=True, speaker_slot=slot)
                for t, n in zip(self.text_ids, self.num_frames)]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, int(key))
        rng = random.Random(seed)
        row = self.rows[int(index)]
        codes = torch.as_tensor(row["codes"], dtype=torch.long)
        auto = rng.random() < self.auto_language_prob
        language = None if auto else self.language_rows[str(row["language"]).lower()]
        streaming = rng.random() < self.streaming_prob
        clone = self.xvector and (not self.speakers or rng.random() < self.clone_prob)
        speaker = None if clone or not self.speakers else self.speakers[str(row["speaker"]).lower()]
        sequence = self._build(index, codes, language, streaming, clone, speaker)
        item = {"id": row["id"], "sequence": sequence}
        if clone:
            item["reference"] = self._reference(int(index), rng)
        return item

    def _build(self, index: int, codes: torch.Tensor, language: int | None, streaming: bool, xvector: bool,
               speaker: int | None) -> DualTrackSequence:
        text = self.text_ids[int(index)]
        options = dict(language=language, xvector=xvector, speaker=speaker, target_codes=codes)
        try:
            return build_sequence(text, streaming=streaming, **options)
        except ValueError:
            if not streaming:
                raise
            # Streaming needs the text (+ tts_eos) to fit beside the audio; longer texts take the other layout.
            return build_sequence(text, **options)

    def _reference(self, index: int, rng: random.Random) -> torch.Tensor:
        """A crop of at most ``reference_seconds`` of this or another utterance of the speaker, at 24 kHz."""
        if self.reference == "other":
            others = [i for i in self._same_speaker[self._speakers[index]] if i != index]
            index = rng.choice(others) if others else index
        row = self.rows[index]
        start, end = row.get("start"), row.get("end")
        duration = float(row["duration"])
        if duration > self.reference_seconds:
            offset = rng.uniform(0.0, duration - self.reference_seconds)
            start = (start or 0.0) + offset
            end = start + self.reference_seconds
        wav, _ = load_audio(row["audio"], self.sample_rate, mono=True, start=start, end=end)
        return wav[0]


def _language_rows(rows: Any, table: dict[str, int]) -> dict[str, int]:
    """``{language of the data (as written, lower case): its codec row in table}``; a language the table has no row
    for is an error naming it, the rows that use it and the table's languages."""
    found: dict[str, int] = {}
    missing: dict[str, list[str]] = defaultdict(list)
    for row_id, key in zip(_column(rows, "id"), _column(rows, "language")):
        key = str(key).lower()
        if key in found:
            continue
        try:
            found[key] = language_row(table, key)
        except ValueError:
            missing[key].append(str(row_id))
    if missing:
        detail = "; ".join(f"{k!r} (rows {', '.join(ids[:3])}{' …' if len(ids) > 3 else ''})"
                           for k, ids in missing.items())
        raise ValueError(f"field 'language': the model has no codec row for {detail}; its languages: "
                         f"{sorted(k.lower() for k in table)} (add one with `qtts languages add`)")
    return found


def collate_talker(items: list[dict[str, Any]], pack_length: int | None = None,
                   pad_to_multiple_of: int = 1) -> dict[str, Any]:
    """Right-padded (``pack_length`` None) or packed rows of at most ``pack_length`` positions; reference clips
    are right-padded in the order of the x-vector slots (row-major over the rows)."""
    sequences = [item["sequence"] for item in items]
    if pack_length is None:
        order = list(range(len(items)))
        tracks = collate_training(sequences, pad_to_multiple_of=pad_to_multiple_of)
    else:
        packs = plan_packs([len(s) for s in sequences], pack_length)
        order = [i for pack in packs for i in pack]
        tracks = pack_sequences([[sequences[i] for i in pack] for pack in packs],
                                pad_to_multiple_of=pad_to_multiple_of)
    batch = {"ids": [items[i]["id"] for i in order], "tracks": tracks, "num_tokens": int(tracks.attention_mask.sum()),
             "packed": bool(tracks.document_ids.max() > 0)}
    clips = [items[i]["reference"] for i in order if "reference" in items[i]]  # the x-vector slots, in order
    if clips:
        lengths = torch.tensor([c.numel() for c in clips])
        wav = torch.zeros(len(clips), int(lengths.max()))
        for row, clip in zip(wav, clips):
            row[: clip.numel()] = clip
        # The speaker encoder's features, computed here in the loader workers rather than in the step.
        batch.update(reference=wav, reference_lengths=lengths, reference_mels=_SPEAKER_MEL(wav, lengths),
                     reference_frames=_SPEAKER_MEL.num_frames(lengths))
    return batch


_SPEAKER_MEL = SpeakerMel()  # the released speaker encoder's front end (128 mels, 24 kHz)


def _column(rows: Any, name: str) -> Sequence[Any]:
    return [row[name] for row in rows] if isinstance(rows, (list, tuple)) else rows[name]
