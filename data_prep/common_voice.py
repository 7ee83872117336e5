"""Import Mozilla Common Voice: ``<root>/<locale>/{validated,train,dev,test}.tsv`` + ``clips/*.mp3``.

ROOT is a release folder holding locale folders, or one locale folder. By default the rows of
``validated.tsv`` (every clip that passed review) are read; ``--splits train,dev`` reads those
files instead (a clip listed twice is imported once). Locales map to our language codes by their
base (``pt``, ``es-ES`` -> ``es``); ``zh-CN``/``zh-TW`` are Mandarin, while ``zh-HK``/``yue``
(Cantonese) and languages we do not know are skipped and reported. Speakers are
``cv_<locale>_<first 12 hex digits of client_id>``; ids are the clip names.

    python -m data_prep.common_voice cv-corpus-17.0/de OUT.jsonl
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from data_prep.common import ImportResult, Reject, clean_text, finish_import, importer_parser, report
from qtts.data.manifest import Utterance
from qtts.text.languages import get_language, is_known_language

SPLITS = ("validated", "train", "dev", "test", "other", "invalidated")
CLIENT_PREFIX = 12  # hex digits of the sha512 client id: unique among millions of speakers
_LOCALES = {"zh-CN": "zh", "zh-TW": "zh", "zh-HK": None, "yue": None}
_REQUIRED_COLUMNS = ("client_id", "path", "sentence")


def locale_language(locale: str) -> str | None:
    """Our language code for a Common Voice locale, ``None`` when we do not train that language."""
    if locale in _LOCALES:
        return _LOCALES[locale]
    base = locale.split("-")[0]
    return get_language(base).code if is_known_language(base) else None


def _is_locale_folder(path: Path) -> bool:
    return (path / "clips").is_dir() or any((path / f"{split}.tsv").is_file() for split in SPLITS)


def read_tsv(path: Path) -> tuple[list[dict[str, str]], str | None]:
    """Rows of a Common Voice tsv (sentences may hold quotes, so no CSV quoting), or an error."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in _REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            return [], f"bad tsv: {path} lacks column(s) {', '.join(missing)}"
        return list(reader), None


def _clip_path(clips: Path, name: str) -> Path:
    path = clips / name
    if not path.suffix and not path.exists() and path.with_suffix(".mp3").exists():
        return path.with_suffix(".mp3")  # the oldest releases list clips without their suffix
    return path


def import_common_voice(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    splits: Sequence[str] = ("validated",),
    locales: Sequence[str] | None = None,
    workers: int = 2,
) -> ImportResult:
    root = Path(root).absolute()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    folders = ([root] if _is_locale_folder(root)
               else sorted(p for p in root.iterdir() if p.is_dir() and _is_locale_folder(p)))
    if locales:
        folders = [f for f in folders if f.name in set(locales)]
    candidates, rejects = [], []
    for folder in folders:
        language = locale_language(folder.name)
        if language is None:
            rejects.append(Reject(str(folder), f"unsupported locale: {folder.name} is not one of our languages"))
            continue
        tsvs = [folder / f"{split}.tsv" for split in splits if (folder / f"{split}.tsv").is_file()]
        if not tsvs:
            rejects.append(Reject(str(folder), f"no tsv: none of {', '.join(s + '.tsv' for s in splits)}"))
            continue
        seen: set[str] = set()
        for tsv in tsvs:
            rows, error = read_tsv(tsv)
            if error:
                rejects.append(Reject(str(tsv), error))
            for number, row in enumerate(rows, start=2):
                name = (row.get("path") or "").strip()
                if not name:
                    rejects.append(Reject(f"{tsv}:{number}", "bad row: empty path"))
                    continue
                if name in seen:  # the same clip in two of the requested tsvs
                    continue
                seen.add(name)
                audio = _clip_path(folder / "clips", name)
                text = clean_text(row.get("sentence") or "")
                if not text:
                    rejects.append(Reject(str(audio), "empty transcript: empty sentence"))
                    continue
                locale = (row.get("locale") or "").strip() or folder.name
                speaker = f"cv_{locale}_{(row.get('client_id') or 'unknown')[:CLIENT_PREFIX]}"
                extra = {k: row[k] for k in ("gender", "age") if (row.get(k) or "").strip()}
                candidates.append(Utterance(Path(name).stem, str(audio), text, language, speaker, extra=extra))
    return finish_import(candidates, rejects, out, workers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = importer_parser(__doc__, "Common Voice release folder (holding locales) or one locale folder")
    parser.add_argument("--splits", default="validated", help="comma-separated tsv names (default: validated)")
    parser.add_argument("--locales", default=None, help="comma-separated locale folders to import (default all)")
    args = parser.parse_args(argv)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    locales = [s.strip() for s in args.locales.split(",") if s.strip()] if args.locales else None
    return report(import_common_voice(args.root, args.out, splits, locales, args.workers))


if __name__ == "__main__":
    raise SystemExit(main())
