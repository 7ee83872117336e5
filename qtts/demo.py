"""The main job on the built-in default: synthetic corpus → validate → Arrow corpus → summary → training.

Everything comes from packages and espeak-ng; nothing is downloaded. Each stage skips work that
is already done, so a second ``make demo`` is quick.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_demo(out: Path, per_speaker: int = 6, train_steps: int = 60, codec_steps: int = 40) -> int:
    import numpy as np

    from data_prep.synthetic import generate_corpus
    from qtts.cli import main as cli
    from qtts.data.extract_codes import open_codes
    from qtts.data.corpus import build_corpus, format_summary, summarize
    from qtts.data.validate import validate_manifest
    from qtts.text.templates import target_ids
    from qtts.text.tokenizer import load_text_tokenizer

    out = Path(out).resolve()
    t0 = time.time()
    _stage("1/6 synthetic multilingual corpus (espeak-ng, 10 languages, 3 voices each)")
    manifest = generate_corpus(out / "synthetic", utterances_per_speaker=per_speaker)

    _stage("2/6 validate")
    report = validate_manifest(manifest, out / "validated")
    print(report.summary())
    if report.clean == 0:
        print("no usable rows", file=sys.stderr)
        return 1

    _stage("3/6 Arrow corpus with tokenized text (built-in Qwen2 BPE)")
    tokenizer = load_text_tokenizer()
    ds = build_corpus(out / "validated" / "clean.jsonl", out / "corpus",
                      encode_text=lambda text: target_ids(tokenizer, text).content)
    print(f"{len(ds)} rows → {out / 'corpus'}")

    _stage("4/6 summary per language and speaker")
    print(format_summary(summarize(ds)))

    if train_steps > 0:
        _stage(f"5/6 speaker-encoder training, {train_steps} steps on CPU (scripts/train.py)")
        if _train("speaker_encoder_demo", out, f"trainer.max_steps={train_steps}"):
            return 1
    if codec_steps > 0:
        _stage(f"6/6 tiny 12 Hz-architecture codec: GAN training ({codec_steps} optimizer steps), export, "
               "code extraction over the corpus, reconstructions")
        if _train("codec_demo", out, f"trainer.max_steps={codec_steps}", "data.crop_seconds=0.5",
                  "data.max_seconds_per_batch=2.0"):
            return 1
        export = max((out / "runs" / "codec_demo").glob("*/export"), key=lambda p: p.stat().st_mtime)
        codes_dir = out / "codes"
        if cli(["data", "extract-codes", str(out / "validated" / "clean.jsonl"), str(export), str(codes_dir),
                "--num-workers", "0", "--no-progress"]):
            return 1
        examples = out / "reconstructions"
        examples.mkdir(parents=True, exist_ok=True)
        rows = open_codes(codes_dir).with_format("numpy").select(range(3))
        for row in rows:
            np.save(examples / f"{row['id']}.npy", row["codes"].astype(np.int64))
        if cli(["codec", "decode", "--model", str(export), "--out", str(examples),
                *(str(examples / f"{row['id']}.npy") for row in rows)]):
            return 1
        print(f"codes (HF dataset) → {codes_dir}; reconstructed examples → {examples}; codec folder → {export}")
    print(f"\ndemo finished in {time.time() - t0:.0f} s; outputs under {out}")
    return 0


def _train(experiment: str, out: Path, *overrides: str) -> int:
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), f"experiment={experiment}",
           f"data.corpus={out / 'corpus'}", f"run_root={out / 'runs'}", "trainer.accelerator=cpu", *overrides]
    return subprocess.run(cmd, cwd=REPO).returncode


def _stage(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)
