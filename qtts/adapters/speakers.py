"""Named speakers as rows of the talker's codec embedding: what a custom-voice model is.

A CustomVoice model names each speaker with one codec-embedding row (``talker_config.spk_id``) that sits in the
prefill's speaker slot, where a Base model puts the x-vector. Fine-tuning new speakers therefore means: give each
a free row (never a preset speaker's, a language's or a special id's), start it from the speaker's mean x-vector
(the vector the model already understands in that slot), train, and write ``spk_id`` / ``spk_is_dialect``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from qtts.models.talker import SpeakerEncoder, TalkerConfig, TTSModel

FIRST_SPEAKER_ROW = 3000  # where the released CustomVoice speakers and the upstream SFT script put speakers


def used_codec_rows(config: TalkerConfig) -> set[int]:
    """Rows of the codec embedding with a meaning: codes, special ids, languages and existing speakers."""
    return set(range(config.code_predictor_config.vocab_size)) | {int(v) for v in config.special_codec_ids().values()}


def speaker_rows(config: TalkerConfig, names: Iterable[str], start: int = FIRST_SPEAKER_ROW) -> dict[str, int]:
    """Rows for ``names``: a speaker the config already has keeps its row (continued training); a new one takes
    the lowest free row ≥ ``start``. Raises when the table is full."""
    existing = config.speaker_codec_rows()
    used = used_codec_rows(config)
    rows, free = {}, (r for r in range(start, config.vocab_size) if r not in used)
    for name in names:
        key = name.lower()
        if key in rows:
            continue
        if key in existing:
            rows[key] = int(existing[key])
            continue
        row = next(free, None)
        if row is None:
            raise ValueError(f"no free codec-embedding row ≥ {start} for speaker {name!r} "
                             f"(vocab_size {config.vocab_size}; lower the start row)")
        rows[key] = row
    return rows


@torch.no_grad()
def mean_xvectors(encoder: SpeakerEncoder, clips: Mapping[str, Iterable[torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Each speaker's mean x-vector over all its clips (24 kHz waveforms), computed in float32 whatever the
    encoder's dtype (a bf16 mean of many clips drifts)."""
    weights = {k: v.float() for k, v in encoder.state_dict().items()}
    fp32 = SpeakerEncoder(encoder.config).to(next(encoder.parameters()).device)
    fp32.load_state_dict(weights)
    fp32.eval()
    out = {}
    for name, wavs in clips.items():
        vectors = [fp32.embed_audio(w.float().to(fp32.fc.weight.device)) for w in wavs]
        if not vectors:
            raise ValueError(f"speaker {name!r} has no clips")
        out[name.lower()] = torch.stack(vectors).mean(0)
    return out


@torch.no_grad()
def add_speakers(model: TTSModel, rows: Mapping[str, int], init: Mapping[str, torch.Tensor] | None = None) -> None:
    """Register ``rows`` as named speakers in the model's config; rows with an ``init`` vector are set to it."""
    config = model.config.talker_config
    table = model.talker.model.codec_embedding.weight
    for name, row in rows.items():
        if not 0 <= row < config.vocab_size:
            raise ValueError(f"speaker {name!r}: row {row} outside the codec embedding (0..{config.vocab_size - 1})")
        if init is not None and name in init:
            table[row] = init[name].to(device=table.device, dtype=table.dtype)
    config.spk_id = {**(config.spk_id or {}), **{name: int(row) for name, row in rows.items()}}
    config.spk_is_dialect = {**(config.spk_is_dialect or {}), **{name: False for name in rows
                                                                  if name not in (config.spk_is_dialect or {})}}


def speaker_clips(rows, max_clips: int = 20) -> dict[str, list]:
    """Up to ``max_clips`` audio references per speaker (dicts with ``audio`` and optional ``start``/``end``) from
    manifest or extracted-codes rows, in row order."""
    clips: dict[str, list] = {}
    for row in rows:
        name = str(row["speaker"]).lower()
        if len(clips.setdefault(name, [])) < max_clips:
            clips[name].append({k: row[k] if k in row else None for k in ("audio", "start", "end")})
    return clips


def add_speakers_from_rows(base: str | os.PathLike, rows, out: str | os.PathLike, *, codec=None,
                           start: int = FIRST_SPEAKER_ROW, max_clips: int = 20) -> dict[str, int]:
    """``qtts speakers add``: a Base folder + the corpus's rows → ``out``, the same model with one named row per
    speaker of the corpus, each initialised from the speaker's mean x-vector. Returns ``{speaker: row}``."""
    from qtts.audio.io import load_audio
    from qtts.models.export import export_release

    model = TTSModel.from_pretrained(base)
    if model.speaker_encoder is None:
        raise ValueError(f"{base}: speaker rows start from x-vectors, which need a Base model (with a speaker encoder)")
    clips = speaker_clips(rows, max_clips)
    if not clips:
        raise ValueError("the rows name no speakers")
    rate = model.config.speaker_encoder_config.sample_rate
    waves = {name: [load_audio(c["audio"], rate, start=c["start"], end=c["end"])[0][0] for c in refs]
             for name, refs in clips.items()}
    rows_of = speaker_rows(model.config.talker_config, list(clips), start)
    add_speakers(model, rows_of, mean_xvectors(model.speaker_encoder, waves))
    export_release(model, out, model_type="base", codec=codec, source=base)
    return rows_of


def add_speakers_from_corpus(base: str | os.PathLike, corpus: str | os.PathLike, out: str | os.PathLike, *,
                             speakers: Iterable[str] | None = None, codec=None, start: int = FIRST_SPEAKER_ROW,
                             max_clips: int = 20) -> dict[str, int]:
    """``add_speakers_from_rows`` over a corpus: a ``qtts data extract-codes`` folder or a manifest ``.jsonl``.
    ``speakers``: only these speakers of it (default: all); a name the corpus lacks is an error naming its
    speakers."""
    corpus = Path(corpus)
    if corpus.is_dir():
        from qtts.data.extract_codes import open_codes

        table = open_codes(corpus).remove_columns(["codes"])
        names = [str(s).lower() for s in table["speaker"]]
    else:
        from qtts.data.manifest import read_manifest

        table = [u.to_json() for u in read_manifest(corpus)]
        names = [str(r["speaker"]).lower() for r in table]
    if speakers is not None:
        wanted = {str(name).strip().lower() for name in speakers if str(name).strip()}
        missing = sorted(wanted - set(names))
        if missing:
            raise ValueError(f"speakers {', '.join(missing)}: not in {corpus} (its speakers: "
                             f"{', '.join(sorted(set(names))[:20])})")
        keep = [i for i, name in enumerate(names) if name in wanted]
        table = table.select(keep) if corpus.is_dir() else [table[i] for i in keep]
    return add_speakers_from_rows(base, table, out, codec=codec, start=start, max_clips=max_clips)
