"""The main job on the built-in default: synthetic corpus → validate → Arrow corpus → summary → trainings (speaker
encoder, 12 Hz codec, talker) → a LoRA custom voice that speaks the ten languages.

Everything comes from packages and espeak-ng; nothing is downloaded. Each stage skips work that is already done (a
training whose run has the same model, task and data settings, reached its steps and wrote its outputs is reused; an
interrupted one continues), so a second ``make demo`` is quick. A training that runs anew (new settings, more steps)
redoes what is built on it: the codes, the talker, the voice and its sentences.
"""

from __future__ import annotations

import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path


def run_demo(out: Path, per_speaker: int = 6, train_steps: int = 60, codec_steps: int = 60,
             talker_steps: int = 80, voice_steps: int = 40, voice: str = "en_spk0", max_new_tokens: int = 40,
             eval_sentences: int = 8) -> int:
    """``train_steps`` (speaker encoder), ``codec_steps``, ``talker_steps`` (pretraining) and ``voice_steps`` (LoRA)
    size the trainings; 0 skips that one and (for the last three) what builds on it. ``voice`` is the corpus speaker
    who becomes the custom voice; ``max_new_tokens`` caps each synthesized sentence (frames of 80 ms).
    ``eval_sentences`` held-out English sentences (0: none) evaluate the codec and the custom voice at the end."""
    from data_prep.synthetic import generate_corpus
    from qtts.data.corpus import build_corpus, format_summary, summarize
    from qtts.data.validate import validate_manifest
    from qtts.text.templates import target_ids
    from qtts.text.tokenizer import load_text_tokenizer

    out = Path(out).resolve()
    times: dict[str, float] = {}
    t0 = time.time()
    with _stage("1/10 synthetic multilingual corpus (espeak-ng, 10 languages, 3 voices each)", times):
        manifest = generate_corpus(out / "synthetic", utterances_per_speaker=per_speaker)

    with _stage("2/10 validate", times):
        report = validate_manifest(manifest, out / "validated")
        print(report.summary())
    if report.clean == 0:
        print("no usable rows", file=sys.stderr)
        return 1

    with _stage("3/10 Arrow corpus with tokenized text (built-in Qwen2 BPE)", times):
        tokenizer = load_text_tokenizer()
        ds = build_corpus(out / "validated" / "clean.jsonl", out / "corpus",
                          encode_text=lambda text: target_ids(tokenizer, text).content)
        print(f"{len(ds)} rows → {out / 'corpus'}")

    with _stage("4/10 summary per language and speaker", times):
        print(format_summary(summarize(ds)))

    if train_steps > 0:
        with _stage(f"5/10 speaker-encoder training, {train_steps} steps on CPU (qtts train, in this process)", times):
            _train("speaker_encoder_demo", out, train_steps, f"data.corpus={out / 'corpus'}", product=None)
    steps = [codec_steps, talker_steps, voice_steps]
    if codec_steps > 0:
        with _stage(f"6/10 tiny 12.5 Hz codec (16 groups of 2048): GAN training ({codec_steps} optimizer steps), "
                    "export, code extraction over the corpus, reconstructions", times):
            codec, stale = _codec_stage(out, codec_steps)
        if codec is None:
            return 1
    if all(s > 0 for s in steps[:2]):
        with _stage(f"7/10 tiny talker pretraining on the corpus's codes, {talker_steps} steps", times):
            _redo(stale, out / "runs" / "talker_demo")
            talker, trained = _train("talker_demo", out, talker_steps, f"data.codes={out / 'codes'}",
                                     f"task.codec={codec}")
            stale |= trained
            print(f"released-layout Base folder → {talker / 'export'}: {_listing(talker / 'export')}")
    if all(s > 0 for s in steps):
        with _stage(f"8/10 custom voice {voice!r}: a codec row named after it (qtts speakers add), LoRA fine-tune on "
                    f"its codes ({voice_steps} steps)", times):
            _redo(stale, out / "base_with_voice", out / "runs" / "custom_voice")
            run, trained = _voice_stage(out, talker / "export", voice, per_speaker, voice_steps)
        stale |= trained
        _redo(stale, out / "custom_voice")
        with _stage(f"9/10 one sentence in each of the ten languages, spoken by {voice!r}", times):
            if not _speak(out / "custom_voice", run, voice, max_new_tokens):
                return 1
    if codec_steps > 0 and eval_sentences > 0:
        _redo(stale, out / "eval")
        with _stage(f"10/10 evaluation on {eval_sentences} held-out English sentences (qtts eval: Whisper base WER, "
                    "Resemblyzer SIM, DNSMOS, PESQ/STOI) against the espeak-ng floor", times):
            _evaluate(out, codec, run if all(s > 0 for s in steps) else None, voice, eval_sentences)
    print("\n" + "\n".join(f"{seconds:7.1f} s  {title}" for title, seconds in times.items()))
    print(f"demo finished in {time.time() - t0:.0f} s; outputs under {out}")
    return 0


def _codec_stage(out: Path, steps: int) -> tuple[Path | None, bool]:
    """Train and export the codec, extract the corpus's codes (``out/codes``), decode three back to audio. Returns
    the export folder (None if a step failed) and whether the codec was trained now (then the codes are new too)."""
    import numpy as np

    from qtts.data.extract_codes import ExtractConfig, extract_codes, open_codes
    from qtts.inference.codec_files import decode_files
    from qtts.models.codec import SpeechTokenizer

    run, trained = _train("codec_demo", out, steps, f"data.corpus={out / 'corpus'}")
    export, codes_dir = run / "export", out / "codes"
    _redo(trained, codes_dir, out / "reconstructions")
    info = extract_codes(out / "validated" / "clean.jsonl", export, codes_dir,
                         ExtractConfig(num_workers=0, progress=False))
    print(f"{info['rows']} rows ({info['frames']} frames), {info['rejected']} rejected")
    if info["rows"] == 0:
        print("no row could be encoded", file=sys.stderr)
        return None, trained
    examples = out / "reconstructions"
    examples.mkdir(parents=True, exist_ok=True)
    rows = open_codes(codes_dir).with_format("numpy").select(range(3))
    for row in rows:
        np.save(examples / f"{row['id']}.npy", row["codes"].astype(np.int64))
    results = decode_files(SpeechTokenizer.from_pretrained(export), [examples / f"{row['id']}.npy" for row in rows],
                           examples)
    for r in results:
        print(f"error: {r.error}" if r.error else f"{r.source} -> {r.out}")
    if any(r.error for r in results):
        return None, trained
    print(f"codes (HF dataset, frames × 16 at 12.5 Hz) → {codes_dir}; reconstructed examples → {examples}; "
          f"codec folder → {export}")
    return export, trained


def _voice_stage(out: Path, base: Path, voice: str, clips: int, steps: int) -> tuple[Path | None, bool]:
    """The Base folder + a codec row named after one corpus speaker (``qtts speakers add --speakers``) → a LoRA run on
    that speaker's codes alone (a ``data.codes`` source with ``speakers: [VOICE]``): its ``adapter/`` and merged
    ``export/``."""
    from qtts.adapters.speakers import add_speakers_from_corpus

    with_voice = out / "base_with_voice"
    if not (with_voice / "config.json").is_file():
        added = add_speakers_from_corpus(base, out / "codes", with_voice, speakers=[voice], max_clips=clips)
        print(f"wrote {with_voice}: " + ", ".join(f"{name} → row {row}" for name, row in sorted(added.items())))
    run, trained = _train("custom_voice", out, steps, f"task.init_from={with_voice}",
                          f"data.codes=[{{path: '{out / 'codes'}', speakers: ['{voice}']}}]", "data.val_fraction=0.0",
                          "trainer.check_val_every_n_epoch=1000", "task.warmup_steps=3", "task.lr=2.0e-3",
                          "trainer.log_every_n_steps=5", product="adapter")
    print(f"LoRA adapter (peft folder) → {run / 'adapter'}: {_listing(run / 'adapter')}\n"
          f"merged model → {run / 'export'}: {_listing(run / 'export')}")
    return run, trained


def _speak(folder: Path, run: Path, voice: str, max_new_tokens: int) -> bool:
    """``<language>.wav`` per language by name with the merged model; then the adapter on the base folder it was
    trained from, which must give the merged model's codes (greedy): False (and the demo fails) when it does not."""
    import torch

    from data_prep.sentences import SENTENCES
    from data_prep.synthetic import LANGUAGES
    from qtts.audio.io import audio_info, save_audio
    from qtts.inference import Synthesizer
    from qtts.inference.synthesizer import Request

    merged = Synthesizer.from_pretrained(run)  # the run's export/ (LoRA merged), its codec
    todo = [lang for lang in LANGUAGES if not (folder / f"{lang}.wav").is_file()]
    if todo:
        texts = [SENTENCES[lang][0].text for lang in todo]
        wavs = merged.custom_voice(texts, speaker=voice, language=todo, max_new_tokens=max_new_tokens, seed=0)
        for lang, wav in zip(todo, wavs):
            save_audio(folder / f"{lang}.wav", wav, merged.sample_rate)
    for lang in LANGUAGES:
        path = folder / f"{lang}.wav"
        print(f"{path}  {audio_info(path).duration:5.2f} s  {SENTENCES[lang][0].text}")

    greedy = dict(do_sample=False, subtalker_dosample=False, max_new_tokens=max_new_tokens)
    request = [Request(SENTENCES["en"][0].text, "en", speaker=voice)]
    base = _settings(run)["task"]["init_from"]  # the Base folder with the voice's row, as trained
    adapted = Synthesizer.from_pretrained(base)
    adapted.load_adapter(run / "adapter", "voice")
    a, b = adapted.generate_codes(request, **greedy)[0], merged.generate_codes(request, **greedy)[0]
    same = a.shape == b.shape and bool(torch.equal(a, b))
    print(f"Synthesizer.load_adapter: base + adapter/ {'gives the same' if same else 'differs from the'} greedy codes "
          f"as the merged export ({len(a)} and {len(b)} frames)", file=sys.stdout if same else sys.stderr)
    return same


def _evaluate(out: Path, codec: Path, voice_run: Path | None, voice: str, sentences: int) -> None:
    """``qtts eval codec`` and ``qtts eval tts`` (the custom voice speaking every sentence by name) on held-out English
    sentences (``data_prep.synthetic.generate_testset``), printed as one table with the espeak-ng originals, the floor
    both are measured against, and written to ``out/eval/summary.md``. Each report folder resumes."""
    import dataclasses
    import math

    from data_prep.synthetic import generate_testset
    from qtts.eval.asr import open_asr
    from qtts.eval.naturalness import open_mos
    from qtts.eval.report import format_comparison
    from qtts.eval.run import evaluate_codec, evaluate_tts
    from qtts.eval.similarity import open_speaker_embedder
    from qtts.eval.testset import read_testset

    items = read_testset(generate_testset(out / "testset", per_language=sentences, languages=["en"]))
    scorers = dict(asr=open_asr(), speaker_embedder=open_speaker_embedder(), mos=open_mos(), progress=False)
    codec_report = evaluate_codec(codec, items, out / "eval" / "codec", **scorers)
    table = {"espeak-ng originals (floor)": codec_report["systems"]["original"]["en"],
             "codec reconstructions": codec_report["systems"]["reconstruction"]["en"]}
    if voice_run is not None:
        # the voice by name; its frames capped at 1.5× the espeak reading, so a talker that misses EOS still ends
        frames = math.ceil(1.5 * 12.5 * max(item.duration or 10.0 for item in items))
        by_name = [dataclasses.replace(item, speaker=voice, ref_audio=None, ref_text=None) for item in items]
        tts = evaluate_tts(voice_run, by_name, out / "eval" / "custom_voice", voice="speaker", max_new_tokens=frames,
                           **scorers)
        table[f"custom voice {voice!r} (talker + LoRA, sampled)"] = tts["systems"]["generated"]["en"]
    summary = format_comparison(table)
    (out / "eval" / "summary.md").write_text(summary, encoding="utf-8")
    print(summary + "SIM: codec reconstruction vs original (none for the voice: its items have no prompt); "
          f"per-utterance results and plots under {out / 'eval'}")


def _train(experiment: str, out: Path, steps: int, *overrides: str,
           product: str | None = "export") -> tuple[Path, bool]:
    """Train ``experiment`` for ``steps`` steps in this process (``qtts.training.run.train_experiment``, the run
    ``scripts/train.py`` makes) → its run folder and whether it trained now. A run under ``out/runs`` with the same
    model, task and data settings that reached ``steps`` and wrote ``product`` is reused; an unfinished one
    continues; runs of other settings (an older demo's) stay as they are, and a new one starts."""
    from qtts.runs import newest_checkpoint
    from qtts.training.run import train_experiment

    root = out / "runs" / experiment
    args = [f"experiment={experiment}", f"run_root={out / 'runs'}", "trainer.accelerator=cpu",
            f"trainer.max_steps={steps}", "data.num_workers=0", *overrides]
    wanted = _settings(args)
    same = [run for run in sorted(root.glob("*")) if (run / "config.yaml").is_file() and _settings(run) == wanted]
    done = [run for run in same if (product is None or (run / product).exists()) and _step(run) >= steps]
    if done:
        print(f"already trained: {done[-1]}")
        return done[-1], False
    unfinished = [ckpt for ckpt in map(newest_checkpoint, same) if ckpt]
    return train_experiment([*args, f"resume={unfinished[-1]}" if unfinished else "resume=null"]), True


def _settings(source: list[str] | Path) -> dict:
    """The model, task and data settings of a run folder's ``config.yaml``, or of the config these overrides compose."""
    from omegaconf import OmegaConf

    from qtts.training.configs import compose_config

    cfg = OmegaConf.load(source / "config.yaml") if isinstance(source, Path) else compose_config(source)
    return {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("model", "task", "data")}


def _redo(stale: bool, *folders: Path) -> None:
    """Remove what an upstream stage that trained anew made out of date."""
    for folder in folders if stale else ():
        if folder.exists():
            print(f"redoing {folder} (built on a training that ran anew)")
            shutil.rmtree(folder)


def _step(run: Path) -> int:
    """The step of a run's ``last.ckpt`` (-1 without one)."""
    from qtts.runs import checkpoint_step

    ckpt = run / "checkpoints" / "last.ckpt"
    return checkpoint_step(ckpt) if ckpt.is_file() else -1


def _listing(folder: Path) -> str:
    return ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()))


@contextmanager
def _stage(title: str, times: dict[str, float]):
    """Prints the stage's title and records its wall time in ``times``."""
    print(f"\n=== {title} ===", flush=True)
    start = time.time()
    try:
        yield
    finally:
        times[title if len(title) <= 70 else title[:67] + "..."] = time.time() - start
