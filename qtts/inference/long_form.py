"""Long texts to files: sentences generated in batches with one voice, joined with pauses, written as they finish.

The talker is trained on utterances of a few sentences; a page of text is split (``qtts.text.sentences``), every
sentence of every utterance is generated in batches (one call per batch, so the batch dimension is used), and an
utterance's file is written as soon as its last sentence is done, so a killed job loses at most one batch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from qtts.audio.io import audio_info, save_audio
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


def read_text_file(path: str | os.PathLike, out: str | os.PathLike) -> list[tuple[str, str, Path]]:
    """``(id, text, wav path)`` of every non-empty line of a UTF-8 text file, in order: ``text`` is numbered by its
    place (``out/0000.wav``, …), ``ID<TAB>text`` is written as ``out/ID.wav``. Raises ValueError for a bad or
    repeated id, an id without text or a file without text (OSError / UnicodeDecodeError if unreadable)."""
    out = Path(out)
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    items = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    width = max(4, len(str(len(items) - 1)))
    rows, seen = [], set()
    for index, (n, line) in enumerate(items):
        ident, text = f"{index:0{width}d}", line.strip()
        if "\t" in line:
            ident, text = (part.strip() for part in line.split("\t", 1))
            if not ident or "/" in ident or "\\" in ident or ident.startswith("."):
                raise ValueError(f"{path}:{n}: bad id {ident!r} (no '/', no leading '.')")
            if not text:
                raise ValueError(f"{path}:{n}: id {ident!r} has no text")
        rows.append((ident, text, out / f"{ident}.wav"))
    if not rows:
        raise ValueError(f"{path}: no text")
    for ident, _, _ in rows:
        if ident in seen:
            raise ValueError(f"{path}: id {ident!r} is used twice")
        seen.add(ident)
    return rows


def write_manifest(out: str | os.PathLike, utterances: Sequence[tuple[str, str, Path]]) -> Path:
    """``out/manifest.jsonl`` (written whole, atomically): id, text, audio (the file name) and duration of every
    ``(id, text, wav path)`` whose wav exists."""
    from qtts.models.checkpoint import atomic_write

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [json.dumps({"id": ident, "text": text, "audio": path.name,
                        "duration": round(audio_info(path).duration, 4)}, ensure_ascii=False)
            for ident, text, path in utterances if path.is_file()]
    atomic_write(out / "manifest.jsonl", lambda tmp: tmp.write_text("".join(r + "\n" for r in rows), encoding="utf-8"))
    return out / "manifest.jsonl"
