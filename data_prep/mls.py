"""Import Multilingual LibriSpeech: ``<root>/mls_<language>/<split>/transcripts.txt`` (lines
``<spk>_<book>_<utt>\\t<text>``) with audio in ``<split>/audio/<spk>/<book>/<id>.flac`` (``.opus``
in the ``mls_<language>_opus`` releases).

ROOT is a folder holding ``mls_*`` folders or one of them. The language comes from the folder name
(``mls_german`` -> ``de``); MLS languages we do not train (Dutch, Polish) are skipped and reported.
Ids are ``mls_<code>_<id>``, speakers ``mls_<code>_<spk>``.

    python -m data_prep.mls /data/mls OUT.jsonl --splits train
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from data_prep.common import ImportResult, Reject, clean_text, finish_import, importer_parser, report
from qtts.data.manifest import Utterance
from qtts.text.languages import get_language, is_known_language

SPLITS = ("train", "dev", "test")
AUDIO_SUFFIXES = (".flac", ".opus")


def folder_language(name: str) -> str | None:
    """``mls_german`` / ``mls_german_opus`` -> ``de``; ``None`` for a language we do not know."""
    base = name.removeprefix("mls_").removesuffix("_opus")
    return get_language(base).code if is_known_language(base) else None


def _find_audio(split_dir: Path, utt_id: str, speaker: str, book: str) -> Path:
    folder = split_dir / "audio" / speaker / book
    for suffix in AUDIO_SUFFIXES:
        path = folder / f"{utt_id}{suffix}"
        if path.is_file():
            return path
    return folder / f"{utt_id}{AUDIO_SUFFIXES[0]}"  # missing: finish_import rejects it by name


def import_mls(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    splits: Sequence[str] = SPLITS,
    workers: int = 2,
) -> ImportResult:
    root = Path(root).absolute()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    folders = [root] if root.name.startswith("mls_") else sorted(p for p in root.glob("mls_*") if p.is_dir())
    candidates, rejects = [], []
    for folder in folders:
        code = folder_language(folder.name)
        if code is None:
            rejects.append(Reject(str(folder), f"unsupported language: {folder.name} is not one of our languages"))
            continue
        for split in splits:
            transcripts = folder / split / "transcripts.txt"
            if not transcripts.is_file():
                continue
            with open(transcripts, encoding="utf-8") as f:
                for number, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    utt_id, _, text = line.rstrip("\n").partition("\t")
                    parts = utt_id.strip().split("_")
                    text = clean_text(text)
                    if len(parts) != 3 or not text:
                        rejects.append(Reject(f"{transcripts}:{number}",
                                              "bad line: expected <spk>_<book>_<utt>\\t<text>"))
                        continue
                    speaker, book, _ = parts
                    audio = _find_audio(folder / split, utt_id.strip(), speaker, book)
                    extra = {"split": split, "book": book}
                    candidates.append(Utterance(f"mls_{code}_{utt_id.strip()}", str(audio), text, code,
                                                f"mls_{code}_{speaker}", extra=extra))
    return finish_import(candidates, rejects, out, workers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = importer_parser(__doc__, "folder holding mls_<language> folders, or one of them")
    parser.add_argument("--splits", default=",".join(SPLITS), help="comma-separated splits (default train,dev,test)")
    args = parser.parse_args(argv)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    return report(import_mls(args.root, args.out, splits, args.workers))


if __name__ == "__main__":
    raise SystemExit(main())
