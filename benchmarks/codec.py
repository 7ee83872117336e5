"""Speed of the 12 Hz speech tokenizer: qtts vs the official qwen-tts package, side by side.

Why: qtts must be at least as fast as ``qwen-tts`` on every codec path users hit, and a comparison is
only fair when both run the same weights, the same inputs, in the same process, under the same thread
count. So this script

1. builds the released shapes (``CodecConfig()`` defaults) with random weights once — qtts's
   ``SpeechTokenizer``, scaled so activations are O(1) (default init leaves every codeword at zero,
   which would make the codes constant) — and saves it to a temporary folder;
2. loads that folder with ``SpeechTokenizer.from_pretrained`` and with qwen-tts's
   ``Qwen3TTSTokenizer.from_pretrained`` (as qwen-tts users do);
3. checks that both give the same codes and (nearly) the same audio;
4. times, alternating qtts and qwen-tts in every repeat (A B, then B A, …) so that load from other
   processes hits both alike, and reports medians:

   * encode: N seconds of 24 kHz audio → codes, as × real time (audio seconds / wall seconds);
   * decode: those codes → audio, whole sequence, as × real time (qtts: its default decode, equal to
     streaming; qwen-tts: its 300-frame windows, which qtts gives with ``windowed=True``);
   * first-chunk latency: seconds until the first audio of a decode of the first ``--first-frames``
     frames. qtts runs its streaming decoder on a fresh stream; qwen-tts has no streaming decoder, so
     it decodes a sequence of just those frames — the earliest audio it can produce.
   * qtts streaming decode of all frames in ``--first-frames`` chunks (× real time): qwen-tts has
     no equivalent, shown for reference.

Usage: .venv/bin/python benchmarks/codec.py [--seconds 5 --repeats 3 --threads 2 --dtype float32 --device cpu]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import torch

from qtts.models.codec import CodecConfig, SpeechTokenizer
from qtts.models.random_weights import randomize_codec

SAMPLE_RATE = 24_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the audio to encode/decode")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per metric and model (median shown)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--first-frames", type=int, default=1, help="frames in the first streamed chunk")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (both sides run there)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def build_folder(folder: str, seed: int) -> None:
    """Write a released-shape tokenizer with random weights that both packages load."""
    torch.manual_seed(seed)
    model = SpeechTokenizer(CodecConfig())
    randomize_codec(model, seed)
    model.save_pretrained(folder)


def load_models(folder: str, dtype: torch.dtype, device: str):
    """(qtts tokenizer, qwen-tts tokenizer) from the same folder."""
    from qwen_tts.inference.qwen3_tts_tokenizer import Qwen3TTSTokenizer

    ours = SpeechTokenizer.from_pretrained(folder).to(device=device, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = Qwen3TTSTokenizer.from_pretrained(folder, dtype=dtype, device_map=device)
    theirs.model.eval()
    return ours, theirs


def test_audio(seconds: float, seed: int) -> torch.Tensor:
    """Noisy chirp-like signal in [-1, 1]: changing content so the codes vary frame to frame."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wav = 0.4 * torch.sin(2 * math.pi * (200 + 150 * t) * t) + 0.1 * torch.randn(t.shape, generator=gen)
    return wav.clamp(-1, 1)


# --- one function per measured call: each returns its output so the checks use the timed path ---

# Both sides start from CPU audio / codes and end with audio on the CPU, as a user's program does.

def qtts_encode(ours, wav):
    parameter = next(ours.parameters())
    return ours.encode([wav.to(parameter.device, parameter.dtype)])[0].cpu()


def qwen_encode(theirs, wav):
    return theirs.encode(wav.numpy(), sr=SAMPLE_RATE).audio_codes[0].cpu()


def qtts_decode(ours, codes, windowed=False):
    return ours.decode([codes.to(next(ours.parameters()).device)], windowed=windowed)[0].float().cpu()


def qwen_decode(theirs, codes):
    return torch.from_numpy(theirs.decode({"audio_codes": [codes]})[0][0])


def qtts_first_chunk(ours, codes, frames):
    """A fresh stream, fed its first chunk: the time a streaming user waits for the first audio."""
    with ours.decoder.streaming():
        return ours.decoder(codes[:frames].T[None].to(next(ours.parameters()).device))[0, 0].float().cpu()


def qwen_first_chunk(theirs, codes, frames):
    """qwen-tts decodes whole sequences only: its earliest audio is the decode of the first frames alone."""
    return qwen_decode(theirs, codes[:frames])


def qtts_stream(ours, codes, frames):
    chunks = [c.T[None].to(next(ours.parameters()).device) for c in codes.split(frames)]
    return torch.cat([a[0, 0].cpu() for a in ours.decoder.decode_stream(chunks)]).float()


@dataclass
class Timings:
    """Wall seconds per (metric, side)."""

    runs: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, metric: str, side: str, seconds: float) -> None:
        self.runs.setdefault((metric, side), []).append(seconds)

    def median(self, metric: str, side: str) -> float | None:
        values = self.runs.get((metric, side))
        return statistics.median(values) if values else None

    def spread(self, metric: str, side: str) -> str:
        values = self.runs.get((metric, side))
        return f"{min(values):.3f}–{max(values):.3f}" if values else "—"


def timed(fn, *args):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def measure(timings: Timings, metric: str, pair, repeats: int) -> None:
    """Warm both sides once, then ``repeats`` rounds alternating which side goes first."""
    (ours_fn, ours_args), (qwen_fn, qwen_args) = pair
    print(f"timing {metric} …", file=sys.stderr, flush=True)
    ours_fn(*ours_args)
    qwen_fn(*qwen_args)
    for r in range(repeats):
        order = [("qtts", ours_fn, ours_args), ("qwen-tts", qwen_fn, qwen_args)]
        for side, fn, args in order if r % 2 == 0 else order[::-1]:
            timings.add(metric, side, timed(fn, *args)[1])


def check_agreement(ours, theirs, wav, frames) -> tuple[torch.Tensor, list[str]]:
    """Same codes, nearly the same audio; returns the codes and one line per check."""
    codes, ref_codes = qtts_encode(ours, wav), qwen_encode(theirs, wav)
    same = codes.shape == ref_codes.shape and torch.equal(codes, ref_codes)
    mismatch = "" if same else f" ({(codes != ref_codes).float().mean().item():.1%} of codes differ)"
    lines = [f"codes {tuple(codes.shape)} equal: {same}{mismatch}; distinct codes: {codes.unique().numel()}"]
    audio, ref_audio = qtts_decode(ours, codes), qwen_decode(theirs, codes)
    windowed = qtts_decode(ours, codes, windowed=True)
    lines.append(f"decode: {audio.numel()} samples, max |qtts windowed − qwen-tts| = "
                 f"{(windowed - ref_audio).abs().max().item():.2e}, max |qtts default − qwen-tts| = "
                 f"{(audio - ref_audio).abs().max().item():.2e} (differ past 300 frames), "
                 f"clamped samples {(audio.abs() == 1).float().mean().item():.1%}")
    first, ref_first = qtts_first_chunk(ours, codes, frames), qwen_first_chunk(theirs, codes, frames)
    lines.append(f"first chunk ({frames} frame(s)): max |qtts stream − qwen-tts| = "
                 f"{(first - ref_first).abs().max().item():.2e}")
    streamed = qtts_stream(ours, codes, frames)
    lines.append(f"qtts streaming decode vs qtts whole decode: max diff "
                 f"{(streamed - audio[: streamed.numel()]).abs().max().item():.2e} "
                 f"(both carry the full causal context)")
    return codes, lines


def format_table(timings: Timings, seconds: float, decoded: float, frames: int, first_seconds: float) -> str:
    """Rows: metric, qtts, qwen-tts, ratio = qwen-tts time / qtts time (> 1: qtts faster)."""
    rows = [("metric", "qtts", "qwen-tts", "qwen/qtts")]

    def speed_row(label, metric, audio_seconds):
        a, b = timings.median(metric, "qtts"), timings.median(metric, "qwen-tts")
        rows.append((label, f"{audio_seconds / a:.2f}× RT ({a:.3f} s)",
                     f"{audio_seconds / b:.2f}× RT ({b:.3f} s)" if b else "n/a (no streaming decode)",
                     f"{b / a:.2f}" if b else "—"))

    speed_row(f"encode {seconds:g} s", "encode", seconds)
    speed_row(f"decode {decoded:g} s", "decode", decoded)
    a, b = timings.median("first", "qtts"), timings.median("first", "qwen-tts")
    rows.append((f"first audio, {frames} frame(s) = {first_seconds * 1000:.0f} ms",
                 f"{a * 1000:.1f} ms", f"{b * 1000:.1f} ms", f"{b / a:.2f}"))
    speed_row(f"stream decode {decoded:g} s ({frames}-frame chunks)", "stream", decoded)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        build_folder(folder, args.seed)
        ours, theirs = load_models(folder, dtype, args.device)
        print(f"built and loaded both in {time.perf_counter() - start:.1f} s")
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"torch {torch.__version__}, {where}, {torch.get_num_threads()} threads, {args.dtype}, "
          f"{args.seconds:g} s audio, {args.repeats} repeats (after 1 warm-up each), qtts and qwen-tts alternated")

    wav = test_audio(args.seconds, args.seed)
    frames = args.first_frames
    with torch.inference_mode():
        codes, lines = check_agreement(ours, theirs, wav, frames)
        print("\n".join("check: " + line for line in lines), flush=True)
        timings = Timings()
        measure(timings, "encode", ((qtts_encode, (ours, wav)), (qwen_encode, (theirs, wav))), args.repeats)
        measure(timings, "decode", ((qtts_decode, (ours, codes)), (qwen_decode, (theirs, codes))), args.repeats)
        measure(timings, "first", ((qtts_first_chunk, (ours, codes, frames)),
                                   (qwen_first_chunk, (theirs, codes, frames))), args.repeats)
        print("timing stream …", file=sys.stderr, flush=True)
        qtts_stream(ours, codes, frames)  # warm-up
        for _ in range(args.repeats):
            timings.add("stream", "qtts", timed(qtts_stream, ours, codes, frames)[1])

    hop = ours.config.decode_upsample_rate
    print()
    print(format_table(timings, wav.numel() / SAMPLE_RATE, codes.shape[0] * hop / SAMPLE_RATE, frames,
                       frames * hop / SAMPLE_RATE))
    print("\nmin–max seconds per run:")
    for metric, side in sorted(timings.runs):
        print(f"  {metric:7s} {side:9s} {timings.spread(metric, side)}")


if __name__ == "__main__":
    main()
