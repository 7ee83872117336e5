"""Error rates by the Seed-TTS-eval rules: per utterance, then summarised.

Chinese, Japanese and Korean are scored per character (CER; spaces do not count, since these scripts do not
delimit words by them and ASR output places them arbitrarily); every other language per word (WER). The headline
number is the MEAN of the per-utterance rates × 100, not the corpus rate: that is how Seed-TTS-eval (and the papers
quoting it) report, so a short utterance weighs as much as a long one. Utterances above 50 % are kept in the mean
(dropping them would flatter a model that sometimes babbles) and are also counted; the corpus rate (total edits /
total reference units) is reported beside the mean.

An empty reference (also one that normalises to nothing, e.g. only punctuation) has no rate: scoring it raises a
ValueError naming the item, because it is a broken test-set entry, not a result. An empty hypothesis is scored:
every reference unit is a deletion, rate 1.0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import jiwer

from qtts.eval.normalize import base_language, normalize
from qtts.text.languages import get_language

CHARACTER_LANGUAGES = frozenset({"zh", "ja", "ko"})
OVERALL = "overall"  # the key of the all-languages summary in summarize_by_language


@dataclass(frozen=True)
class UtteranceScore:
    """One utterance: ``errors`` edits (S + D + I) against ``units`` reference words or characters."""

    errors: int
    units: int
    rate: float  # errors / units; may exceed 1 with insertions
    unit: Literal["word", "char"]


@dataclass(frozen=True)
class Summary:
    """Scores of a set of utterances, rates already × 100."""

    mean_rate_x100: float  # the headline: mean of the per-utterance rates
    corpus_rate_x100: float  # total errors / total reference units
    above_50: int  # utterances with rate > 0.5 (kept in both rates)
    count: int


def unit_of(language: str) -> Literal["word", "char"]:
    """``"char"`` for Chinese (and its dialects), Japanese and Korean, ``"word"`` otherwise."""
    return "char" if base_language(language) in CHARACTER_LANGUAGES else "word"


def score_utterance(reference: str, hypothesis: str, language: str, item: str | None = None) -> UtteranceScore:
    """Normalise both texts and count edits in the language's unit; ``item`` (an utterance id) names the entry in
    the error raised for an empty reference."""
    unit = unit_of(language)
    ref, hyp = normalize(reference, language), normalize(hypothesis, language)
    if unit == "char":
        ref, hyp = ref.replace(" ", ""), hyp.replace(" ", "")
    if not ref:
        name = f"item {item!r}" if item is not None else "an item"
        raise ValueError(f"{name} has an empty reference after normalisation ({reference!r}); fix the test set")
    out = jiwer.process_characters(ref, hyp) if unit == "char" else jiwer.process_words(ref, hyp)
    errors = out.substitutions + out.deletions + out.insertions
    units = out.substitutions + out.deletions + out.hits
    return UtteranceScore(errors=errors, units=units, rate=errors / units, unit=unit)


def summarize(scores: Iterable[UtteranceScore]) -> Summary:
    """Mean and corpus rate of ``scores`` (at least one)."""
    scores = list(scores)
    if not scores:
        raise ValueError("no utterances to summarise")
    return Summary(
        mean_rate_x100=100 * sum(s.rate for s in scores) / len(scores),
        corpus_rate_x100=100 * sum(s.errors for s in scores) / sum(s.units for s in scores),
        above_50=sum(s.rate > 0.5 for s in scores),
        count=len(scores),
    )


def summarize_by_language(scored: Iterable[tuple[str, UtteranceScore]]) -> dict[str, Summary]:
    """``{language code: Summary}`` over ``(language, score)`` pairs, plus :data:`OVERALL` for all of them.

    Languages are keyed by their qtts code (``chinese`` and ``zh`` are one; a dialect keeps its own). The overall
    corpus rate adds words and characters together when languages of both units are mixed; the per-language
    summaries are the ones to quote.
    """
    groups: dict[str, list[UtteranceScore]] = defaultdict(list)
    everything: list[UtteranceScore] = []
    for language, score in scored:
        groups[get_language(language).code].append(score)
        everything.append(score)
    if not everything:
        raise ValueError("no utterances to summarise")
    return {**{lang: summarize(group) for lang, group in groups.items()}, OVERALL: summarize(everything)}
