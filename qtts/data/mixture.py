"""Training mixtures: several extracted-codes folders, each with a weight, a quality floor and long-speech upsampling.

The pretraining stages differ mostly in what data they see and how often (S1 everything, S2 the
high-quality stratum, S3 long utterances upsampled). A weight w repeats every row of its source
⌊w⌋ times plus a seeded random share w − ⌊w⌋ once more, so w = 0.5 keeps half the rows and w = 3 triples
them; the choice is fixed for the run (from ``seed``), so resumes see the same mixture. Repeated rows keep
their id, so the hash-based validation split never puts a copy on both sides.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any

import datasets


@dataclass
class Source:
    """One extracted-codes folder in a mixture.

    quality_field / min_quality: keep rows whose quality score (a manifest field, kept by extract-codes in
        ``extra``, or a column) is at least ``min_quality``; rows without a score are kept when
        ``keep_unscored``.
    upsample_longer_than / upsample_factor: rows at least this many seconds long count ``factor`` times
        (S3: long speech upsampled).
    languages / exclude_languages: keep only rows of these languages, or drop rows of those (codes or names;
        e.g. a language held out of pretraining and then taught by a language adapter).
    speakers / exclude_speakers: the same by speaker (e.g. voices held out to check that cloning survives).
    """

    path: str
    weight: float = 1.0
    min_quality: float | None = None
    quality_field: str = "quality"
    keep_unscored: bool = True
    upsample_longer_than: float | None = None
    upsample_factor: float = 1.0
    languages: list[str] | None = None
    exclude_languages: list[str] | None = None
    speakers: list[str] | None = None
    exclude_speakers: list[str] | None = None

    def __post_init__(self):
        if self.weight < 0 or self.upsample_factor < 0:
            raise ValueError(f"source {self.path}: weight and upsample_factor must be >= 0")

    def keeps_language(self, language: str) -> bool:
        key = _language_key(language)
        if self.languages is not None and key not in {_language_key(x) for x in self.languages}:
            return False
        return key not in {_language_key(x) for x in self.exclude_languages or []}

    def keeps_speaker(self, speaker: str) -> bool:
        key = str(speaker).lower()
        if self.speakers is not None and key not in {str(x).lower() for x in self.speakers}:
            return False
        return key not in {str(x).lower() for x in self.exclude_speakers or []}


def mix_sources(sources: list[Source | dict[str, Any] | str], seed: int = 0) -> datasets.Dataset:
    """One dataset of the chosen (and repeated) rows of every source, in source order."""
    from qtts.data.extract_codes import open_codes

    parts = []
    rng = random.Random(seed)
    for spec in sources:
        source = spec if isinstance(spec, Source) else Source(spec) if isinstance(spec, str) else Source(**spec)
        ds = open_codes(source.path)
        languages = ds["language"] if source.languages is not None or source.exclude_languages else None
        speakers = ds["speaker"] if source.speakers is not None or source.exclude_speakers else None
        factors = [source.weight * _length_factor(source, duration) * _quality_factor(source, score)
                   * (languages is None or source.keeps_language(languages[i]))
                   * (speakers is None or source.keeps_speaker(speakers[i]))
                   for i, (duration, score) in enumerate(zip(ds["duration"], _scores(ds, source)))]
        indices = [i for i, f in enumerate(factors) for _ in range(_repeats(f, rng))]
        if not indices:
            raise ValueError(f"source {source.path}: no row left (weight {source.weight}, "
                             f"min_quality {source.min_quality}, languages {source.languages}, "
                             f"exclude_languages {source.exclude_languages}, speakers {source.speakers}, "
                             f"exclude_speakers {source.exclude_speakers})")
        parts.append(ds.select(indices))
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _language_key(language: str) -> str:
    """A language's code whether given as code or name ("de", "german"); unknown ones as written."""
    from qtts.text.languages import get_language, is_known_language

    return get_language(language).code if is_known_language(language) else str(language).strip().lower()


def _repeats(factor: float, rng: random.Random) -> int:
    whole = math.floor(factor)
    return whole + (rng.random() < factor - whole)


def _length_factor(source: Source, duration: float) -> float:
    long = source.upsample_longer_than is not None and duration >= source.upsample_longer_than
    return source.upsample_factor if long else 1.0


def _scores(ds: datasets.Dataset, source: Source) -> list[float | None]:
    if source.min_quality is None:
        return [None] * len(ds)
    if source.quality_field in ds.column_names:
        return list(ds[source.quality_field])
    if "extra" not in ds.column_names:
        return [None] * len(ds)
    return [json.loads(extra or "{}").get(source.quality_field) for extra in ds["extra"]]


def _quality_factor(source: Source, score: float | None) -> float:
    if source.min_quality is None:
        return 1.0
    if score is None:
        return 1.0 if source.keep_unscored else 0.0
    return 1.0 if float(score) >= source.min_quality else 0.0
