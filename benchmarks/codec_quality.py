"""Does a trained codec keep speech intelligible? Reconstruction WER of held-out English sentences vs the espeak floor.

Why: a codec's mel loss does not say whether its audio still speaks. This script speaks ``--count`` English
sentences that the built-in corpus never contains (``HELD_OUT`` below; checked against ``data_prep.sentences`` at
run time) with espeak-ng voices of the synthetic corpus, then

1. transcribes the espeak audio itself with the ASR (built-in Whisper tiny.en unless ``--asr``): the **floor**,
   what the ASR gets wrong on perfect input;
2. encodes and decodes each clip with the codec (``SpeechTokenizer.from_pretrained``: a tokenizer folder, a qtts
   ``export/``, or a model folder with ``speech_tokenizer/``) and transcribes the reconstructions;
3. prints both as the Seed-TTS-eval headline (mean per-utterance WER × 100), corpus WER and the count above 50 %,
   and the codebook usage per level over all clips (distinct codes and perplexity, exp of the code entropy).

It exits non-zero (with the reason) when it cannot measure: no codec folder, no espeak-ng, no ASR.

    .venv/bin/python benchmarks/codec_quality.py CODEC [--count 16] [--first-speaker 0] [--out DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from data_prep.sentences import SENTENCES
from data_prep.synthetic import SynthItem, espeak_binary, speaker_voice, synthesize
from qtts.audio.io import load_audio, save_audio
from qtts.eval.asr import open_asr
from qtts.eval.scoring import score_utterance, summarize
from qtts.models.codec import SpeechTokenizer
from qtts.models.codec.vq_training import perplexity

# Everyday English sentences that are not in the corpus bank (data_prep.sentences): the codec never heard them.
HELD_OUT = (
    "Please close the window before you leave the house.",
    "We had pancakes with fresh berries for breakfast.",
    "The library opens at nine on Saturday mornings.",
    "My brother plays the guitar in a small band.",
    "She forgot her umbrella on the bus this morning.",
    "The museum was full of children on a school trip.",
    "Could you tell me the way to the post office?",
    "The soup needs a little more salt and pepper.",
    "Our neighbours painted their front door bright green.",
    "The cat is sleeping in a box by the heater.",
    "He wrote a long letter to his old friend.",
    "The bakery on the corner sells warm bread every day.",
    "They walked along the river until the sun went down.",
    "I need to buy milk, eggs and a loaf of bread.",
    "The doctor said I should drink more water.",
    "It started to snow just as we reached the car.",
    "The teacher read a story to the whole class.",
    "We are planning a trip to the mountains next month.",
    "The phone rang twice, but nobody answered it.",
    "Turn left at the traffic lights and park behind the bank.",
    "My sister bought a new lamp for her desk.",
    "The garden looks lovely after the spring rain.",
    "He always drinks a cup of coffee before work.",
    "The shop closes early on Sunday afternoons.",
)


def held_out_sentences(count: int) -> list[str]:
    """The first ``count`` held-out sentences; fails if any of them is in the corpus bank."""
    if not 0 < count <= len(HELD_OUT):
        raise ValueError(f"--count must be in 1..{len(HELD_OUT)}, got {count}")
    bank = {s.text.strip().lower() for s in SENTENCES["en"]}
    leaked = [s for s in HELD_OUT if s.lower() in bank]
    if leaked:
        raise ValueError(f"held-out sentences are in the training bank data_prep.sentences: {leaked}")
    return list(HELD_OUT[:count])


def speak(sentences: list[str], folder: Path, first_speaker: int) -> list[tuple[str, Path, str]]:
    """espeak-ng wavs of ``sentences``, cycling through English corpus voices from ``first_speaker``:
    ``(id, path, voice)`` each."""
    binary = espeak_binary()
    out = []
    for i, text in enumerate(sentences):
        speaker = first_speaker + i % 6  # the six English espeak voices of the corpus, in turn
        voice = speaker_voice("en", speaker)
        item = SynthItem(f"heldout_{i:02d}", "en", f"en_spk{speaker}", voice, text, text)
        path = folder / f"{item.id}.wav"
        synthesize(item, path, binary)
        out.append((item.id, path, str(voice)))
    return out


def codebook_usage(codes: list[torch.Tensor], codebook_size: int) -> list[dict[str, float]]:
    """Per level over all clips: distinct codes used and the perplexity of the code distribution."""
    stacked = torch.cat(codes)  # (frames, levels)
    rows = []
    for level in range(stacked.shape[1]):
        counts = torch.bincount(stacked[:, level], minlength=codebook_size).float()
        rows.append({"level": level, "distinct": int((counts > 0).sum()), "perplexity": float(perplexity(counts))})
    return rows


def measure(codec_folder: str, count: int = 16, first_speaker: int = 0, asr_path: str | None = None,
            out: Path | None = None) -> dict:
    codec = SpeechTokenizer.from_pretrained(codec_folder).eval()
    asr = open_asr(asr_path)
    sentences = held_out_sentences(count)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out) if out is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        clips = speak(sentences, folder / "espeak", first_speaker)
        sr = codec.sample_rate
        originals = [load_audio(path, sr, mono=True)[0].reshape(-1) for _, path, _ in clips]
        started = time.perf_counter()
        codes = [codec.encode([wav])[0] for wav in originals]
        recons = [codec.decode([c])[0] for c in codes]
        codec_seconds = time.perf_counter() - started
        if out is not None:
            for (uid, _, _), wav in zip(clips, recons):
                save_audio(folder / "reconstructions" / f"{uid}.wav", wav, sr)
        floor_hyps = asr.transcribe_at(originals, sr, "en")
        recon_hyps = asr.transcribe_at(recons, sr, "en")
    rows, floor_scores, recon_scores = [], [], []
    for (uid, _, voice), text, fh, rh in zip(clips, sentences, floor_hyps, recon_hyps):
        f, r = score_utterance(text, fh, "en", uid), score_utterance(text, rh, "en", uid)
        floor_scores.append(f)
        recon_scores.append(r)
        rows.append({"id": uid, "voice": voice, "text": text, "espeak_hyp": fh, "espeak_wer": f.rate,
                     "recon_hyp": rh, "recon_wer": r.rate})
    floor, recon = summarize(floor_scores), summarize(recon_scores)
    return {
        "codec": str(codec_folder), "asr": asr.name, "utterances": len(rows),
        "floor": {"mean_wer_x100": floor.mean_rate_x100, "corpus_wer_x100": floor.corpus_rate_x100,
                  "above_50": floor.above_50},
        "reconstruction": {"mean_wer_x100": recon.mean_rate_x100, "corpus_wer_x100": recon.corpus_rate_x100,
                           "above_50": recon.above_50},
        "codebooks": codebook_usage(codes, codec.config.decoder_config.codebook_size),
        "codec_seconds": codec_seconds, "rows": rows,
    }


def report(result: dict) -> str:
    lines = [f"codec {result['codec']}  ASR {result['asr']}  {result['utterances']} held-out English sentences", ""]
    lines.append(f"{'':16}{'mean WER x100':>15}{'corpus WER x100':>17}{'> 50 %':>8}")
    for name, key in (("espeak (floor)", "floor"), ("reconstruction", "reconstruction")):
        s = result[key]
        lines.append(f"{name:16}{s['mean_wer_x100']:15.1f}{s['corpus_wer_x100']:17.1f}{s['above_50']:8d}")
    lines += ["", "level  distinct  perplexity"]
    lines += [f"{c['level']:5d}{c['distinct']:10d}{c['perplexity']:12.1f}" for c in result["codebooks"]]
    lines += ["", "per utterance (espeak WER / reconstruction WER: reconstruction transcript):"]
    lines += [f"  {r['id']} {r['espeak_wer']:.2f} / {r['recon_wer']:.2f}: {r['recon_hyp']}" for r in result["rows"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("codec", help="speech tokenizer folder (a run's export/, or a model folder)")
    parser.add_argument("--count", type=int, default=16, help=f"held-out sentences, 1..{len(HELD_OUT)} (default 16)")
    parser.add_argument("--first-speaker", type=int, default=0,
                        help="first English corpus speaker index to voice them (default 0: the corpus voices)")
    parser.add_argument("--asr", default=None, help="local Whisper folder (default: built-in tiny.en)")
    parser.add_argument("--out", type=Path, default=None, help="keep the espeak clips and reconstructions here")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = measure(args.codec, args.count, args.first_speaker, args.asr, args.out)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"codec_quality: cannot measure: {e}", file=sys.stderr)
        return 1
    print(report(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
