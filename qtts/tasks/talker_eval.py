"""Teacher-forced losses of a trained talker on an extracted-codes folder, grouped by language or speaker.

Why: a fine-tune is judged on what it was for and on what it must not break. A new-language adapter should lower
the new language's loss; a custom-voice fine-tune should keep cloning other voices (the x-vector layout on
speakers it never saw). The numbers are the training loss's own terms (``dual_track_loss``: CE of group 0 and of
groups 1..15), summed over every supervised position of each group, so groups of different sizes compare.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

import torch

from qtts.data.talker_dataset import TalkerCorpus, collate_talker
from qtts.models.talker import TTSModel
from qtts.tasks.talker_losses import dual_track_loss

Layout = Literal["clone", "speaker", "plain"]
Grouping = Literal["language", "speaker"]


@torch.no_grad()
def evaluate_talker(model: TTSModel, rows: Any, tokenizer: Any, *, by: Grouping = "language", layout: Layout = "clone",
                    max_rows: int | None = None, predictor_weight: float = 0.3, reference_seconds: float = 6.0
                    ) -> dict[str, dict[str, float]]:
    """``{group: {loss, talker_loss, predictor_loss, rows}}`` over ``rows`` (``open_codes``; the first
    ``max_rows`` of each group), one row per forward.

    layout: ``clone`` — the x-vector slot with a clip of another utterance of the same speaker (Base models; what
    cloning a voice does); ``speaker`` — the speaker's named row (custom voices; every speaker needs one);
    ``plain`` — no speaker slot (VoiceDesign-style). Languages take the model's own rows (added ones included).
    """
    groups = [str(g) for g in (rows[by] if not isinstance(rows, list) else [r[by] for r in rows])]
    counts: dict[str, int] = defaultdict(int)
    keep = []
    for index, group in enumerate(groups):
        if max_rows is None or counts[group] < max_rows:
            counts[group] += 1
            keep.append(index)
    if len(keep) < len(groups):
        rows = [rows[i] for i in keep] if isinstance(rows, list) else rows.select(keep)
        groups = [groups[i] for i in keep]
    talker = model.config.talker_config
    corpus = TalkerCorpus(rows, tokenizer, xvector=layout == "clone", reference="other",
                          reference_seconds=reference_seconds, auto_language_prob=0.0,
                          speakers=talker.spk_id if layout == "speaker" else None,
                          languages=talker.codec_language_id)
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0, 0])
    device = next(model.parameters()).device
    model.eval()
    for index, group in enumerate(groups):
        batch = collate_talker([corpus[index]])
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        tracks = batch["tracks"].to(device)
        out = model.forward_tracks(tracks, model.reference_xvectors(batch), packed=False)
        loss = dual_track_loss(out.hidden, out.logits, tracks.labels, tracks.code_labels,
                               model.talker.predictor_logits, predictor_weight, accuracy=False)
        total = sums[group]
        total[0] += float(loss.talker) * loss.talker_tokens
        total[1] += loss.talker_tokens
        total[2] += float(loss.predictor) * loss.predictor_frames
        total[3] += loss.predictor_frames
        total[4] += 1
    report = {}
    for group, (talker_sum, tokens, predictor_sum, frames, n) in sorted(sums.items()):
        talker_loss, predictor_loss = talker_sum / tokens, predictor_sum / frames
        report[group] = {"loss": talker_loss + predictor_weight * predictor_loss, "talker_loss": talker_loss,
                         "predictor_loss": predictor_loss, "rows": n}
    return report


def evaluate_talker_on_codes(model: str | os.PathLike, codes: str | os.PathLike, *, by: Grouping = "language",
                             layout: Layout | None = None, languages: Sequence[str] | None = None,
                             max_rows: int | None = 200) -> tuple[dict[str, dict[str, float]], Layout]:
    """``evaluate_talker`` of what ``qtts.runs.open_trained`` opens at ``model`` (model folder, run folder or
    checkpoint, with its text tokenizer) on a ``qtts data extract-codes`` folder: rows of ``languages`` only (codes
    or names; default all), the first ``max_rows`` of each group. ``layout`` defaults to ``clone`` for a model with
    a speaker encoder (Base), else ``speaker``. Returns the report and the layout used."""
    from qtts.data.mixture import Source, mix_sources
    from qtts.runs import open_trained

    trained = open_trained(model)
    rows = mix_sources([Source(str(codes), languages=None if languages is None else list(languages))])
    layout = layout or ("clone" if trained.model.speaker_encoder is not None else "speaker")
    report = evaluate_talker(trained.model, rows, trained.text_tokenizer(), by=by, layout=layout, max_rows=max_rows)
    return report, layout
