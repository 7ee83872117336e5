"""Does a trained codec keep speech intelligible? Reconstruction WER on the held-out test set vs the espeak floor.

Why: a codec's mel loss does not say whether its audio still speaks. This script takes the held-out test set
(``data_prep.synthetic --testset``: sentences of ``data_prep.sentences.HELD_OUT``, which no training corpus speaks,
read by espeak-ng corpus voices; made into a temporary folder when ``--testset`` is not given), keeps one language's
rows, and

1. transcribes the espeak audio itself with the ASR (``open_asr``: the built-in Whisper unless ``--asr``): the
   **floor**, what the ASR gets wrong on the codec's input;
2. encodes and decodes each clip with the codec (``SpeechTokenizer.from_pretrained``: a tokenizer folder, a run's
   ``export/``, or a model folder with ``speech_tokenizer/``) and transcribes the reconstructions;
3. prints both by the Seed-TTS-eval rules (mean per-utterance WER × 100, corpus WER, count above 50 %) and the
   codebook usage per level over all clips (distinct codes, and perplexity: exp of the code entropy).

It exits non-zero, naming the reason, when it cannot measure (no codec folder, no espeak-ng, no ASR, no rows).

    .venv/bin/python benchmarks/codec_quality.py CODEC [--testset TESTSET/testset.jsonl] [--language en]
        [--asr PATH] [--out DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from data_prep.synthetic import generate_testset
from qtts.audio.io import load_audio, save_audio
from qtts.data.manifest import read_manifest
from qtts.eval.asr import open_asr
from qtts.eval.scoring import score_utterance, summarize
from qtts.models.codec import SpeechTokenizer
from qtts.models.codec.vq_training import perplexity


def codebook_usage(codes: list[torch.Tensor], codebook_size: int) -> list[dict[str, float]]:
    """Per level over all clips' codes (frames, levels): distinct codes used and the perplexity of their
    distribution."""
    stacked = torch.cat(codes)
    rows = []
    for level in range(stacked.shape[1]):
        counts = torch.bincount(stacked[:, level], minlength=codebook_size).float()
        rows.append({"level": level, "distinct": int((counts > 0).sum()), "perplexity": float(perplexity(counts))})
    return rows


def measure(codec_folder: str | Path, testset: str | Path, language: str = "en", asr_path: str | None = None,
            out: Path | None = None) -> dict:
    codec = SpeechTokenizer.from_pretrained(codec_folder).eval()
    rows = [r for r in read_manifest(testset) if r.language == language]
    if not rows:
        raise ValueError(f"{testset}: no rows in language {language!r}")
    asr = open_asr(asr_path)
    sr = codec.sample_rate
    originals = [load_audio(r.audio, sr, mono=True)[0].reshape(-1) for r in rows]
    started = time.perf_counter()
    codes = [codec.encode([wav])[0] for wav in originals]
    recons = [codec.decode([c])[0] for c in codes]
    codec_seconds = time.perf_counter() - started
    if out is not None:
        for row, wav in zip(rows, recons):
            save_audio(Path(out) / f"{row.id}.wav", wav, sr)
    floor_hyps = asr.transcribe_at(originals, sr, language)
    recon_hyps = asr.transcribe_at(recons, sr, language)
    per_row, floor_scores, recon_scores = [], [], []
    for row, fh, rh in zip(rows, floor_hyps, recon_hyps):
        f, r = score_utterance(row.text, fh, language, row.id), score_utterance(row.text, rh, language, row.id)
        floor_scores.append(f)
        recon_scores.append(r)
        per_row.append({"id": row.id, "text": row.text, "espeak_hyp": fh, "espeak_wer": f.rate, "recon_hyp": rh,
                        "recon_wer": r.rate})
    floor, recon = summarize(floor_scores), summarize(recon_scores)
    return {
        "codec": str(codec_folder), "asr": asr.name, "language": language, "utterances": len(rows),
        "floor": {"mean_wer_x100": floor.mean_rate_x100, "corpus_wer_x100": floor.corpus_rate_x100,
                  "above_50": floor.above_50},
        "reconstruction": {"mean_wer_x100": recon.mean_rate_x100, "corpus_wer_x100": recon.corpus_rate_x100,
                           "above_50": recon.above_50},
        "codebooks": codebook_usage(codes, codec.config.decoder_config.codebook_size),
        "audio_seconds": sum(len(w) for w in originals) / sr, "codec_seconds": codec_seconds, "rows": per_row,
    }


def report(result: dict) -> str:
    lines = [f"codec {result['codec']}", f"ASR {result['asr']}",
             f"{result['utterances']} held-out {result['language']} sentences, {result['audio_seconds']:.1f} s", ""]
    lines.append(f"{'':16}{'mean WER x100':>15}{'corpus WER x100':>17}{'> 50 %':>8}")
    for name, key in (("espeak (floor)", "floor"), ("reconstruction", "reconstruction")):
        s = result[key]
        lines.append(f"{name:16}{s['mean_wer_x100']:15.2f}{s['corpus_wer_x100']:17.2f}{s['above_50']:8d}")
    lines += ["", "level  distinct  perplexity"]
    lines += [f"{c['level']:5d}{c['distinct']:10d}{c['perplexity']:12.1f}" for c in result["codebooks"]]
    lines += ["", "per utterance (espeak WER / reconstruction WER: reconstruction transcript):"]
    lines += [f"  {r['id']} {r['espeak_wer']:.2f} / {r['recon_wer']:.2f}: {r['recon_hyp'][:100]}"
              for r in result["rows"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("codec", help="speech tokenizer folder (a run's export/, or a model folder)")
    parser.add_argument("--testset", type=Path, default=None,
                        help="test-set JSONL (default: the held-out set of data_prep.synthetic, made in a temp folder)")
    parser.add_argument("--language", default="en", help="rows of this language (default en)")
    parser.add_argument("--asr", default=None, help="local Whisper folder (default: the built-in one)")
    parser.add_argument("--out", type=Path, default=None, help="write the reconstructions here")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            testset = args.testset or generate_testset(Path(tmp) / "testset", languages=[args.language])
            result = measure(args.codec, testset, args.language, args.asr, args.out)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"codec_quality: cannot measure: {e}", file=sys.stderr)
        return 1
    print(report(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
