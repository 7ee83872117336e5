"""A small multilingual speech corpus made with espeak-ng, for demos and tests without downloads.

Every utterance is 1-3 sentences of ``data_prep.sentences`` read by one synthetic speaker: an
espeak voice of the language plus a voice variant, pitch and speed. What an utterance says depends
only on ``(seed, language, speaker, index)``, so asking for more utterances, speakers or languages
adds rows without changing the ones already there, and espeak-ng being deterministic, the same
arguments give byte-identical wavs. Files are written under a temporary name and renamed, so an
interrupted run is resumed by running it again (valid wavs are kept).

``--testset`` writes a held-out test set instead: one sentence of ``data_prep.sentences.HELD_OUT`` (never in a
corpus) per item, read by a corpus speaker, with a voice-cloning prompt (another held-out sentence, same voice). It
is written twice over the same wavs: ``OUT/testset.jsonl`` (a qtts manifest: ``id, audio, text, language, speaker,
ref_audio, ref_text``) and one Seed-TTS-eval folder per language, ``OUT/<lang>/meta.lst`` with ``wavs/`` and
``prompt-wavs/`` beside it (``utt|prompt_text|prompt_wav|target_text|gt_wav``), as BytedanceSpeech/seed-tts-eval
lays out its test sets.

    python -m data_prep.synthetic OUT --per-speaker 4 --languages en,zh,ja
    python -m data_prep.synthetic TESTSET --testset --languages en
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from data_prep.sentences import HELD_OUT, SENTENCES, join_sentences
from qtts.audio.io import AudioError, audio_info
from qtts.data.manifest import Utterance, read_manifest, write_manifest
from qtts.models.checkpoint import atomic_write
from qtts.text.languages import get_language

LANGUAGES = ("zh", "en", "ja", "ko", "de", "fr", "ru", "pt", "es", "it")
ESPEAK_RATE = 22_050
# Bump when the sentence bank or the voice table changes: an old folder then is not resumed into.
CORPUS_VERSION = 1
TESTSET_VERSION = 1  # the same, for the held-out bank and the test-set layout

# espeak-ng voices per language (Mandarin only speaks pinyin through cmn-latn-pinyin).
LANGUAGE_VOICES: dict[str, tuple[str, ...]] = {
    "zh": ("cmn-latn-pinyin",),
    "en": ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc"),
    "ja": ("ja",),
    "ko": ("ko",),
    "de": ("de",),
    "fr": ("fr-fr", "fr-be", "fr-ch"),
    "ru": ("ru", "ru-lv"),
    "pt": ("pt", "pt-br"),
    "es": ("es", "es-419"),
    "it": ("it",),
}
# (variant, pitch 0-99, words per minute): alternating male/female timbres at distinct pitches.
PROFILES: tuple[tuple[str, int, int], ...] = (
    ("m3", 40, 155),
    ("f2", 65, 145),
    ("m1", 28, 135),
    ("f4", 75, 165),
    ("m7", 50, 172),
    ("f5", 58, 140),
)
SENTENCE_COUNTS = (1, 1, 2, 2, 3)  # sentences per utterance, drawn uniformly


@dataclass(frozen=True)
class Voice:
    name: str  # espeak voice with variant, e.g. "en-gb+f2"
    pitch: int
    speed: int

    def args(self) -> list[str]:
        return ["-v", self.name, "-p", str(self.pitch), "-s", str(self.speed)]

    def __str__(self) -> str:
        return f"{self.name} -p {self.pitch} -s {self.speed}"


@dataclass(frozen=True)
class SynthItem:
    id: str
    language: str
    speaker: str
    voice: Voice
    text: str
    spoken: str

    @property
    def relative_path(self) -> str:
        return f"wavs/{self.language}/{self.speaker}/{self.id}.wav"


def speaker_voice(language: str, index: int) -> Voice:
    """The voice of speaker ``index`` of ``language``; fixed, so speaker ids mean the same voice in every run."""
    voices = LANGUAGE_VOICES[language]
    variant, pitch, speed = PROFILES[index % len(PROFILES)]
    cycle = index // len(PROFILES)  # beyond the table, shift pitch and speed so voices stay distinct
    pitch = 20 + (pitch - 20 + 11 * cycle) % 70
    speed = 130 + (speed - 130 + 9 * cycle) % 50
    return Voice(f"{voices[index % len(voices)]}+{variant}", pitch, speed)


def plan_corpus(
    utterances_per_speaker: int = 4,
    languages: Sequence[str] | None = None,
    speakers_per_language: int = 3,
    seed: int = 0,
) -> list[SynthItem]:
    """Everything about the corpus except the audio: ids, speakers, voices and texts."""
    items = []
    for language in normalize_languages(languages):
        bank = SENTENCES[language]
        for s in range(speakers_per_language):
            speaker = f"{language}_spk{s}"
            voice = speaker_voice(language, s)
            for i in range(utterances_per_speaker):
                rng = random.Random(f"{seed}/{language}/{s}/{i}")
                chosen = rng.sample(bank, rng.choice(SENTENCE_COUNTS))
                text, spoken = join_sentences(language, chosen)
                items.append(SynthItem(f"{speaker}_{i:04d}", language, speaker, voice, text, spoken))
    return items


def normalize_languages(languages: Sequence[str] | None) -> list[str]:
    if languages is None:
        return list(LANGUAGES)
    codes = [get_language(lang).code for lang in languages]
    missing = [c for c in codes if c not in SENTENCES]
    if missing:
        raise ValueError(f"no synthetic voice/sentences for {missing}; available: {', '.join(LANGUAGES)}")
    return list(dict.fromkeys(codes))


def espeak_binary() -> str:
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise RuntimeError("espeak-ng not found on PATH (Debian/Ubuntu: apt-get install espeak-ng)")
    return binary


def synthesize(item: SynthItem, path: Path, binary: str = "espeak-ng") -> None:
    """Speak ``item`` into ``path`` (22.05 kHz mono 16-bit wav), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    cmd = [binary, "-b", "1", *item.voice.args(), "-w", str(tmp)]  # -b 1: the text on stdin is UTF-8
    proc = subprocess.run(cmd, input=item.spoken.encode("utf-8"), capture_output=True)
    if proc.returncode != 0 or not is_valid_wav(tmp):
        tmp.unlink(missing_ok=True)
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"espeak-ng failed on {item.id} ({item.voice}; exit {proc.returncode}): {stderr}")
    os.replace(tmp, path)


def is_valid_wav(path: Path) -> bool:
    """A finished espeak wav: decodable header, espeak's rate, mono, some samples, not truncated."""
    if not path.is_file():
        return False
    try:
        info = audio_info(path)
    except AudioError:
        return False
    truncated = getattr(info, "truncated", False)
    return info.sample_rate == ESPEAK_RATE and info.channels == 1 and info.frames > 0 and not truncated


def generate_corpus(
    out_dir: str | os.PathLike,
    utterances_per_speaker: int = 4,
    languages: Sequence[str] | None = None,
    speakers_per_language: int = 3,
    seed: int = 0,
    workers: int = 2,
) -> Path:
    """Write ``out_dir/wavs/<lang>/<speaker>/<id>.wav`` and ``out_dir/manifest.jsonl``; returns the manifest.

    Re-running into the same folder only synthesizes the wavs that are missing or broken; a
    folder made with another seed or an older sentence bank is refused rather than mixed.
    """
    out_dir = Path(out_dir)
    items = plan_corpus(utterances_per_speaker, languages, speakers_per_language, seed)
    _check_stamp(out_dir, seed)
    binary = espeak_binary()
    todo = [item for item in items if not is_valid_wav(out_dir / item.relative_path)]
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # each thread drives one espeak process
            jobs = [pool.submit(synthesize, item, out_dir / item.relative_path, binary) for item in todo]
            for job in tqdm(jobs, desc="espeak-ng", unit="utt"):
                job.result()
    rows = []
    for item in items:
        extra = {"voice": str(item.voice)}
        if item.spoken != item.text:
            extra["spoken"] = item.spoken
        duration = audio_info(out_dir / item.relative_path).duration
        rows.append(Utterance(item.id, item.relative_path, item.text, item.language, item.speaker,
                              round(duration, 4), extra=extra))
    manifest = out_dir / "manifest.jsonl"
    write_manifest(manifest, rows)
    return manifest


@dataclass(frozen=True)
class HeldOutItem:
    """One test-set item: the target (a held-out sentence) and its voice-cloning prompt (another held-out sentence
    read by the same voice). Paths are relative to the test-set folder, in Seed-TTS-eval's per-language layout."""

    target: SynthItem
    prompt: SynthItem

    @property
    def audio_path(self) -> str:
        return f"{self.target.language}/wavs/{self.target.id}.wav"

    @property
    def prompt_path(self) -> str:
        return f"{self.target.language}/prompt-wavs/{self.target.id}.wav"


TEXT_BANKS = {"held_out": HELD_OUT, "corpus": SENTENCES}  # --text: what a test set's sentences are drawn from


def plan_testset(
    per_language: int | None = None,
    languages: Sequence[str] | None = None,
    speakers_per_language: int = 3,
    seed: int = 0,
    text_bank: str = "held_out",
) -> list[HeldOutItem]:
    """The test items: ``per_language`` sentences of each language's ``HELD_OUT`` bank (None: all of them) in a
    seeded order, spread over the corpus's first ``speakers_per_language`` voices. An item depends only on
    ``(seed, language, index, speakers)``, so asking for fewer items keeps the ones that remain unchanged.
    ``text_bank="corpus"`` draws the sentences from the corpus's own bank instead (ids ``<lang>_seen_NNNN``): what a
    model trained on the corpus saw, which tells how well it fits its training text apart from how it generalises."""
    if text_bank not in TEXT_BANKS:
        raise ValueError(f"text_bank must be one of {sorted(TEXT_BANKS)}, got {text_bank!r}")
    items = []
    for language in normalize_languages(languages):
        bank = TEXT_BANKS[text_bank][language]
        count = len(bank) if per_language is None else per_language
        if not 1 <= count <= len(bank):
            raise ValueError(f"{language}: {count} test items asked, the {text_bank.replace('_', '-')} bank has "
                             f"{len(bank)} sentences")
        order = list(range(len(bank)))
        random.Random(f"{seed}/testset/{language}").shuffle(order)
        for k in range(count):
            s = k % speakers_per_language
            speaker, voice = f"{language}_spk{s}", speaker_voice(language, s)
            ident = f"{language}_{'test' if text_bank == 'held_out' else 'seen'}_{k:04d}"
            (text, spoken), (prompt_text, prompt_spoken) = (
                join_sentences(language, [bank[order[j % len(bank)]]]) for j in (k, k + 1))
            prompt = SynthItem(f"{ident}_prompt", language, speaker, voice, prompt_text, prompt_spoken)
            items.append(HeldOutItem(SynthItem(ident, language, speaker, voice, text, spoken), prompt))
    return items


def generate_testset(
    out_dir: str | os.PathLike,
    per_language: int | None = None,
    languages: Sequence[str] | None = None,
    speakers_per_language: int = 3,
    seed: int = 0,
    workers: int = 2,
    text_bank: str = "held_out",
) -> Path:
    """Write the test set (see :func:`plan_testset`) into ``out_dir``: the wavs, ``testset.jsonl`` and a
    Seed-TTS-eval ``<lang>/meta.lst`` per language; returns the JSONL. Resumable like :func:`generate_corpus`."""
    out_dir = Path(out_dir)
    items = plan_testset(per_language, languages, speakers_per_language, seed, text_bank)
    _check_stamp(out_dir, seed, "testset.json", TESTSET_VERSION)
    binary = espeak_binary()
    todo = [(synth, out_dir / path) for item in items
            for synth, path in ((item.target, item.audio_path), (item.prompt, item.prompt_path))
            if not is_valid_wav(out_dir / path)]
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            jobs = [pool.submit(synthesize, synth, path, binary) for synth, path in todo]
            for job in tqdm(jobs, desc="espeak-ng", unit="wav"):
                job.result()
    rows, lists = [], {}
    for item in items:
        target, prompt = item.target, item.prompt
        if "|" in target.text + prompt.text:
            raise ValueError(f"{target.id}: a sentence holds '|', the meta.lst separator")
        extra = {"voice": str(target.voice)}
        if target.spoken != target.text:
            extra["spoken"] = target.spoken
        duration = audio_info(out_dir / item.audio_path).duration
        rows.append(Utterance(target.id, item.audio_path, target.text, target.language, target.speaker,
                              round(duration, 4), ref_audio=item.prompt_path, ref_text=prompt.text, extra=extra))
        lists.setdefault(target.language, []).append(
            f"{target.id}|{prompt.text}|prompt-wavs/{target.id}.wav|{target.text}|wavs/{target.id}.wav\n")
    for language, lines in lists.items():
        meta = out_dir / language / "meta.lst"
        atomic_write(meta, lambda tmp, lines=lines: tmp.write_text("".join(lines), encoding="utf-8"))
    manifest = out_dir / "testset.jsonl"
    write_manifest(manifest, rows)
    return manifest


def _check_stamp(out_dir: Path, seed: int, name: str = "synthetic.json", version: int = CORPUS_VERSION) -> None:
    stamp = out_dir / name
    expected = {"seed": seed, "version": version}
    if stamp.is_file():
        found = json.loads(stamp.read_text())
        if found != expected:
            raise ValueError(f"{out_dir} holds a synthetic corpus made with {found}, not {expected}; "
                             "use another folder (or the same seed)")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(expected) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="output folder (wavs/ and manifest.jsonl; with --testset: "
                        "testset.jsonl and <lang>/meta.lst)")
    parser.add_argument("--per-speaker", type=int, default=4, help="utterances per speaker (default 4)")
    parser.add_argument("--testset", action="store_true",
                        help="write the held-out test set (sentences no corpus uses) instead of a corpus")
    parser.add_argument("--text", choices=sorted(TEXT_BANKS), default="held_out",
                        help="with --testset: the sentences: held_out (never in a corpus; default) or corpus (the "
                             "corpus's own sentences: a trained model's fit to its training text)")
    parser.add_argument("--per-language", type=int, default=None,
                        help="with --testset: items per language (default: every held-out sentence)")
    parser.add_argument("--languages", default=None,
                        help=f"comma-separated codes or names (default all: {','.join(LANGUAGES)})")
    parser.add_argument("--speakers", type=int, default=3, help="speakers per language (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="espeak-ng processes at once (default 2)")
    args = parser.parse_args(argv)
    languages = [lang.strip() for lang in args.languages.split(",") if lang.strip()] if args.languages else None
    if args.testset:
        manifest = generate_testset(args.out, args.per_language, languages, args.speakers, args.seed, args.workers,
                                    args.text)
        count = len(read_manifest(manifest))
        print(f"{count} test items -> {manifest} and {args.out}/<lang>/meta.lst")
        return 0
    manifest = generate_corpus(args.out, args.per_speaker, languages, args.speakers, args.seed, args.workers)
    with open(manifest, encoding="utf-8") as f:
        count = sum(1 for _ in f)
    print(f"{count} utterances -> {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
