"""The chain from text to audio agrees with training: a tiny talker trained by qtts until it memorises 16 utterances
reproduces them from text alone.

The real pipeline, end to end: the built-in espeak-ng corpus (16 whole clips of distinct texts) → codes from a
(random, hence deterministic) 12.5 Hz codec → the talker data module → ``train_experiment`` (TalkerTask) → the run
opened as users open it (``Synthesizer.from_pretrained``) → greedy generation from the text alone, in the layout the
training used (explicit language, no speaker slot, non-streaming: ``data.xvector=false``, ``auto_language_prob=0``,
``streaming_prob=0``). If training and inference disagreed anywhere (prompt layout, positions, EOS, text tokens, the
code predictor's inputs), the greedy codes would drift from the memorised ones. The codec is random, so the audio is
noise and its WER is ~100 %; what is asserted is that the generated audio IS the codec's decoding of the training
codes, hence scores the same WER. Exact recall is the hard part: one wrong residual code changes the talker's next
input, and a memorised map keyed on it then drifts for the rest of the utterance, so every training frame must be
recalled exactly, and EOS must come right after each clip's last frame (``test_talker_agreement.py`` checks the same
agreement on a random model, without memorising).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

STEPS = 500  # every frame of every clip is recalled some steps before the end (QUALITY.md)
# Test-only training settings (the shipped talker_demo stays as it is): every step on all 16 clips (one batch: a
# smooth full-batch descent; mini-batches of 2 stalled short of exact recall), a high rate that decays to a tenth,
# the code predictor's 15 groups weighted up (its residual codes are the last to be recalled), and a wider talker and
# predictor.
MEMORISE = ["data.num_buckets=1", "task.lr=2e-3", "task.warmup_steps=10", "task.min_lr_ratio=0.1",
            "task.predictor_weight=2.0", "task.weight_decay=0.0", "model.talker_hidden=128",
            "model.predictor_hidden=128"]


def sixteen_utterances(root: Path) -> Path:
    """The 16 shortest English corpus clips with distinct texts (of 24 speakers × 4), whole and validated. Distinct
    texts: in this layout (no speaker slot) two clips of one text are the same prompt, which no model can tell apart.
    The shortest: fewer frames make cheaper training steps and fewer codes that must all be recalled exactly."""
    from data_prep.synthetic import generate_corpus
    from qtts.data.validate import validate_manifest

    manifest = generate_corpus(root / "synthetic", utterances_per_speaker=4, languages=["en"], speakers_per_language=24)
    report = validate_manifest(manifest, root / "validated", progress=False)
    assert report.clean == 96, report.summary()
    rows = [json.loads(line) for line in (root / "validated" / "clean.jsonl").read_text().splitlines()]
    chosen: dict[str, dict] = {}
    for row in sorted(rows, key=lambda r: r["duration"]):
        chosen.setdefault(row["text"], row)
    assert len(chosen) >= 16
    path = root / "sixteen.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in list(chosen.values())[:16]))
    return path


@pytest.mark.slow
def test_a_memorising_talker_speaks_its_training_codes_from_text_alone(tmp_path):
    from qtts.data.extract_codes import ExtractConfig, extract_codes, open_codes
    from qtts.eval.asr import open_asr
    from qtts.eval.scoring import score_utterance
    from qtts.inference.synthesizer import Request, Synthesizer
    from qtts.training.run import train_experiment
    from tests.helpers.codec import random_12hz_codec

    codec = random_12hz_codec(tmp_path / "codec", seed=0)
    info = extract_codes(sixteen_utterances(tmp_path), codec, tmp_path / "codes",
                         ExtractConfig(num_workers=0, progress=False))
    assert info["rows"] == 16 and info["rejected"] == 0
    rows = open_codes(tmp_path / "codes")
    run = train_experiment([
        "experiment=talker_demo", f"data.codes={tmp_path / 'codes'}", f"run_root={tmp_path / 'runs'}",
        "trainer.accelerator=cpu", f"trainer.max_steps={STEPS}", "trainer.log_every_n_steps=50",
        "trainer.check_val_every_n_epoch=100000", "trainer.enable_progress_bar=false", "data.num_workers=0",
        "data.max_tokens_per_batch=100000", "data.val_fraction=0.0", f"checkpoint.every_n_steps={STEPS}",
        # the layout: explicit language, no speaker slot, non-streaming (what the generation below builds)
        "data.xvector=false", "data.auto_language_prob=0.0", "data.streaming_prob=0.0",
        "model.tts_model_type=custom_voice", f"task.codec={codec}", "logger=none", *MEMORISE,
    ])

    synth = Synthesizer.from_pretrained(run)  # the run's export/ and its codec, as a user opens it
    requests = [Request(r["text"], language=r["language"]) for r in rows]
    longest = max(r["num_frames"] for r in rows)  # a cap past every clip: a missing EOS shows as a longer output
    generated = synth.generate_codes(requests, do_sample=False, subtalker_dosample=False, repetition_penalty=1.0,
                                     max_new_tokens=longest + 10)
    for row, codes in zip(rows, generated):
        target = torch.as_tensor(row["codes"])
        assert codes.shape == target.shape, (row["id"], codes.shape, target.shape)  # EOS at the right frame
        mismatch = (codes != target).nonzero().tolist()
        assert not mismatch, (row["id"], mismatch[:10])

    audio = synth.decode(generated)
    reference = synth.codec.decode([torch.as_tensor(r["codes"]) for r in rows])
    for row, wav, ref in zip(rows, audio, reference):
        assert wav.shape == ref.shape == (row["num_frames"] * 1920,)
        torch.testing.assert_close(wav, ref.float().cpu(), atol=1e-5, rtol=0)

    asr = open_asr()
    hyps, ref_hyps = asr.transcribe_at(audio, 24000, "en"), asr.transcribe_at(reference, 24000, "en")
    rates = [score_utterance(r["text"], h, "en").rate for r, h in zip(rows, hyps)]
    ref_rates = [score_utterance(r["text"], h, "en").rate for r, h in zip(rows, ref_hyps)]
    assert rates == ref_rates and hyps == ref_hyps
