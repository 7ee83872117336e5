"""Evaluation runs: score existing audio (``evaluate_asr``), a TTS model (``evaluate_tts``) or a codec
(``evaluate_codec``) on a test set, by the Seed-TTS-eval rules, into an output folder:

    OUT/settings.json   what the results were made with (a rerun with other settings is refused)
    OUT/results.jsonl   one row per utterance and system, appended as scored (resumable: done rows are skipped)
    OUT/audio/ID.wav    generated or reconstructed audio (tts, codec; existing files are not made again)
    OUT/report.json, OUT/report.md, OUT/report.png   per language and overall, written atomically at the end

A row holds ``system, id, language, text, hyp, wer`` (a fraction), the edit counts the report is computed from
(``errors, units, unit``), and ``sim`` / ``mos`` / codec metrics when asked. All audio is scored at 16 kHz (the ASR's,
the speaker embedder's and DNSMOS's rate); SIM is the cosine between the embeddings of the scored audio and of the
item's prompt (``ref_audio``; for a codec, the original), full length, as Seed-TTS-eval computes it.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

from qtts.audio.io import audio_info, load_audio, save_audio
from qtts.eval.asr import ASR, ASR_SAMPLE_RATE, open_asr, transcribe_clips
from qtts.eval.plot import plot_report
from qtts.eval.report import build_report, write_report
from qtts.eval.results import ResultsStore
from qtts.eval.scoring import score_utterance
from qtts.eval.similarity import speaker_similarity
from qtts.eval.testset import SEED_TTS_LIST, TestItem, read_testset
from qtts.text.languages import get_language

AUDIO = "audio"  # the folder of generated / reconstructed audio, and the system name of existing audio
Voice = Literal["auto", "clone", "xvector", "speaker", "instruct", "plain"]
AUTO_VOICES = ("clone", "speaker", "instruct", "plain")  # what ``auto`` picks from, in order (never ``xvector``)
CLONES = ("clone", "xvector")  # the voices spoken from the item's prompt audio
# The text layout of a request: the Synthesizer's default per voice (qwen-tts's: interleaved for a clone, all text
# first otherwise), or one for every item, e.g. the layout a talker was trained in.
TextLayout = Literal["default", "streaming", "non_streaming"]
NON_STREAMING = {"default": None, "streaming": False, "non_streaming": True}
Metrics = Callable[[torch.Tensor, torch.Tensor, int], dict[str, float]]


@dataclass(frozen=True)
class Clip:
    """An audio file, or the ``[start, end)`` seconds of it (a manifest row may name a segment of a recording)."""

    path: Path
    start: float | None = None
    end: float | None = None

    @classmethod
    def of(cls, item: TestItem) -> Clip:
        """The item's own recording (``audio``, with its segment)."""
        return cls(Path(item.needs_audio()), item.start, item.end)

    def load(self, sample_rate: int) -> torch.Tensor | None:
        """1-D float32 at ``sample_rate``; None for a whole file without samples (a model that stopped at once)."""
        if self.start is None and self.end is None and audio_info(self.path).frames == 0:
            return None
        return load_audio(self.path, sample_rate, start=self.start, end=self.end)[0][0]


@dataclass(frozen=True)
class Job:
    """Score ``audio`` as ``system``'s rendering of ``item``; SIM against ``sim_reference``, codec metrics against
    ``metric_reference`` (when given and asked for)."""

    item: TestItem
    system: str
    audio: Clip
    sim_reference: Clip | None = None
    metric_reference: Clip | None = None


def _name(obj: Any) -> str | None:
    """What identifies a scorer in the settings: its ``name``, a function's name, else its class."""
    if obj is None:
        return None
    return str(getattr(obj, "name", None) or getattr(obj, "__qualname__", None) or type(obj).__name__)


def _items(testset: str | os.PathLike | Sequence[TestItem], language: str | None) -> list[TestItem]:
    """The test set's items (a list of items is taken as it is: ``language`` filters only a file)."""
    items = list(testset) if not isinstance(testset, (str, os.PathLike)) else read_testset(testset, language)
    if not items:
        raise ValueError("the test set has no items")
    return items


def _prompt(item: TestItem) -> Clip | None:
    """What SIM compares with: the item's prompt audio (whole)."""
    return Clip(Path(item.ref_audio)) if item.ref_audio else None


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def _settings(kind: str, testset, language: str | None, **values) -> dict[str, Any]:
    """What a run's results depend on, spelled one way (a language's code, a test set's file), for the store."""
    if isinstance(testset, (str, os.PathLike)):
        path = Path(testset).resolve()
        where = str(path / SEED_TTS_LIST if path.is_dir() else path)
    else:
        where = "<items>"
    return {"kind": kind, "testset": where, "language": get_language(language).code if language else None, **values}


def _asr(asr: ASR | str | os.PathLike | None, device: str) -> ASR:
    return asr if isinstance(asr, ASR) else open_asr(asr, device=device)


def _check_languages(asr: ASR, items: Sequence[TestItem]) -> None:
    """Fail before any work when the ASR cannot transcribe a language of the test set (an English-only model)."""
    for language in sorted({item.language for item in items}):
        asr.transcribe([], language)


def score_jobs(jobs: Sequence[Job], store: ResultsStore, asr: ASR, speaker_embedder=None, mos=None,
               metrics: Metrics | None = None, metric_rate: int = ASR_SAMPLE_RATE, batch_size: int = 8,
               progress: bool = True) -> int:
    """Score the jobs ``store`` has no row for, ``batch_size`` utterances of one language at a time, appending each
    batch's rows as it is done. Returns the number scored now."""
    _check_batch_size(batch_size)
    todo = sorted((j for j in jobs if not store.done(j.system, j.item.id)), key=lambda j: j.item.language)
    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    batches = [[j for j in b if j.item.language == lang] for b in batches for lang in dict.fromkeys(
        j.item.language for j in b)]
    with tqdm(total=len(todo), unit="utt", desc="score", disable=not progress) as bar:
        for batch in batches:
            store.append(_score_batch(batch, asr, speaker_embedder, mos, metrics, metric_rate))
            bar.update(len(batch))
    return len(todo)


def _score_batch(batch: list[Job], asr: ASR, speaker_embedder, mos, metrics: Metrics | None,
                 metric_rate: int) -> list[dict[str, Any]]:
    language = batch[0].item.language
    wavs = [j.audio.load(ASR_SAMPLE_RATE) for j in batch]
    live = [i for i, w in enumerate(wavs) if w is not None]
    hyps = transcribe_clips(asr, wavs, [language] * len(batch))  # no audio: every reference unit is a deletion
    rows = []
    for job, wav, hyp in zip(batch, wavs, hyps):
        score = score_utterance(job.item.text, hyp, language, item=job.item.id)
        row = {"system": job.system, "id": job.item.id, "language": language, "text": job.item.text, "hyp": hyp,
               "wer": score.rate, "errors": score.errors, "units": score.units, "unit": score.unit,
               "audio": str(job.audio.path)}
        if wav is None:
            row["empty"] = True
        rows.append(row)
    sim_jobs = [i for i in live if batch[i].sim_reference is not None]
    if speaker_embedder is not None and sim_jobs:
        refs = [batch[i].sim_reference.load(ASR_SAMPLE_RATE) for i in sim_jobs]
        for i, sim in zip(sim_jobs, speaker_similarity(speaker_embedder, [wavs[i] for i in sim_jobs], refs)):
            rows[i]["sim"] = float(sim)
    if mos is not None and live:
        for i, scores in zip(live, mos.score([wavs[i] for i in live])):
            rows[i]["mos"] = float(scores["mos"])
    if metrics is not None:
        for i in live:
            if batch[i].metric_reference is not None:
                reference = batch[i].metric_reference.load(metric_rate)
                rendered = batch[i].audio.load(metric_rate)
                values = metrics(reference, rendered, metric_rate).items()
                rows[i].update({k: None if math.isnan(float(v)) else float(v) for k, v in values})  # NaN: undefined
    return rows


def _finish(out: Path, kind: str, store: ResultsStore, systems: dict[str, list[Job]], settings: dict) -> dict:
    rows = {system: store.select(system, [j.item.id for j in jobs]) for system, jobs in systems.items()}
    report = build_report(kind, rows, settings)
    write_report(out, report)
    plot_report(out, report, {s: r for s, r in rows.items() if r})
    return report


def evaluate_asr(testset: str | os.PathLike | Sequence[TestItem], out: str | os.PathLike,
                 asr: ASR | str | os.PathLike | None = None, language: str | None = None, speaker_embedder=None,
                 mos=None, batch_size: int = 8, audio_dir: str | None = None, device: str = "cpu",
                 progress: bool = True) -> dict:
    """Score the audio of a test set (its ``audio`` / ``gt_wav``, or ``audio_dir/ID.wav`` for audio made elsewhere,
    as Seed-TTS-eval's ``cal_wer.sh`` takes it): transcribe with ``asr`` (an ``ASR``, a local model folder, or None
    for the built-in one), SIM against each item's prompt audio with ``speaker_embedder``, MOS with ``mos``. Writes
    ``out/results.jsonl`` (resumable), ``out/report.{json,md,png}``; returns the report."""
    out = Path(out)
    _check_batch_size(batch_size)
    items = _items(testset, language)
    audio = {item.id: Clip(Path(audio_dir) / f"{item.id}.wav") if audio_dir else Clip.of(item) for item in items}
    missing = [f"{item.where} ({audio[item.id].path})" for item in items if not audio[item.id].path.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} audio files missing: " + "; ".join(missing[:5]))
    asr = _asr(asr, device)
    _check_languages(asr, items)
    settings = _settings("asr", testset, language, audio_dir=audio_dir, asr=asr.name, sim=_name(speaker_embedder),
                         mos=_name(mos))
    store = ResultsStore(out, settings)
    jobs = [Job(item, AUDIO, audio[item.id], _prompt(item)) for item in items]
    score_jobs(jobs, store, asr, speaker_embedder, mos, batch_size=batch_size, progress=progress)
    return _finish(out, "asr", store, {AUDIO: jobs}, settings)


# -- TTS ----------------------------------------------------------------------------------------------------------


def choose_voice(item: TestItem, synth, voice: Voice = "auto") -> str:
    """How ``synth`` speaks ``item``: ``clone`` (its prompt audio, in-context with ``ref_text``, else x-vector only),
    ``xvector`` (its prompt audio's x-vector alone, ``ref_text`` unused: a talker trained without in-context
    prompts), ``speaker`` (a named speaker of the model; ``instruct`` steers it), ``instruct`` (a designed voice) or
    ``plain`` (the layout without a speaker slot, as a talker trained without speakers speaks). ``auto`` takes the
    first of clone, speaker, instruct, plain the item has fields for and the model can do, ``plain`` only for an item
    that names no voice at all. A ValueError names the item otherwise."""
    can = {
        "clone": bool(item.ref_audio) and synth.model.speaker_encoder is not None,
        "xvector": bool(item.ref_audio) and synth.model.speaker_encoder is not None,
        "speaker": bool(item.speaker) and item.speaker.lower() in synth.speakers,
        "instruct": bool(item.instruct) and synth.model_type == "voice_design",
        "plain": voice == "plain" or not (item.ref_audio or item.speaker or item.instruct),
    }
    if voice != "auto":
        if not can[voice]:
            raise ValueError(f"{item.where}: item {item.id!r} cannot be spoken with voice={voice!r} by this "
                             f"{synth.model_type!r} model (prompt audio: {bool(item.ref_audio)}, speaker: "
                             f"{item.speaker!r}, instruct: {bool(item.instruct)}; model speakers: {synth.speakers})")
        return voice
    for mode in AUTO_VOICES:
        if can[mode]:
            return mode
    raise ValueError(f"{item.where}: item {item.id!r} names no voice this {synth.model_type!r} model can speak: "
                     f"a prompt (ref_audio) needs a Base model, a speaker one of {synth.speakers}, an instruct a "
                     "VoiceDesign model")


def item_requests(synth, items: Sequence[TestItem], voice: Voice = "auto", text_layout: TextLayout = "default"
                  ) -> list:
    """The ``Synthesizer`` request (``qtts.inference.synthesizer.Request``) that speaks each item in the voice
    :func:`choose_voice` picks, built by ``synth.request`` as the voice methods build theirs: ``clone`` with a voice
    prompt of the item's ``ref_audio`` (in-context with its ``ref_text``, else x-vector only; the prompts are encoded
    in one codec batch per kind), ``xvector`` (the x-vector alone), ``speaker`` (steered by the item's
    ``instruct``), ``instruct`` or ``plain``; in ``text_layout`` (``default``: as the voice methods do). The
    one place test-set items become requests: ``generate_audio``, the held-out evaluation and the rollouts of
    post-training use it. ``synth.decode`` wants the requests' ``prompt`` s with their codes."""
    modes = [choose_voice(item, synth, voice) for item in items]
    prompts: dict[int, Any] = {}
    for in_context in (True, False):
        rows = [i for i, (item, mode) in enumerate(zip(items, modes)) if mode in CLONES
                and (mode == "clone" and bool(item.ref_text)) == in_context]
        if rows:
            made = synth.create_voice_prompt([items[i].ref_audio for i in rows],
                                             [items[i].ref_text for i in rows] if in_context else None,
                                             x_vector_only=not in_context)
            prompts.update(zip(rows, made))
    return [synth.request(item.text, item.language, prompt=prompts.get(i),
                          speaker=item.speaker if mode == "speaker" else None,
                          instruct=item.instruct if mode in ("speaker", "instruct") else None,
                          non_streaming_mode=NON_STREAMING[text_layout])
            for i, (item, mode) in enumerate(zip(items, modes))]


def _batch_seed(seed: int, ids: Sequence[str]) -> int:
    """A seed per batch from the run's seed and the batch's ids: a resumed batch samples as it would have."""
    return (seed * 1_000_003 + zlib.crc32("\n".join(ids).encode())) % 2**31


def generate_audio(synth, items: Sequence[TestItem], out_dir: Path, voice: Voice = "auto", batch_size: int = 4,
                   seed: int = 0, sampling: dict | None = None, progress: bool = True,
                   text_layout: TextLayout = "default") -> dict[str, Path]:
    """``out_dir/ID.wav`` for every item, generated in batches of one voice mode (files already there are kept;
    requests by :func:`item_requests`); returns ``{id: path}``."""
    _check_batch_size(batch_size)
    modes = {item.id: choose_voice(item, synth, voice) for item in items}
    paths = {item.id: out_dir / f"{item.id}.wav" for item in items}
    todo = [item for item in items if not paths[item.id].is_file()]
    groups: dict[tuple[str, bool], list[TestItem]] = {}
    for item in todo:
        groups.setdefault((modes[item.id], bool(item.ref_text)), []).append(item)
    with tqdm(total=len(todo), unit="utt", desc="generate", disable=not progress) as bar:
        for (mode, _), group in groups.items():
            for first in range(0, len(group), batch_size):
                batch = group[first:first + batch_size]
                kwargs = dict(sampling or {}, seed=_batch_seed(seed, [i.id for i in batch]))
                requests = item_requests(synth, batch, mode, text_layout)
                wavs = synth.decode(synth.generate_codes(requests, **kwargs), [r.prompt for r in requests])
                for item, wav in zip(batch, wavs):
                    save_audio(paths[item.id], wav, synth.sample_rate)
                bar.update(len(batch))
    return paths


def evaluate_tts(model, testset: str | os.PathLike | Sequence[TestItem], out: str | os.PathLike,
                 asr: ASR | str | os.PathLike | None = None, language: str | None = None, speaker_embedder=None,
                 mos=None, voice: Voice = "auto", text_layout: TextLayout = "default", batch_size: int = 4,
                 seed: int = 0, max_new_tokens: int | None = None, greedy: bool = False, codec: str | None = None,
                 device: str = "cpu", progress: bool = True) -> dict:
    """Generate every item of the test set with ``model`` (a ``Synthesizer`` or anything it opens: a model, run or
    checkpoint folder) into ``out/audio/ID.wav`` — the voice per item by :func:`choose_voice`, batched, seeded per
    batch, existing files kept — then score them as :func:`evaluate_asr` does, SIM against the item's prompt audio.
    ``text_layout`` the text layout of every request (``default``: the voice methods'); ``max_new_tokens`` caps the
    frames per item; ``greedy`` decodes without sampling."""
    from qtts.inference.synthesizer import Synthesizer

    out = Path(out)
    _check_batch_size(batch_size)
    items = _items(testset, language)
    asr = _asr(asr, device)
    _check_languages(asr, items)
    synth = model if isinstance(model, Synthesizer) else Synthesizer.from_pretrained(model, codec=codec, device=device)
    prompts = [f"{item.where} ({item.ref_audio})" for item in items if choose_voice(item, synth, voice) in CLONES
               and not Path(item.ref_audio).is_file()]  # every voice checked before any work
    if prompts:
        raise FileNotFoundError(f"{len(prompts)} prompt audio files (ref_audio) missing: " + "; ".join(prompts[:5]))
    sampling: dict[str, Any] = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    if greedy:
        sampling |= {"do_sample": False, "subtalker_dosample": False}
    settings = _settings("tts", testset, language, model=str(Path(model).resolve()) if isinstance(
        model, (str, os.PathLike)) else f"<{synth.model_type} model>", voice=voice, seed=seed, sampling=sampling,
        asr=asr.name, sim=_name(speaker_embedder), mos=_name(mos), **(
            {} if text_layout == "default" else {"text_layout": text_layout}))  # earlier results stay resumable
    store = ResultsStore(out, settings)
    paths = generate_audio(synth, items, out / AUDIO, voice, batch_size, seed, sampling, progress, text_layout)
    jobs = [Job(item, "generated", Clip(paths[item.id]), _prompt(item)) for item in items]
    score_jobs(jobs, store, asr, speaker_embedder, mos, batch_size=batch_size, progress=progress)
    return _finish(out, "tts", store, {"generated": jobs}, settings)


# -- codec --------------------------------------------------------------------------------------------------------


@torch.inference_mode()
def reconstruct_audio(codec, items: Sequence[TestItem], out_dir: Path, batch_size: int = 8,
                      progress: bool = True) -> dict[str, Path]:
    """``out_dir/ID.wav``: each item's audio encoded and decoded by ``codec`` (a ``SpeechTokenizer``), in batches;
    files already there are kept. Returns ``{id: path}``."""
    _check_batch_size(batch_size)
    paths = {item.id: out_dir / f"{item.id}.wav" for item in items}
    todo = [item for item in items if not paths[item.id].is_file()]
    device = next(codec.parameters()).device
    with tqdm(total=len(todo), unit="utt", desc="codec", disable=not progress) as bar:
        for first in range(0, len(todo), batch_size):
            batch = todo[first:first + batch_size]
            wavs = [Clip.of(i).load(codec.config.input_sample_rate).to(device) for i in batch]
            for item, wav in zip(batch, codec.decode(codec.encode(wavs))):
                save_audio(paths[item.id], wav.float().cpu(), codec.sample_rate)
            bar.update(len(batch))
    return paths


def evaluate_codec(codec, manifest: str | os.PathLike | Sequence[TestItem], out: str | os.PathLike,
                   asr: ASR | str | os.PathLike | None = None, language: str | None = None, speaker_embedder=None,
                   mos=None, metrics: bool | Metrics = True, batch_size: int = 8, device: str = "cpu",
                   progress: bool = True) -> dict:
    """Reconstruct every item's audio with ``codec`` (a ``SpeechTokenizer`` or its folder; a model folder's
    ``speech_tokenizer/``) into ``out/audio/ID.wav`` and score, in one report, the ``reconstruction`` (WER, SIM
    against the original, MOS, and ``metrics(original, reconstruction, rate)`` at the codec's rate) and the
    ``original`` (WER and MOS: the floor the codec is measured against). ``metrics``: True for
    ``qtts.eval.codec_metrics.reconstruction_metrics`` (PESQ-WB/NB, STOI, mel distance, SI-SDR), False for none, or
    a function of its signature."""
    from qtts.models.codec import SpeechTokenizer

    if metrics is True:
        from qtts.eval.codec_metrics import reconstruction_metrics as metrics
    metrics = metrics or None

    out = Path(out)
    _check_batch_size(batch_size)
    items = _items(manifest, language)
    missing = [f"{item.where} ({item.audio})" for item in items if not Path(item.needs_audio()).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} audio files missing: " + "; ".join(missing[:5]))
    asr = _asr(asr, device)
    _check_languages(asr, items)
    model = codec if isinstance(codec, SpeechTokenizer) else SpeechTokenizer.from_pretrained(codec).to(device)
    model.eval()
    settings = _settings("codec", manifest, language, codec=str(Path(codec).resolve()) if isinstance(
        codec, (str, os.PathLike)) else "<codec>", asr=asr.name, sim=_name(speaker_embedder), mos=_name(mos),
        metrics=_name(metrics))
    store = ResultsStore(out, settings)
    paths = reconstruct_audio(model, items, out / AUDIO, batch_size, progress)
    systems = {
        "reconstruction": [Job(item, "reconstruction", Clip(paths[item.id]), Clip.of(item), Clip.of(item))
                           for item in items],
        "original": [Job(item, "original", Clip.of(item)) for item in items],
    }
    for jobs in systems.values():
        score_jobs(jobs, store, asr, speaker_embedder, mos, metrics, model.sample_rate, batch_size, progress)
    return _finish(out, "codec", store, systems, settings)
