"""``qtts`` command line: data jobs, the speech codec and the demo (training runs go through ``scripts/train.py``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qtts", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="corpus jobs").add_subparsers(dest="data_command", required=True)
    v = data.add_parser("validate", help="sort a manifest into clean.jsonl and rejects.jsonl (resumable)")
    v.add_argument("manifest")
    v.add_argument("out_dir")
    v.add_argument("--min-duration", type=float, default=0.3)
    v.add_argument("--max-duration", type=float, default=30.0)
    v.add_argument("--min-sample-rate", type=int, default=8000)
    v.add_argument("--max-channels", type=int, default=2)
    v.add_argument("--allow-empty-text", action="store_true", help="for codec corpora without transcripts")
    v.add_argument("--workers", type=int, default=2)
    v.set_defaults(func=_validate)

    b = data.add_parser("build", help="write a clean manifest as an Arrow corpus (text tokenized once)")
    b.add_argument("manifest")
    b.add_argument("out_dir")
    b.add_argument("--tokenizer", default=None, help="model folder with the text tokenizer (default: built-in)")
    b.add_argument("--no-text-ids", action="store_true")
    b.add_argument("--rows-per-shard", type=int, default=50_000)
    b.set_defaults(func=_build)

    x = data.add_parser("extract-codes", help="speech-codec codes of every manifest row as dataset shards "
                        "(resumable; data parallel under `accelerate launch`)")
    x.add_argument("manifest")
    x.add_argument("codec", help="tokenizer folder, or a model folder with speech_tokenizer/")
    x.add_argument("out_dir")
    x.add_argument("--rows-per-shard", type=int, default=10_000)
    x.add_argument("--max-seconds-per-batch", type=float, default=300.0, help="padded audio per encoder call")
    x.add_argument("--min-duration", type=float, default=0.0)
    x.add_argument("--max-duration", type=float, default=None)
    x.add_argument("--num-workers", type=int, default=2, help="audio-decoding workers per process")
    x.add_argument("--device", default=None, help="default: accelerate's device for this process")
    x.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    x.add_argument("--alone", action="store_true",
                   help="encode each clip by itself, unpadded (bit-identical to encoding it alone; slower)")
    x.add_argument("--no-progress", action="store_true")
    x.set_defaults(func=_extract_codes)

    s = data.add_parser("summary", help="utterances, minutes and speakers per language and speaker")
    s.add_argument("corpus", help="corpus folder or manifest")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_summary)

    codec = commands.add_parser("codec", help="12 Hz speech tokenizer")
    codec = codec.add_subparsers(dest="codec_command", required=True)
    e = codec.add_parser("encode", help="audio files (any rate) → <stem>.npy codes, int64 (frames, 16)")
    e.add_argument("inputs", nargs="+", metavar="AUDIO")
    e.set_defaults(func=_codec_encode)
    c = codec.add_parser("decode", help="<stem>.npy codes → <stem>.wav at 24 kHz")
    c.add_argument("inputs", nargs="+", metavar="CODES.npy")
    c.set_defaults(func=_codec_decode)
    for p in (e, c):
        p.add_argument("--model", required=True, help="tokenizer folder, or a model folder with speech_tokenizer/")
        p.add_argument("--out", required=True, help="output folder")
        p.add_argument("--device", default="cpu")

    d = commands.add_parser("demo", help="the main job on the built-in synthetic corpus")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--per-speaker", type=int, default=6, help="utterances per synthetic speaker")
    d.add_argument("--train-steps", type=int, default=60, help="speaker-encoder steps (0 skips it)")
    d.add_argument("--codec-steps", type=int, default=40, help="codec optimizer steps (0 skips it)")
    d.set_defaults(func=_demo)

    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def _validate(args: argparse.Namespace) -> int:
    from qtts.data.validate import ValidationConfig, validate_manifest

    cfg = ValidationConfig(min_duration=args.min_duration, max_duration=args.max_duration,
                           min_sample_rate=args.min_sample_rate, max_channels=args.max_channels,
                           require_text=not args.allow_empty_text, workers=args.workers)
    report = validate_manifest(args.manifest, args.out_dir, cfg)
    print(report.summary())
    print(f"wrote {Path(args.out_dir) / 'clean.jsonl'} and {Path(args.out_dir) / 'rejects.jsonl'}")
    if report.clean == 0:
        print("error: no usable row remains", file=sys.stderr)
        return 1
    return 0


def _build(args: argparse.Namespace) -> int:
    from qtts.data.corpus import build_corpus
    from qtts.text.tokenizer import load_text_tokenizer
    from qtts.text.templates import target_ids

    encode = None
    if not args.no_text_ids:
        tokenizer = load_text_tokenizer(args.tokenizer)
        encode = lambda text: target_ids(tokenizer, text).content  # noqa: E731
    ds = build_corpus(args.manifest, args.out_dir, encode_text=encode, rows_per_shard=args.rows_per_shard)
    print(f"wrote {len(ds)} rows to {args.out_dir}")
    return 0


def _extract_codes(args: argparse.Namespace) -> int:
    from qtts.data.extract_codes import ExtractConfig, extract_codes

    cfg = ExtractConfig(rows_per_shard=args.rows_per_shard, max_seconds_per_batch=args.max_seconds_per_batch,
                        min_duration=args.min_duration, max_duration=args.max_duration,
                        num_workers=args.num_workers, device=args.device, dtype=args.dtype, alone=args.alone,
                        progress=not args.no_progress)
    info = extract_codes(args.manifest, args.codec, args.out_dir, cfg)
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"{info['rows']} rows ({info['frames']} frames), {info['rejected']} rejected "
              f"(see {Path(args.out_dir) / 'rejects.jsonl'}); wrote {args.out_dir}")
    if info["rows"] == 0:
        print("error: no row could be encoded", file=sys.stderr)
        return 1
    return 0


def _summary(args: argparse.Namespace) -> int:
    from qtts.data.corpus import format_summary, open_corpus, summarize

    summary = summarize(open_corpus(args.corpus))
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0


def _codec_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from qtts.audio.io import load_audio

    def encode(model, path: Path, out: Path) -> None:
        wav, _ = load_audio(path, sample_rate=model.config.input_sample_rate)
        codes = model.encode([wav[0]])[0].cpu().numpy()
        _write_atomic(out, lambda f: np.save(f, codes))

    return _codec_each(args, ".npy", encode)


def _codec_decode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from qtts.audio.io import save_audio

    def decode(model, path: Path, out: Path) -> None:
        try:
            codes = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise ValueError(f"cannot read codes ({e})") from e
        if codes.dtype.kind not in "iu":
            raise ValueError(f"codes must be integers, got {codes.dtype}")
        wav = model.decode([torch.from_numpy(codes.astype(np.int64))])[0]
        save_audio(out, wav.cpu(), model.sample_rate)

    return _codec_each(args, ".wav", decode)


def _codec_each(args: argparse.Namespace, suffix: str, convert) -> int:
    """Run ``convert`` per input into ``--out/<stem><suffix>``; a failing input is reported and skipped,
    so one bad file costs only itself, and the exit status says whether any failed."""
    from qtts.models.codec import SpeechTokenizer

    try:
        model = SpeechTokenizer.from_pretrained(args.model).to(args.device)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, failed = set(), 0
    for name in args.inputs:
        path, out = Path(name), out_dir / (Path(name).stem + suffix)
        try:
            if out in written:
                raise ValueError(f"another input already wrote {out}")
            if not path.is_file():
                raise FileNotFoundError("file not found")
            convert(model, path, out)
        except (OSError, RuntimeError, ValueError) as e:  # AudioError is a RuntimeError
            failed += 1
            message = str(e) if str(e).startswith(str(path)) else f"{path}: {e}"
            print(f"error: {message}", file=sys.stderr)
            continue
        written.add(out)
        print(f"{path} -> {out}")
    if failed:
        print(f"error: {failed} of {len(args.inputs)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def _demo(args: argparse.Namespace) -> int:
    from qtts.demo import run_demo

    return run_demo(Path(args.out), per_speaker=args.per_speaker, train_steps=args.train_steps,
                    codec_steps=args.codec_steps)


if __name__ == "__main__":
    sys.exit(main())
