"""Import Emilia: per-language folders (``EN/``, ``ZH/``, possibly with batch subfolders) of
``<id>.json`` + ``<id>.mp3`` pairs; the json holds ``id, wav, text, duration, speaker, language``.

The audio is the mp3 next to the json (else the json's ``wav`` path, relative to the json's
folder or to ROOT). The json's duration is not trusted: the file is measured like in every
importer. Ids are ``emilia_<id>``, speakers ``emilia_<speaker>``; the DNSMOS score, when present,
is kept as ``dnsmos`` so a later step can filter on quality. Extracted folders only: untar the
released ``.tar`` shards first.

    python -m data_prep.emilia Emilia OUT.jsonl --languages zh,en
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_prep.common import AUDIO_SUFFIXES, ImportResult, Reject, clean_text, finish_import, importer_parser, report
from qtts.data.manifest import Utterance
from qtts.text.languages import get_language, is_known_language


def _audio_for(meta_path: Path, meta: dict[str, Any], root: Path) -> Path:
    for suffix in AUDIO_SUFFIXES:
        sibling = meta_path.with_suffix(suffix)
        if sibling.is_file():
            return sibling
    declared = str(meta.get("wav") or "")
    if declared:
        for base in (meta_path.parent, root):
            if (base / declared).is_file():
                return base / declared
    return meta_path.with_suffix(".mp3")  # missing: finish_import rejects it by name


def import_emilia(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    languages: Sequence[str] | None = None,
    workers: int = 2,
) -> ImportResult:
    root = Path(root).absolute()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    wanted = {get_language(lang).code for lang in languages} if languages else None
    candidates, rejects = [], []
    for meta_path in sorted(root.rglob("*.json")):
        if meta_path.name.startswith("."):
            continue
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as err:
            rejects.append(Reject(str(meta_path), f"bad json: {err}"))
            continue
        raw_language = str(meta.get("language") or meta_path.relative_to(root).parts[0])
        if not is_known_language(raw_language):
            rejects.append(Reject(str(meta_path), f"unsupported language: {raw_language!r}"))
            continue
        code = get_language(raw_language).code
        if wanted is not None and code not in wanted:
            continue
        text = clean_text(str(meta.get("text") or ""))
        speaker = str(meta.get("speaker") or "").strip()
        if not text or not speaker:
            rejects.append(Reject(str(meta_path), f"bad json: empty {'text' if not text else 'speaker'}"))
            continue
        utt_id = str(meta.get("id") or meta_path.stem)
        extra = {"dnsmos": meta["dnsmos"]} if isinstance(meta.get("dnsmos"), (int, float)) else {}
        audio = _audio_for(meta_path, meta, root)
        candidates.append(Utterance(f"emilia_{utt_id}", str(audio), text, code, f"emilia_{speaker}", extra=extra))
    return finish_import(candidates, rejects, out, workers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = importer_parser(__doc__, "Emilia folder (language folders of json + mp3 pairs)")
    parser.add_argument("--languages", default=None, help="comma-separated language codes to import (default all)")
    args = parser.parse_args(argv)
    languages = [s.strip() for s in args.languages.split(",") if s.strip()] if args.languages else None
    return report(import_emilia(args.root, args.out, languages, args.workers))


if __name__ == "__main__":
    raise SystemExit(main())
