"""Test sets for evaluation, in either of the two formats in use, read into one list of typed items.

* A qtts manifest (JSONL; ``qtts.data.manifest``'s field names): ``id, text, language`` and, as an item needs them,
  ``audio`` (the recording to score: ground truth, or a system's output), ``speaker`` (a custom voice),
  ``ref_audio`` + ``ref_text`` (the prompt of a cloned voice) and ``instruct`` (a designed voice). Unlike a training
  manifest, ``audio`` and ``speaker`` may be absent: a TTS test set needs only the text and a voice.
* A Seed-TTS-eval list (BytedanceSpeech/seed-tts-eval): ``meta.lst`` lines ``utt|prompt_text|prompt_wav|target_text``
  with an optional fifth field ``gt_wav`` (the recording of the target text). The list has no language column: the
  language is given, or is the name of the list's folder (``en/meta.lst``) when that is a language code.

Relative paths resolve against the file's folder. A bad row raises a ``ManifestError`` naming the file, the line and
the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from qtts.data.manifest import ManifestError, iter_raw_rows, resolve_path, seconds_field, string_field
from qtts.text.languages import get_language, is_known_language

SEED_TTS_LIST = "meta.lst"


@dataclass(frozen=True)
class TestItem:
    """One utterance to evaluate: the text that should be heard, in ``language``, and how to get or make the audio."""

    __test__ = False  # not a pytest class

    id: str
    text: str
    language: str  # a qtts language code (``en``, ``zh``, …)
    audio: str | None = None  # recording of ``text`` (absolute path), scored by ``qtts eval asr``
    speaker: str | None = None
    ref_audio: str | None = None  # voice-cloning prompt (absolute path)
    ref_text: str | None = None  # its transcript
    instruct: str | None = None
    duration: float | None = None
    start: float | None = None  # seconds into ``audio``: the item is that segment of the recording
    end: float | None = None
    where: str = ""  # ``file:line``, for messages

    def needs_audio(self) -> str:
        """``audio``, or a ValueError naming the item when the test set gives none."""
        if not self.audio:
            raise ValueError(f"{self.where}: item {self.id!r} has no audio to score (field 'audio' / gt_wav)")
        return self.audio


def read_testset(path: str | os.PathLike, language: str | None = None) -> list[TestItem]:
    """The items of a JSONL test set or a Seed-TTS-eval list (``meta.lst``, or a folder holding one).

    ``language`` (a code or name): the only language kept from a JSONL test set, and the language of a Seed-TTS-eval
    list. Ids must be unique."""
    path = Path(path)
    if path.is_dir():
        if not (path / SEED_TTS_LIST).is_file():
            raise FileNotFoundError(f"{path}: a test-set folder must hold a Seed-TTS-eval {SEED_TTS_LIST}")
        path = path / SEED_TTS_LIST
    if not path.is_file():
        raise FileNotFoundError(f"test set {path} does not exist")
    code = get_language(language).code if language is not None else None
    if path.suffix == ".lst":
        items = _read_seed_tts(path, code)
    else:
        items = [item for item in _read_jsonl(path) if code is None or item.language == code]
    seen: dict[str, str] = {}
    for item in items:
        if item.id in seen:
            raise ManifestError(item.where, "id", f"{item.id!r} is used twice (also {seen[item.id]})")
        seen[item.id] = item.where
    if not items:
        raise ValueError(f"{path}: no items" + (f" of language {code!r}" if code else ""))
    return items


def _read_jsonl(path: Path) -> list[TestItem]:
    items = []
    for number, raw in iter_raw_rows(path):
        where = f"{path}:{number}"
        if isinstance(raw, ManifestError):
            raise raw
        if not isinstance(raw, dict):
            raise ManifestError(where, None, f"expected a JSON object, got {type(raw).__name__}")
        fields = {key: string_field(raw, key, where, required=True) for key in ("id", "text", "language")}
        fields |= {key: string_field(raw, key, where) for key in ("audio", "speaker", "ref_audio", "ref_text",
                                                                   "instruct")}
        times = {key: seconds_field(raw, key, where) for key in ("duration", "start", "end")}
        if times["start"] is not None and times["end"] is not None and times["end"] <= times["start"]:
            raise ManifestError(where, "end", f"end {times['end']} is not after start {times['start']}")
        items.append(_item(fields, where, path.parent, **times))
    return items


def _read_seed_tts(path: Path, language: str | None) -> list[TestItem]:
    if language is None:
        folder = path.parent.name
        if not is_known_language(folder):
            raise ValueError(f"{path}: a Seed-TTS-eval list has no language column; give the language (--language), "
                             f"or keep the list in a folder named by its code (en/{SEED_TTS_LIST})")
        language = get_language(folder).code
    items = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            parts = line.rstrip("\r\n").split("|")
            if len(parts) not in (4, 5):
                raise ManifestError(where, None, f"expected utt|prompt_text|prompt_wav|target_text[|gt_wav], got "
                                    f"{len(parts)} fields")
            names = ("id", "ref_text", "ref_audio", "text", "audio")
            fields = {name: value.strip() or None for name, value in zip(names, parts)}
            fields["language"] = language
            items.append(_item(fields, where, path.parent))
    return items


def _item(fields: dict, where: str, base_dir: Path, **times: float | None) -> TestItem:
    for key in ("id", "text"):
        if not (fields.get(key) or "").strip():
            raise ManifestError(where, key, "empty")
    try:
        fields["language"] = get_language(fields["language"]).code
    except KeyError as e:
        raise ManifestError(where, "language", f"unknown language {fields['language']!r}") from e
    if fields.get("ref_text") and not fields.get("ref_audio"):
        raise ManifestError(where, "ref_audio", "missing (ref_text is given, the prompt's audio is not)")
    for key in ("audio", "ref_audio"):
        if fields.get(key):
            fields[key] = resolve_path(fields[key], base_dir)
    return TestItem(**{k: v for k, v in fields.items() if v is not None}, **times, where=where)
