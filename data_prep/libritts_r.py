"""Import LibriTTS-R (or LibriTTS): ``<root>/<subset>/<spk>/<chapter>/<spk>_<chapter>_<utt>.wav``.

Each wav has ``.normalized.txt`` (numbers and abbreviations written out, what a TTS model should
read) and ``.original.txt``; the normalized text is used, the original only when it is missing.
ROOT may be the corpus folder (all subsets, or those named by ``--subsets``) or one subset folder.
Ids are ``libritts_<file stem>``, speakers ``libritts_<spk>``, language ``en``.

    python -m data_prep.libritts_r LibriTTS_R OUT.jsonl --subsets train-clean-100,train-clean-360
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from data_prep.common import ImportResult, Reject, finish_import, importer_parser, read_text_file, report
from qtts.data.manifest import Utterance

_NAME = re.compile(r"^(?P<speaker>[^_]+)_(?P<chapter>[^_]+)_(?P<utt>.+)$")


def find_text(wav: Path) -> str | None:
    """Normalized transcript, else original, else ``None``; an empty file counts as missing."""
    for kind in ("normalized", "original"):
        path = wav.with_name(f"{wav.stem}.{kind}.txt")
        if path.is_file():
            text = read_text_file(path)
            if text:
                return text
    return None


def import_libritts_r(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    subsets: Sequence[str] | None = None,
    workers: int = 2,
) -> ImportResult:
    root = Path(root).absolute()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    wanted = set(subsets or ())
    candidates, rejects = [], []
    for wav in sorted(root.rglob("*.wav")):
        if wav.name.startswith("."):
            continue
        if wanted and not wanted.intersection(wav.relative_to(root).parts[:-1]) and root.name not in wanted:
            continue
        match = _NAME.match(wav.stem)
        if match is None:
            rejects.append(Reject(str(wav), "bad name: expected <speaker>_<chapter>_<utterance>.wav"))
            continue
        text = find_text(wav)
        if text is None:
            rejects.append(Reject(str(wav), "no transcript: no non-empty .normalized.txt or .original.txt"))
            continue
        parts = wav.relative_to(root).parts
        subset = parts[-4] if len(parts) >= 4 else root.name
        extra = {"subset": subset, "chapter": match["chapter"]}
        candidates.append(Utterance(f"libritts_{wav.stem}", str(wav), text, "en", f"libritts_{match['speaker']}",
                                    extra=extra))
    return finish_import(candidates, rejects, out, workers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = importer_parser(__doc__, "LibriTTS-R folder (containing subsets) or one subset folder")
    parser.add_argument("--subsets", default=None, help="comma-separated subset folders to import (default all)")
    args = parser.parse_args(argv)
    subsets = [s.strip() for s in args.subsets.split(",") if s.strip()] if args.subsets else None
    return report(import_libritts_r(args.root, args.out, subsets, args.workers))


if __name__ == "__main__":
    raise SystemExit(main())
