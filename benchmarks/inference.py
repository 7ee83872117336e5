"""Speech generation speed: real-time factor and first-packet latency, qtts vs the official qwen-tts package.

Why: qtts must generate speech at least as fast as ``qwen-tts`` and give audio sooner, and a comparison is only
fair when both run the same weights, the same text, the same number of frames, in the same process, under the
same thread count. So this script, for each released shape (0.6B, 1.7B CustomVoice):

1. writes a complete released-layout folder with random weights (``write_random_release``) whose EOS row is
   zeroed (``eos_scale=0``): EOS never wins, so every call generates exactly ``--frames`` frames on both sides;
2. loads that folder with ``qtts.Synthesizer.from_pretrained`` and with qwen-tts's
   ``Qwen3TTSModel.from_pretrained``: the same weights on both sides;
3. for each batch size, after one warm-up call per side, times in ``--repeats`` rounds, alternating which side
   goes first (A B, then B A, …) so that load from other processes hits both alike:

   * qtts offline: ``custom_voice(texts, stream=False)`` → waveforms; RTF = wall / audio seconds;
   * qtts streaming: ``custom_voice(texts, stream=True, packet_frames=4)``; first packet = time from the call to
     the first yielded chunk (prefill + 4 frames + decode of 4 frames); streaming RTF = time to exhaust it;
   * qwen-tts: ``generate_custom_voice(texts, max_new_tokens=frames + 1)`` (its last sampled token never gets its
     residual codes, so N + 1 gives N frames) → RTF. qwen-tts has no streaming output: its first audio exists only
     when the whole utterance is generated and decoded, so its first-packet latency *is* its total time.

   Sampling as the released generation config (``generation_config.json``: do_sample, top-k 50, temperature 0.9,
   repetition penalty 1.05, sub-talker sampling), ``seed=0`` for qtts, ``torch.manual_seed(0)`` before each
   qwen-tts call. Every output's length is checked: frames × 1920 samples per item on both sides.
4. frees both models before loading the next shape (1.7B fp32 is ~7.5 GB per copy).

For batch B > 1 the RTF is a throughput RTF: wall / (B × audio seconds of one item).

On CUDA, qtts generates with static KV caches and CUDA graphs (``Synthesizer(cuda_graphs=…)``) unless
``--no-graphs``; the first call of each batch size captures them (its warm-up call).

Usage: .venv/bin/python -u benchmarks/inference.py [--shapes 0.6b,1.7b --batches 1,4 --frames 25 --repeats 2
       --threads 2 --dtype float32 --device cpu --cache-dir DIR --profile --no-graphs]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import inspect
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from qtts.inference import Synthesizer
from qtts.models.random_release import write_random_release
from qtts.models.talker import released_0_6b, released_1_7b

SAMPLE_RATE = 24_000
HOP = 1920  # samples per frame (12.5 Hz)
PACKET_FRAMES = 4
SPEAKER, LANGUAGE = "serena", "english"
TEXT = "The quick brown fox jumps over the lazy dog, then runs home before the evening rain begins to fall."
SHAPES = {"0.6b": released_0_6b, "1.7b": released_1_7b}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="0.6b,1.7b", help="comma-separated: 0.6b, 1.7b")
    parser.add_argument("--batches", default="1,4", help="comma-separated batch sizes (same text in every row)")
    parser.add_argument("--frames", type=int, default=25, help="frames generated per item (12.5 per audio second)")
    parser.add_argument("--warmup-frames", type=int, default=8, help="frames of the warm-up calls")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per side (median shown)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (both sides run there)")
    parser.add_argument("--cache-dir", default=None,
                        help="keep the random model folders here and reuse them (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0, help="weights seed and sampling seed")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile one qtts offline call (first shape, batch 1) and print where time goes")
    parser.add_argument("--skip-qwen", action="store_true", help="time qtts only (e.g. while profiling)")
    parser.add_argument("--graphs", action=argparse.BooleanOptionalAction, default=True,
                        help="qtts on CUDA: static KV caches and CUDA graphs (default on; ignored on CPU)")
    return parser.parse_args()


# --- model folders and loading -------------------------------------------------------------------------------

def model_folder(root: Path, shape: str, seed: int) -> Path:
    """The random released-layout folder of ``shape`` under ``root``, written unless already complete."""
    folder = root / f"{shape}-custom_voice-seed{seed}-eos0"
    done = folder / ".complete"
    if not done.is_file():
        start = time.perf_counter()
        print(f"writing random {shape} folder to {folder} …", file=sys.stderr, flush=True)
        write_random_release(folder, SHAPES[shape]("custom_voice"), seed=seed, eos_scale=0)
        done.write_text("ok\n")
        print(f"  written in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return folder


def load_qtts(folder: Path, device: str, dtype: torch.dtype, graphs: bool = True) -> Synthesizer:
    return Synthesizer.from_pretrained(folder, device=device, dtype=dtype, cuda_graphs=graphs)


def load_qwen(folder: Path, device: str, dtype: torch.dtype):
    from qwen_tts import Qwen3TTSModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Qwen3TTSModel.from_pretrained(str(folder), dtype=dtype, device_map=device)
    model.model.eval()
    return model


# --- one function per measured call ------------------------------------------------------------------------
# Each returns the per-item audio lengths (samples) so every timed output is checked.

def qtts_offline(ours: Synthesizer, texts: list[str], frames: int, seed: int) -> list[int]:
    wavs = ours.custom_voice(texts, speaker=SPEAKER, language=LANGUAGE, max_new_tokens=frames, stream=False,
                             seed=seed)
    return [len(w) for w in wavs]


def qtts_stream(ours: Synthesizer, texts: list[str], frames: int, seed: int) -> tuple[list[int], float]:
    """Exhausts the packet iterator; returns (lengths, seconds from the call to the first yielded packet)."""
    start = time.perf_counter()
    packets = ours.custom_voice(texts, speaker=SPEAKER, language=LANGUAGE, max_new_tokens=frames, stream=True,
                                packet_frames=PACKET_FRAMES, seed=seed)
    lengths = [0] * len(texts)
    first = None
    for packet in packets:  # chunks are already on the CPU: the device has finished them
        if first is None:
            first = time.perf_counter() - start
        for i, chunk in enumerate(packet):
            lengths[i] += len(chunk)
    return lengths, first


def qwen_generate(theirs, texts: list[str], frames: int, seed: int) -> list[int]:
    torch.manual_seed(seed)
    wavs, sr = theirs.generate_custom_voice(texts, speaker=[SPEAKER] * len(texts), language=[LANGUAGE] * len(texts),
                                            max_new_tokens=frames + 1)
    assert sr == SAMPLE_RATE, sr
    return [len(w) for w in wavs]


# --- timing --------------------------------------------------------------------------------------------------

@dataclass
class Timings:
    """Wall seconds per (shape, batch, metric)."""

    runs: dict[tuple[str, int, str], list[float]] = field(default_factory=dict)

    def add(self, key: tuple[str, int, str], seconds: float) -> None:
        self.runs.setdefault(key, []).append(seconds)

    def median(self, key) -> float | None:
        values = self.runs.get(key)
        return statistics.median(values) if values else None

    def spread(self, key) -> str:
        values = self.runs.get(key)
        return f"{min(values):.3f}–{max(values):.3f}" if values else "—"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def check_lengths(side: str, lengths: list[int], frames: int) -> None:
    expected = frames * HOP
    if any(n != expected for n in lengths):
        raise AssertionError(f"{side}: output lengths {lengths}, expected {expected} samples ({frames} frames) each")


def timed(device, fn):
    """(fn(), wall seconds), with the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - start


def run_qtts(ours, texts, frames, seed, device, timings: Timings | None, key) -> None:
    lengths, wall = timed(device, lambda: qtts_offline(ours, texts, frames, seed))
    check_lengths("qtts offline", lengths, frames)
    (lengths, first), stream_wall = timed(device, lambda: qtts_stream(ours, texts, frames, seed))
    check_lengths("qtts stream", lengths, frames)
    if timings is not None:
        timings.add((*key, "qtts offline"), wall)
        timings.add((*key, "qtts first"), first)
        timings.add((*key, "qtts stream"), stream_wall)


def run_qwen(theirs, texts, frames, seed, device, timings: Timings | None, key) -> None:
    lengths, wall = timed(device, lambda: qwen_generate(theirs, texts, frames, seed))
    check_lengths("qwen-tts", lengths, frames)
    if timings is not None:
        timings.add((*key, "qwen-tts"), wall)


def measure(timings: Timings, shape: str, batch: int, ours, theirs, args) -> None:
    """One warm-up per side, then ``repeats`` rounds alternating which side goes first."""
    texts = [TEXT] * batch
    key = (shape, batch)
    print(f"timing {shape} batch {batch} …", file=sys.stderr, flush=True)
    run_qtts(ours, texts, args.warmup_frames, args.seed, args.device, None, key)
    if theirs is not None:
        run_qwen(theirs, texts, args.warmup_frames, args.seed, args.device, None, key)
    for r in range(args.repeats):
        order = [run_qtts, run_qwen] if theirs is not None else [run_qtts]
        for fn in order if r % 2 == 0 else order[::-1]:
            model = ours if fn is run_qtts else theirs
            fn(model, texts, args.frames, args.seed, args.device, timings, key)
            side = "qtts" if fn is run_qtts else "qwen-tts"
            print(f"  round {r + 1}: {side} done", file=sys.stderr, flush=True)


# --- profile -------------------------------------------------------------------------------------------------

def profile_parts() -> list[tuple[str, object]]:
    """(label, function) whose cumulative time the profile reports."""
    from qtts.inference.sampling import CodeSampler
    from qtts.models.codec import SpeechTokenizer
    from qtts.models.talker import CodePredictor, Talker

    return [
        ("prefill (text → embeddings)", Synthesizer._prefill),
        ("talker forward (prefill + 1 step/frame)", Talker.forward),
        ("code predictor (15 groups/frame, incl. sampling)", Talker.predict_codes),
        ("  of which predictor transformer", CodePredictor.forward),
        ("  of which residual sampling", CodeSampler.residual),
        ("group-0 sampling", CodeSampler.first),
        ("frame embedding (next talker input)", Talker.embed_frame),
        ("codec decode (whole utterance)", SpeechTokenizer.decode),
    ]


def profile_qtts(ours: Synthesizer, frames: int, seed: int) -> None:
    """cProfile of one qtts offline call, batch 1: cumulative time per part, and the Python-side share."""
    texts = [TEXT]
    qtts_offline(ours, texts, frames, seed)  # warm
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    qtts_offline(ours, texts, frames, seed)
    profiler.disable()
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats  # (file, line, name) → (calls, prim calls, tottime, cumtime, callers)
    total = sum(tt for _, _, tt, _, _ in stats.values())
    print(f"\nprofile: one qtts offline call, batch 1, {frames} frames: {wall:.3f} s wall under cProfile "
          f"(profiling adds Python overhead; shares are of the profiled total {total:.3f} s)")
    for label, function in profile_parts():
        code = inspect.unwrap(function).__code__
        entry = stats.get((code.co_filename, code.co_firstlineno, code.co_name))
        if entry:
            print(f"  {label:50s} {entry[3]:8.3f} s  {entry[3] / total:6.1%}  ({entry[1]} calls)")
    builtin = {k: v for k, v in stats.items() if k[0] == "~"}
    in_builtin = sum(v[2] for v in builtin.values())
    print(f"  {'time inside C/C++ calls (torch ops, builtins)':50s} {in_builtin:8.3f} s  {in_builtin / total:6.1%}")
    print(f"  {'Python-level time (interpreter, module dispatch)':50s} {total - in_builtin:8.3f} s  "
          f"{(total - in_builtin) / total:6.1%}")
    print("  top C/C++ calls by own time:")
    for (_, _, name), v in sorted(builtin.items(), key=lambda kv: -kv[1][2])[:12]:
        print(f"    {name[:70]:70s} {v[2]:7.3f} s  {v[2] / total:6.1%}  ({v[0]} calls)")


# --- report --------------------------------------------------------------------------------------------------

def format_table(timings: Timings, shapes: list[str], batches: list[int], audio: float) -> str:
    """Rows per (shape, batch); ratios = qwen-tts time / qtts time (> 1: qtts faster)."""
    rows = [("shape", "batch", "qtts RTF", "qwen-tts RTF", "qwen/qtts", "qtts stream RTF",
             "qtts first packet", "qwen-tts first packet*", "qwen/qtts")]
    for shape in shapes:
        for batch in batches:
            a = timings.median((shape, batch, "qtts offline"))
            s = timings.median((shape, batch, "qtts stream"))
            f = timings.median((shape, batch, "qtts first"))
            b = timings.median((shape, batch, "qwen-tts"))
            if a is None:
                continue
            items = batch * audio
            rows.append((shape, str(batch), f"{a / items:.3f} ({a:.2f} s)",
                         f"{b / items:.3f} ({b:.2f} s)" if b else "—", f"{b / a:.2f}" if b else "—",
                         f"{s / items:.3f} ({s:.2f} s)", f"{f:.3f} s",
                         f"{b:.3f} s" if b else "—", f"{b / f:.2f}" if b else "—"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"torch {torch.__version__}"]
    for name in ("qwen-tts", "transformers"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} not installed")
    return ", ".join(parts)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    shapes = [s.strip().lower() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise SystemExit(f"unknown shape(s) {unknown}; known: {sorted(SHAPES)}")
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    audio = args.frames * HOP / SAMPLE_RATE
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    if args.device.startswith("cuda"):
        where += f", qtts CUDA graphs {'on' if args.graphs else 'off'}"
    print(f"{versions()}; {where}, {torch.get_num_threads()} threads, {args.dtype}; {args.frames} frames = "
          f"{audio:g} s audio per item, packets of {PACKET_FRAMES} frames; {args.repeats} repeats after 1 warm-up "
          f"({args.warmup_frames} frames) per side, qtts and qwen-tts alternated; text: {TEXT!r}", flush=True)

    tmp = None
    if args.cache_dir:
        root = Path(args.cache_dir)
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="qtts-inference-bench-")
        root = Path(tmp.name)
    timings = Timings()
    profiled = False
    try:
        for shape in shapes:
            folder = model_folder(root, shape, args.seed)
            start = time.perf_counter()
            ours = load_qtts(folder, args.device, dtype, args.graphs)
            theirs = None if args.skip_qwen else load_qwen(folder, args.device, dtype)
            attn = getattr(theirs.model.config, "_attn_implementation", "?") if theirs is not None else "—"
            params = sum(p.numel() for p in ours.model.parameters()) / 1e9
            print(f"{shape}: loaded both in {time.perf_counter() - start:.1f} s ({params:.2f} G talker-model "
                  f"params; qwen-tts attention: {attn})", flush=True)
            with torch.inference_mode():
                if args.profile and not profiled:
                    profile_qtts(ours, args.frames, args.seed)
                    profiled = True
                for batch in batches:
                    measure(timings, shape, batch, ours, theirs, args)
            del ours, theirs
            gc.collect()
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    finally:
        if tmp is not None:
            tmp.cleanup()

    print(f"\ncheck: every timed output had {args.frames} × {HOP} = {args.frames * HOP} samples per item on both "
          f"sides\n")
    print(format_table(timings, shapes, batches, audio))
    print(f"\nRTF = wall seconds / audio seconds (< 1: faster than real time); for batch > 1, wall / (batch × "
          f"{audio:g} s) (throughput). qwen/qtts = qwen-tts time / qtts time (> 1: qtts faster).\n"
          f"qtts first packet: call → first {PACKET_FRAMES}-frame audio chunk (prefill, {PACKET_FRAMES} frames, "
          f"their decode).\n* qwen-tts has no streaming output: its first audio is the whole utterance, so its "
          f"first-packet latency is its total time.")
    print("\nmin–max seconds per run:")
    for key in sorted(timings.runs):
        print(f"  {key[0]:5s} batch {key[1]}  {key[2]:13s} {timings.spread(key)}")


if __name__ == "__main__":
    main()
