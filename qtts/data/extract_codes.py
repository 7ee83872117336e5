"""Run the 12 Hz speech codec over a manifest once, so training reads codes instead of audio.

``extract_codes(MANIFEST, CODEC, OUT)`` splits the manifest's lines into fixed shards of
``rows_per_shard`` rows; process ``p`` of ``n`` (``accelerate launch``, or one plain process) takes
shards ``p, p + n, …``, so no process talks to another until the final wait. Inside a shard, rows
are sorted by duration and packed into batches of at most ``max_seconds_per_batch`` seconds of padded
audio, decoded by DataLoader workers and encoded on the process's device. A finished shard is one
folder (``datasets.Dataset.save_to_disk`` plus that shard's ``rejects.jsonl``), written under a
temporary name and renamed, so a killed or rerun job skips it; a row that fails (bad schema, missing
or undecodable audio, too short or long) is a reject and the job goes on.

Exactness: the codec is causal, so a clip's codes in a right-padded batch equal its codes alone in
every frame but the last, which sees the batch's zero padding when the clip's length is not a
multiple of the hop (encoding alone instead pads each layer's activations). To make codes
independent of batch mates, each clip is zero-padded to a whole frame first: its codes are then
exactly ``encode([pad_to_frame(wav)])`` in any batch, and equal ``encode([wav])`` in every frame but
possibly the last. ``alone=True`` encodes each clip by itself, unpadded, bit-identical to
``encode([wav])`` (slower). Both hold bit for bit on the CPU. On CUDA, float kernels vary with the batch's
shape and an RVQ near-tie can flip a code: measured on an H200 with the released architecture (random
weights), TF32 (cuDNN's default) changed ~1 % of frames, so it is turned off here, leaving 1 frame in
3950 different from encoding alone (GPU alone matched the CPU bit for bit); bfloat16 changed ~40 %.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from qtts.audio.io import AudioError, audio_info, load_audio
from qtts.data.corpus import FEATURES
from qtts.data.manifest import ManifestError, Utterance, iter_raw_rows, parse_row
from qtts.models.codec.model import SpeechTokenizer, resolve_folder

SHARDS, REJECTS, INFO, JOB = "shards", "rejects.jsonl", "info.json", "job.json"


@dataclass
class ExtractConfig:
    """How codes are extracted; ``metadata["help"]`` is each field's ``qtts data extract-codes`` help."""
    rows_per_shard: int = field(default=10_000, metadata={"help": "manifest rows per shard (the unit of resuming)"})
    max_seconds_per_batch: float = field(default=300.0, metadata={
        "help": "padded audio per encoder call: batch size × longest clip, seconds"})
    min_duration: float = field(default=0.0, metadata={
        "help": "shorter decoded audio is rejected, seconds; empty audio always is"})
    max_duration: float | None = field(default=None, metadata={
        "help": "longer decoded audio is rejected, seconds (default: no limit)"})
    num_workers: int = field(default=2, metadata={"help": "audio-decoding DataLoader workers per process"})
    device: str | None = field(default=None, metadata={"help": "default: accelerate's device for this process"})
    dtype: Literal["float32", "bfloat16"] = field(default="float32", metadata={"help": "the codec's dtype"})
    alone: bool = field(default=False, metadata={
        "help": "encode each clip by itself, unpadded (bit-identical to encoding it alone; slower)"})
    progress: bool = field(default=True, metadata={"help": "progress bars"})


@dataclass
class Item:
    """One manifest line of a shard: its utterance, or why it cannot be one."""
    line: int
    raw: Any
    row: Utterance | None = None
    reason: str | None = None
    wav: torch.Tensor | None = None  # only between decoding and encoding
    seconds: float = 0.0  # for packing batches
    audio_seconds: float | None = None  # decoded length


@dataclass
class ShardResult:
    items: dict[int, Item] = field(default_factory=dict)  # line → item
    codes: dict[int, np.ndarray] = field(default_factory=dict)  # line → (frames, K) int16


def features(num_quantizers: int) -> datasets.Features:
    """The corpus columns, ``extra`` (the manifest's other keys as JSON), ``codes`` and ``num_frames``."""
    return datasets.Features({
        **FEATURES,
        "extra": datasets.Value("string"),
        "codes": datasets.Array2D(shape=(None, num_quantizers), dtype="int16"),
        "num_frames": datasets.Value("int32"),
    })


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def read_items(manifest: Path) -> list[Item]:
    """Every non-blank manifest line, parsed; schema errors become rejects rather than raising."""
    items = []
    for number, raw in iter_raw_rows(manifest):
        item = Item(line=number, raw=raw)
        try:
            if isinstance(raw, ManifestError):
                raise raw
            item.row = parse_row(raw, f"{manifest}:{number}", manifest.parent)
        except ManifestError as err:
            item.reason = f"schema: {err}"
        items.append(item)
    return items


def _seconds(row: Utterance) -> float:
    """Duration for packing: the manifest's, else the segment's, else the file header's (0 if unreadable)."""
    if row.duration is not None:
        return row.duration
    if row.start is not None and row.end is not None:
        return row.end - row.start
    try:
        return max(0.0, audio_info(row.audio).duration - (row.start or 0.0))
    except AudioError:
        return 0.0


def pack_batches(items: list[Item], max_seconds: float, alone: bool) -> list[list[Item]]:
    """Sort by duration and cut batches whose padded size (count × longest) stays within ``max_seconds``;
    a clip longer than the budget goes alone."""
    batches: list[list[Item]] = []
    current: list[Item] = []
    for item in sorted(items, key=lambda i: i.seconds):
        if current and (alone or (len(current) + 1) * item.seconds > max_seconds):
            batches.append(current)
            current = []
        current.append(item)
    if current:
        batches.append(current)
    return batches


class _Batches(Dataset):
    """DataLoader source: ``(shard, batch of items)``; loading fills each item's wav or reason."""

    def __init__(self, batches: list[tuple[int, list[Item]]], sample_rate: int, cfg: ExtractConfig):
        self.batches, self.sample_rate, self.cfg = batches, sample_rate, cfg

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> tuple[int, list[Item]]:
        shard, items = self.batches[index]
        for item in items:
            if item.reason is None:
                item.wav, item.reason = load_wav(item.row, self.sample_rate, self.cfg)
                if item.wav is not None:
                    item.audio_seconds = item.wav.numel() / self.sample_rate
        return shard, items


def load_wav(row: Utterance, sample_rate: int, cfg: ExtractConfig) -> tuple[torch.Tensor | None, str | None]:
    """``(mono wav at the codec rate, None)`` or ``(None, reason)``; never raises on bad audio."""
    try:
        wav, _ = load_audio(row.audio, sample_rate=sample_rate, start=row.start, end=row.end)
    except AudioError as err:
        return None, f"audio: {err}"
    except Exception as err:  # noqa: BLE001 - any decoder crash costs only this row
        return None, f"audio: {row.audio}: {type(err).__name__}: {err}"
    wav = wav[0]
    seconds = wav.numel() / sample_rate
    if not torch.isfinite(wav).all():
        return None, "nan: audio contains NaN or Inf samples"
    if wav.numel() == 0 or seconds < cfg.min_duration:
        return None, f"too short: {seconds:.3f} s < {cfg.min_duration} s"
    if cfg.max_duration is not None and seconds > cfg.max_duration:
        return None, f"too long: {seconds:.2f} s > {cfg.max_duration} s"
    return wav, None


@contextmanager
def no_tf32() -> Iterator[None]:
    """Full float32 convs and matmuls on CUDA: with TF32 (cuDNN's default) about 1 % of codes change with
    the batch's shape, without it about 0.03 % (see the module doc)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _as_is(batch: tuple[int, list[Item]]) -> tuple[int, list[Item]]:
    return batch


def encode_batch(model: SpeechTokenizer, wavs: list[torch.Tensor], alone: bool) -> list[np.ndarray]:
    """Codes (frames, K) int16 per wav; zero-padded to whole frames unless ``alone`` (see module doc)."""
    hop = model.config.encode_downsample_rate
    if not alone:
        wavs = [torch.nn.functional.pad(w, (0, -w.numel() % hop)) for w in wavs]
    device = next(model.parameters()).device
    codes = model.encode([w.to(device) for w in wavs])
    return [c.to(torch.int16).cpu().numpy() for c in codes]


def encode_items(model: SpeechTokenizer, items: list[Item], alone: bool) -> dict[int, np.ndarray]:
    """Codes per line; if the batch fails (out of memory, …) each clip is retried alone, and a clip
    that still fails becomes a reject instead of ending the job."""
    try:
        return {i.line: c for i, c in zip(items, encode_batch(model, [i.wav for i in items], alone))}
    except RuntimeError as err:
        if len(items) == 1:
            items[0].reason = f"encode: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            return {}
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {line: c for i in items for line, c in encode_items(model, [i], alone).items()}


def _record(item: Item, codes: np.ndarray) -> dict[str, Any]:
    row = item.row
    record = {name: getattr(row, name) for name in FEATURES}
    if record["duration"] is None:
        record["duration"] = item.audio_seconds
    record["extra"] = json.dumps(row.extra, ensure_ascii=False)
    record["codes"] = codes
    record["num_frames"] = codes.shape[0]
    return record


def write_shard(out: Path, index: int, result: ShardResult, feats: datasets.Features) -> None:
    """Save one shard (rows in manifest order) and its rejects to a temporary folder, then rename it."""
    final = out / SHARDS / shard_name(index)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    items = sorted(result.items.values(), key=lambda i: i.line)
    records = [_record(i, result.codes[i.line]) for i in items if i.line in result.codes]
    columns = {name: [r[name] for r in records] for name in feats}
    datasets.Dataset.from_dict(columns, features=feats).save_to_disk(str(tmp))
    with open(tmp / REJECTS, "w", encoding="utf-8") as f:
        for i in items:
            if i.line not in result.codes:
                rid = i.raw.get("id") if isinstance(i.raw, dict) else None
                f.write(json.dumps({"line": i.line, "id": rid, "reason": i.reason, "row": i.raw},
                                   ensure_ascii=False, default=str) + "\n")
    if final.exists():  # another run finished it meanwhile; keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        return
    os.replace(tmp, final)


def _check_job(out: Path, job: dict[str, Any], is_main: bool) -> None:
    """Refuse to mix shards of a different manifest, codec or sharding into ``out``."""
    path = out / JOB
    if path.exists():
        old = json.loads(path.read_text())
        if old != job:
            diff = {k: (old.get(k), v) for k, v in job.items() if old.get(k) != v}
            raise ValueError(f"{out} holds shards of another job ({diff}); use a new output folder")
    elif is_main:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(job, indent=2) + "\n")
        os.replace(tmp, path)


def extract_codes(manifest: str | os.PathLike, codec: str | os.PathLike, out: str | os.PathLike,
                  cfg: ExtractConfig | None = None) -> dict[str, Any]:
    """Encode this process's pending shards of ``manifest`` into ``out``; the main process then writes
    ``info.json`` and the merged ``rejects.jsonl`` and every process returns the info."""
    from accelerate import PartialState

    cfg = cfg or ExtractConfig()
    manifest, out = Path(manifest), Path(out)
    state = PartialState()
    folder = resolve_folder(codec)
    model = SpeechTokenizer.from_pretrained(folder)
    if model.config.decoder_config.codebook_size > 2 ** 15:
        raise ValueError(f"codebook size {model.config.decoder_config.codebook_size} does not fit int16 codes")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.dtype]
    model = model.to(device=torch.device(cfg.device) if cfg.device else state.device, dtype=dtype)
    sample_rate, num_q = model.config.input_sample_rate, model.config.encoder_valid_num_quantizers
    feats = features(num_q)

    items = read_items(manifest)
    num_shards = max(1, math.ceil(len(items) / cfg.rows_per_shard))
    out.mkdir(parents=True, exist_ok=True)
    (out / SHARDS).mkdir(exist_ok=True)
    _check_job(out, {"manifest": str(manifest.resolve()), "codec": str(folder.resolve()), "rows": len(items),
                     "rows_per_shard": cfg.rows_per_shard, "alone": cfg.alone, "dtype": cfg.dtype},
               state.is_main_process)

    mine = [s for s in range(state.process_index, num_shards, state.num_processes)
            if not (out / SHARDS / shard_name(s)).exists()]
    for s in mine:  # left by a killed run
        for stale in (out / SHARDS).glob(f".{shard_name(s)}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
    results: dict[int, ShardResult] = {}
    batches: list[tuple[int, list[Item]]] = []
    for s in mine:
        shard_items = items[s * cfg.rows_per_shard:(s + 1) * cfg.rows_per_shard]
        results[s] = ShardResult(items={i.line: i for i in shard_items})
        good = [i for i in shard_items if i.reason is None]
        for item in good:
            item.seconds = _seconds(item.row)
        batches += [(s, b) for b in pack_batches(good, cfg.max_seconds_per_batch, cfg.alone)]
    pending = {s: sum(1 for shard, _ in batches if shard == s) for s in mine}
    for s in [s for s, n in pending.items() if n == 0]:  # every row a schema reject
        write_shard(out, s, results[s], feats)

    loader = DataLoader(_Batches(batches, sample_rate, cfg), batch_size=None, shuffle=False,
                        num_workers=cfg.num_workers, collate_fn=_as_is)
    total = sum(len(b) for _, b in batches)
    with no_tf32(), tqdm(total=total, unit="row", disable=not (cfg.progress and state.is_main_process),
                         desc=f"codes: {len(mine)} shards (process 0 of {state.num_processes})") as bar:
        for shard, batch in loader:
            result = results[shard]
            ok = [i for i in batch if i.reason is None]
            if ok:
                result.codes.update(encode_items(model, ok, cfg.alone))
            for item in batch:  # workers return copies: keep their reasons and lengths, not the audio
                item.wav = None
                result.items[item.line] = item
            bar.update(len(batch))
            pending[shard] -= 1
            if pending[shard] == 0:
                write_shard(out, shard, results.pop(shard), feats)
    state.wait_for_everyone()
    if state.is_main_process:
        _finish(out, folder, model, num_shards)
    state.wait_for_everyone()
    return json.loads((out / INFO).read_text())


def _finish(out: Path, folder: Path, model: SpeechTokenizer, num_shards: int) -> dict[str, Any]:
    """Merge the shards' rejects into ``out/rejects.jsonl`` and write ``out/info.json`` (both rewritten
    whole on every run, so a rerun never duplicates a line)."""
    rows = frames = rejected = 0
    seconds = 0.0
    missing = []
    tmp = out / f".{REJECTS}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for s in range(num_shards):
            shard = out / SHARDS / shard_name(s)
            if not shard.exists():
                missing.append(shard.name)
                continue
            lines = (shard / REJECTS).read_text(encoding="utf-8").splitlines(keepends=True)
            f.writelines(lines)
            rejected += len(lines)
            ds = datasets.load_from_disk(str(shard))
            rows += len(ds)
            frames += int(sum(ds["num_frames"]))
            seconds += float(sum(d or 0.0 for d in ds["duration"]))
    os.replace(tmp, out / REJECTS)
    config = model.config
    info = {
        "codec": str(folder.resolve()), "sample_rate": config.input_sample_rate,
        "frame_rate": config.input_sample_rate / config.encode_downsample_rate,
        "num_quantizers": config.encoder_valid_num_quantizers, "codebook_size": config.decoder_config.codebook_size,
        "num_shards": num_shards, "complete": not missing, "missing_shards": missing,
        "rows": rows, "rejected": rejected, "frames": frames, "seconds": round(seconds, 3),
    }
    tmp = out / f".{INFO}.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, out / INFO)
    return info


def open_codes(out: str | os.PathLike) -> datasets.Dataset:
    """All shards of a finished extraction as one dataset, in manifest order (``codes`` as int16 arrays)."""
    out = Path(out)
    info_path = out / INFO
    if not info_path.exists():
        raise FileNotFoundError(f"{out}: no {INFO}; run `qtts data extract-codes` to the end first")
    info = json.loads(info_path.read_text())
    shards = [out / SHARDS / shard_name(s) for s in range(info["num_shards"])]
    missing = [s.name for s in shards if not s.exists()]
    if missing:
        raise FileNotFoundError(f"{out}: shards not written yet: {missing[:5]}; rerun the extraction to finish")
    return datasets.concatenate_datasets([datasets.load_from_disk(str(s)) for s in shards])
