"""Cut long recordings (podcasts, audiobook chapters) into utterances with an energy VAD.

Speech is where the frame log-energy rises ``margin_db`` above the recording's own noise floor (a
low percentile of the frame energies), so the threshold adapts to each file's level and noise; a
recording therefore needs some pauses (``floor_percentile`` of its frames), and one of constant
level throughout yields no speech rather than a guess. Hysteresis (a region starts above the
threshold and ends only ``hysteresis_db`` below it) keeps word endings; pauses shorter than
``min_silence_s`` are bridged, blips shorter than ``min_speech_s`` dropped, ``pad_s`` of context
added on each side, and regions longer than ``max_segment_s`` split at their quietest point.

``segment_manifest`` writes one row per segment with ``start``/``end`` into the original file (no
audio is copied) and id ``<original id>_<k>``. The text comes from a sidecar ``.srt``/``.vtt``
next to the audio when there is one (the cues whose middle falls inside the segment), else it is
empty, to be filled by ASR.

    python -m data_prep.segment long_recordings/ OUT.jsonl --language en --max-seconds 15
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from data_prep.common import (
    AUDIO_SUFFIXES,
    ImportResult,
    Reject,
    audio_ref,
    clean_text,
    rejects_path,
    report,
    write_rejects,
)
from qtts.audio.io import AudioError, load_audio
from qtts.data.manifest import Utterance, read_manifest, write_manifest
from qtts.parallel import worker_pool
from qtts.text.languages import get_language

DIGITAL_SILENCE_DB = -90.0


@dataclass(frozen=True)
class VadConfig:
    frame_s: float = 0.025
    hop_s: float = 0.010
    floor_percentile: float = 10.0  # the quietest 10 % of frames estimate the noise floor
    margin_db: float = 12.0  # speech starts this far above the floor ...
    hysteresis_db: float = 6.0  # ... and ends when energy falls this far below the start threshold
    min_energy_db: float = -60.0  # dBFS; quieter frames are never speech (digital silence, dither)
    min_speech_s: float = 0.25
    min_silence_s: float = 0.30
    pad_s: float = 0.10
    max_segment_s: float = 20.0
    smooth_s: float = 0.10  # energy smoothing used to pick split points
    middle_bias_db_per_s: float = 0.1  # among equally quiet split points, prefer the middle

    def __post_init__(self) -> None:
        if self.max_segment_s < 2 * self.min_speech_s:
            raise ValueError(f"max_segment_s ({self.max_segment_s}) must be at least twice "
                             f"min_speech_s ({self.min_speech_s})")
        if self.hop_s <= 0 or self.frame_s < self.hop_s:
            raise ValueError(f"need 0 < hop_s <= frame_s, got hop_s={self.hop_s}, frame_s={self.frame_s}")


def frame_energy_db(wav: torch.Tensor, sr: int, frame_s: float = 0.025, hop_s: float = 0.010) -> torch.Tensor:
    """Mean-square energy in dBFS of frames centred every ``hop_s`` seconds (frame ``i`` at ``i * hop_s``)."""
    x = torch.as_tensor(wav, dtype=torch.float32)
    x = x.mean(dim=0) if x.dim() == 2 else x
    frame, hop = max(1, round(frame_s * sr)), max(1, round(hop_s * sr))
    power = F.pad(x.pow(2)[None, None], (frame // 2, frame - frame // 2))
    power = F.avg_pool1d(power, frame, hop, ceil_mode=False)[0, 0]
    return 10 * torch.log10(power + 1e-10)


def _runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """``[start, stop)`` index ranges where ``mask`` is true."""
    edges = torch.diff(F.pad(mask.to(torch.int8), (1, 1))).nonzero().flatten().tolist()
    return list(zip(edges[0::2], edges[1::2]))


def find_speech_segments(
    wav: torch.Tensor, sr: int, config: VadConfig | None = None, **overrides
) -> list[tuple[float, float]]:
    """Speech regions of ``wav`` (``(samples,)`` or ``(channels, samples)``) as ``(start_s, end_s)`` pairs.

    Keyword arguments override fields of ``VadConfig`` (e.g. ``max_segment_s=15``).
    """
    cfg = dataclasses.replace(config or VadConfig(), **overrides)
    wav = torch.as_tensor(wav)
    duration = wav.shape[-1] / sr
    if wav.shape[-1] == 0:
        return []
    energy = frame_energy_db(wav, sr, cfg.frame_s, cfg.hop_s)
    audible = energy[energy > DIGITAL_SILENCE_DB]  # zero padding at the ends is not the noise floor
    if audible.numel() == 0:
        return []
    floor = torch.quantile(audible, cfg.floor_percentile / 100).item()
    start_db = max(floor + cfg.margin_db, cfg.min_energy_db)
    stop_db = start_db - cfg.hysteresis_db
    hop = cfg.hop_s

    # hysteresis: a run above the stop level is speech if it reaches the start level somewhere
    regions = [(a * hop, (b - 1) * hop) for a, b in _runs(energy > stop_db) if energy[a:b].max() > start_db]
    merged: list[list[float]] = []
    for start, end in regions:
        if merged and start - merged[-1][1] < cfg.min_silence_s:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    kept = [(s, min(e, duration)) for s, e in merged if e - s >= cfg.min_speech_s]

    padded = []
    for i, (start, end) in enumerate(kept):  # never pad past the middle of a pause
        left = (kept[i - 1][1] + start) / 2 if i > 0 else 0.0
        right = (end + kept[i + 1][0]) / 2 if i + 1 < len(kept) else duration
        padded.append((max(start - cfg.pad_s, left), min(end + cfg.pad_s, right)))

    smooth = _smoothed(energy, max(1, round(cfg.smooth_s / hop)))
    segments: list[tuple[float, float]] = []
    for start, end in padded:
        segments.extend(_split_long(start, end, smooth, cfg))
    return [(round(s, 3), round(e, 3)) for s, e in segments]


def _smoothed(energy_db: torch.Tensor, width: int) -> torch.Tensor:
    """Moving average in the power domain, back in dB (a split point should be a pause, not a plosive)."""
    power = 10 ** (energy_db / 10)
    width = width | 1  # odd, so the window is centred
    power = F.avg_pool1d(power[None, None], width, 1, padding=width // 2, count_include_pad=False)[0, 0]
    return 10 * torch.log10(power + 1e-10)


def _split_long(start: float, end: float, smooth: torch.Tensor, cfg: VadConfig) -> list[tuple[float, float]]:
    """Split ``[start, end]`` at its quietest point until no piece is longer than ``max_segment_s``.

    No piece is made shorter than a quarter of the maximum, so a pause near an edge cannot leave
    a fragment too short to train on.
    """
    if end - start <= cfg.max_segment_s:
        return [(start, end)]
    min_piece = max(cfg.min_speech_s, cfg.max_segment_s / 4)
    first = max(0, int(round((start + min_piece) / cfg.hop_s)))
    last = min(len(smooth) - 1, int(round((end - min_piece) / cfg.hop_s)))
    if last <= first:
        return [(start, end)]
    times = torch.arange(first, last + 1, dtype=torch.float32) * cfg.hop_s
    score = smooth[first : last + 1] + cfg.middle_bias_db_per_s * (times - (start + end) / 2).abs()
    cut = times[int(score.argmin())].item()
    return _split_long(start, cut, smooth, cfg) + _split_long(cut, end, smooth, cfg)


# --- aligned text from subtitles -------------------------------------------------------------

_CUE_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})")


def _seconds(match: re.Match) -> float:
    hours, minutes, seconds, fraction = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(fraction.ljust(3, "0")) / 1000


def read_cues(path: str | os.PathLike) -> list[tuple[float, float, str]]:
    """``(start, end, text)`` cues of an SRT or WebVTT file (styling tags removed)."""
    cues = []
    blocks = re.split(r"\n\s*\n", Path(path).read_text(encoding="utf-8-sig").replace("\r\n", "\n"))
    for block in blocks:
        lines = block.strip().split("\n")
        for i, line in enumerate(lines):
            if "-->" in line:
                times = list(_CUE_TIME.finditer(line))
                if len(times) >= 2:
                    text = clean_text(re.sub(r"<[^>]+>", "", " ".join(lines[i + 1 :])))
                    cues.append((_seconds(times[0]), _seconds(times[1]), text))
                break
    return cues


def subtitle_sidecar(audio: str | os.PathLike) -> Path | None:
    for suffix in (".srt", ".vtt"):
        path = Path(audio).with_suffix(suffix)
        if path.is_file():
            return path
    return None


def text_for_segment(cues: list[tuple[float, float, str]], start: float, end: float) -> str:
    """The cues whose middle lies in ``[start, end)``, joined."""
    return " ".join(text for s, e, text in cues if start <= (s + e) / 2 < end and text)


# --- manifests --------------------------------------------------------------------------------

def _segment_file(
    job: tuple[str, float | None, float | None, VadConfig],
) -> tuple[list[tuple[float, float]], str | None]:
    audio, start, end, cfg = job
    try:
        wav, sr = load_audio(audio, sample_rate=None, mono=True, start=start, end=end)
    except AudioError as err:
        return [], f"unreadable audio: {err}"
    offset = start or 0.0
    return [(round(s + offset, 3), round(e + offset, 3)) for s, e in find_speech_segments(wav, sr, cfg)], None


def _source_rows(source, language: str | None, speaker: str | None) -> list[Utterance]:
    """Rows of a manifest (``.jsonl``), or one row per audio file of a file, folder or list of them."""
    if isinstance(source, (str, os.PathLike)) and str(source).endswith(".jsonl"):
        return read_manifest(source)
    paths = [Path(source)] if isinstance(source, (str, os.PathLike)) else [Path(p) for p in source]
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*")
                                if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".")))
        else:
            files.append(path)
    if language is None:
        raise ValueError("segmenting plain audio files needs a language (the manifest schema requires one)")
    code = get_language(language).code
    return [Utterance(p.stem, str(p.absolute()), "", code, speaker or p.stem) for p in files]


def segment_manifest(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    out_manifest: str | os.PathLike,
    language: str | None = None,
    speaker: str | None = None,
    config: VadConfig | None = None,
    workers: int = 2,
    **overrides,
) -> ImportResult:
    """Segment every recording of ``source`` (a manifest, an audio file, a folder or a list of files).

    Rows of a manifest keep their language, speaker and extra fields; plain files take ``language``
    and ``speaker`` (default: the file's name). Unreadable files go to ``OUT.rejects.jsonl``.
    """
    cfg = dataclasses.replace(config or VadConfig(), **overrides)
    rows = _source_rows(source, language, speaker)
    jobs = [(row.audio, row.start, row.end, cfg) for row in rows]
    bar = dict(total=len(jobs), desc="segmenting", unit="file", disable=not jobs)
    if workers <= 1 or len(jobs) < 2:
        results = [_segment_file(job) for job in tqdm(jobs, **bar)]
    else:
        with worker_pool(workers) as pool:
            results = list(tqdm(pool.map(_segment_file, jobs), **bar))

    out_rows, rejects = [], []
    for row, (segments, reason) in zip(rows, results):
        if reason is not None:
            rejects.append(Reject(row.audio, reason))
            continue
        if not segments:
            rejects.append(Reject(row.audio, "no speech: the VAD found no speech"))
            continue
        sidecar = subtitle_sidecar(row.audio)
        cues = read_cues(sidecar) if sidecar else []
        for k, (start, end) in enumerate(segments):
            out_rows.append(Utterance(f"{row.id}_{k:04d}", audio_ref(row.audio, out_manifest),
                                      text_for_segment(cues, start, end), row.language, row.speaker,
                                      round(end - start, 3), start=start, end=end,
                                      extra={**row.extra, "source_id": row.id}))
    write_manifest(out_manifest, out_rows)
    write_rejects(rejects_path(out_manifest), rejects)
    return ImportResult(out_rows, rejects, Path(out_manifest))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a manifest (.jsonl), an audio file or a folder of audio files")
    parser.add_argument("out", type=Path, help="manifest of segments to write (.jsonl)")
    parser.add_argument("--language", default=None, help="language of plain audio files (required for them)")
    parser.add_argument("--speaker", default=None, help="speaker of plain audio files (default: file name)")
    parser.add_argument("--max-seconds", type=float, default=VadConfig.max_segment_s,
                        help="longest segment (default 20)")
    parser.add_argument("--min-silence", type=float, default=VadConfig.min_silence_s,
                        help="shortest pause that cuts (s)")
    parser.add_argument("--min-speech", type=float, default=VadConfig.min_speech_s, help="shortest kept segment (s)")
    parser.add_argument("--pad", type=float, default=VadConfig.pad_s, help="context added on each side (s)")
    parser.add_argument("--margin-db", type=float, default=VadConfig.margin_db,
                        help="speech threshold above the noise floor")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    cfg = VadConfig(max_segment_s=args.max_seconds, min_silence_s=args.min_silence, min_speech_s=args.min_speech,
                    pad_s=args.pad, margin_db=args.margin_db)
    return report(segment_manifest(args.source, args.out, args.language, args.speaker, cfg, args.workers))


if __name__ == "__main__":
    raise SystemExit(main())
