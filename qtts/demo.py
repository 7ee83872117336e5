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


def run_demo(out: Path, per_speaker: int = 6, train_steps: int = 60) -> int:
    from data_prep.synthetic import generate_corpus
    from qtts.data.corpus import build_corpus, format_summary, summarize
    from qtts.data.validate import validate_manifest
    from qtts.text.templates import target_ids
    from qtts.text.tokenizer import load_text_tokenizer

    out = Path(out).resolve()
    t0 = time.time()
    _stage("1/5 synthetic multilingual corpus (espeak-ng, 10 languages, 3 voices each)")
    manifest = generate_corpus(out / "synthetic", utterances_per_speaker=per_speaker)

    _stage("2/5 validate")
    report = validate_manifest(manifest, out / "validated")
    print(report.summary())
    if report.clean == 0:
        print("no usable rows", file=sys.stderr)
        return 1

    _stage("3/5 Arrow corpus with tokenized text (built-in Qwen2 BPE)")
    tokenizer = load_text_tokenizer()
    ds = build_corpus(out / "validated" / "clean.jsonl", out / "corpus",
                      encode_text=lambda text: target_ids(tokenizer, text).content)
    print(f"{len(ds)} rows → {out / 'corpus'}")

    _stage("4/5 summary per language and speaker")
    print(format_summary(summarize(ds)))

    if train_steps > 0:
        _stage(f"5/5 speaker-encoder training, {train_steps} steps on CPU (scripts/train.py)")
        cmd = [sys.executable, str(REPO / "scripts" / "train.py"), "experiment=speaker_encoder_demo",
               f"data.corpus={out / 'corpus'}", f"run_root={out / 'runs'}", f"trainer.max_steps={train_steps}",
               "trainer.accelerator=cpu"]
        result = subprocess.run(cmd, cwd=REPO)
        if result.returncode != 0:
            return result.returncode
    print(f"\ndemo finished in {time.time() - t0:.0f} s; outputs under {out}")
    return 0


def _stage(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)
