"""Long texts to files: sentences generated in batches with one voice, joined with pauses, written as they finish.

The talker is trained on utterances of a few sentences; a page of text is split (``qtts.text.sentences``), every
sentence of every utterance is generated in batches (one call per batch, so the batch dimension is used), and an
utterance's file is written as soon as its last sentence is done, so a killed job loses at most one batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from qtts.audio.io import save_audio
from qtts.text.sentences import split_sentences


def synthesize_to_files(generate: Callable[[list[str]], list[torch.Tensor]],
                        utterances: Sequence[tuple[str, Path]], sample_rate: int, batch_size: int = 4,
                        max_chars: int = 200, pause: float = 0.25, progress: bool = True) -> tuple[int, float]:
    """Speak each ``(text, wav path)``; ``generate(texts) → waveforms`` holds the voice. Returns (files, seconds)."""
    pieces = [split_sentences(text, max_chars=max_chars) or [text] for text, _ in utterances]
    jobs = [(u, s) for u, sentences in enumerate(pieces) for s in sentences]
    done: list[list[torch.Tensor]] = [[] for _ in utterances]
    silence = torch.zeros(round(pause * sample_rate))
    written, seconds = 0, 0.0
    with tqdm(total=len(jobs), unit="sentence", desc="synth", disable=not progress) as bar:
        for first in range(0, len(jobs), batch_size):
            batch = jobs[first:first + batch_size]
            for (u, _), wav in zip(batch, generate([s for _, s in batch])):
                done[u].append(wav.float().cpu())
                if len(done[u]) == len(pieces[u]):  # the utterance is complete: write it now
                    parts = [p for i, w in enumerate(done[u]) for p in ([silence, w] if i else [w])]
                    audio = torch.cat(parts)
                    save_audio(utterances[u][1], audio, sample_rate)
                    done[u] = []
                    written += 1
                    seconds += len(audio) / sample_rate
            bar.update(len(batch))
    return written, seconds
