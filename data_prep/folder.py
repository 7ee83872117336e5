"""Import a plain folder of recordings with sidecar transcripts (``a.wav`` + ``a.txt`` or ``a.lab``).

The usual shape of a custom-voice dataset. The speaker is the first folder under ROOT
(``ROOT/alice/take1/a.wav`` -> ``alice``; files directly in ROOT take ROOT's own name) unless
``--speaker`` fixes one; the id is the path under ROOT without suffix, ``/`` replaced by ``_``.
Audio without a transcript (or with an empty one) is reported in the rejects, not fatal.

    python -m data_prep.folder ROOT OUT.jsonl --language en [--speaker NAME]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from data_prep.common import (
    AUDIO_SUFFIXES,
    ImportResult,
    Reject,
    finish_import,
    importer_parser,
    read_text_file,
    report,
)
from qtts.data.manifest import Utterance
from qtts.text.languages import language_from_spec

TRANSCRIPT_SUFFIXES = (".txt", ".lab")


def find_transcript(audio: Path) -> Path | None:
    for suffix in TRANSCRIPT_SUFFIXES:
        candidate = audio.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def import_folder(
    root: str | os.PathLike,
    out: str | os.PathLike | None,
    language: str,
    speaker: str | None = None,
    workers: int = 2,
) -> ImportResult:
    """Rows for every audio file under ``root`` that has a non-empty sidecar transcript."""
    root = Path(root).absolute()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    code = language_from_spec(language).code
    candidates, rejects = [], []
    audio_files = sorted(p for p in root.rglob("*")
                         if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".") and p.is_file())
    for audio in audio_files:
        transcript = find_transcript(audio)
        if transcript is None:
            rejects.append(Reject(str(audio),
                                  f"no transcript: no {' or '.join(TRANSCRIPT_SUFFIXES)} next to the audio"))
            continue
        text = read_text_file(transcript)
        if not text:
            rejects.append(Reject(str(audio), f"empty transcript: {transcript}"))
            continue
        relative = audio.relative_to(root).with_suffix("")
        who = speaker or (relative.parts[0] if len(relative.parts) > 1 else root.name)
        candidates.append(Utterance("_".join(relative.parts), str(audio), text, code, who))
    return finish_import(candidates, rejects, out, workers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = importer_parser(__doc__, "folder of audio files with .txt/.lab transcripts")
    parser.add_argument("--language", required=True,
                        help="language code or name of every file (e.g. en, german), "
                             "or CODE:NAME for a new one (gsw:swissgerman)")
    parser.add_argument("--speaker", default=None, help="one speaker id for all files (default: first subfolder)")
    args = parser.parse_args(argv)
    return report(import_folder(args.root, args.out, args.language, args.speaker, args.workers))


if __name__ == "__main__":
    raise SystemExit(main())
