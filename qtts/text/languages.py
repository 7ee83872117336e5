"""The language registry: the ten released languages, the released dialects, and user additions.

A language is known by a short code (``en``) and by the name the released config uses
(``english``); both are accepted wherever a language is read. ``codec_id`` is its row in the
talker's codec embedding (``codec_language_id`` in the released config). New languages and
dialects are registered from config (``register_language``) and may take a free codec row.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    codec_id: int | None = None
    parent: str | None = None  # a dialect's base language code

    @property
    def is_dialect(self) -> bool:
        return self.parent is not None


RELEASED_LANGUAGES: tuple[Language, ...] = (
    Language("zh", "chinese", 2055),
    Language("en", "english", 2050),
    Language("ja", "japanese", 2058),
    Language("ko", "korean", 2064),
    Language("de", "german", 2053),
    Language("fr", "french", 2061),
    Language("ru", "russian", 2069),
    Language("pt", "portuguese", 2071),
    Language("es", "spanish", 2054),
    Language("it", "italian", 2070),
    Language("zh-beijing", "beijing_dialect", 2074, parent="zh"),
    Language("zh-sichuan", "sichuan_dialect", 2062, parent="zh"),
)

_registry: dict[str, Language] = {}


def _index(lang: Language) -> None:
    for key in (lang.code, lang.name):
        other = _registry.get(key.lower())
        if other is not None and other != lang:
            raise ValueError(f"language key {key!r} already names {other}")
    _registry[lang.code.lower()] = lang
    _registry[lang.name.lower()] = lang


for _lang in RELEASED_LANGUAGES:
    _index(_lang)


def register_language(code: str, name: str, codec_id: int | None = None, parent: str | None = None) -> Language:
    """Add a new language or dialect (idempotent for an identical entry)."""
    if parent is not None:
        parent = get_language(parent).code
    if codec_id is not None:
        clash = next((lang for lang in known_languages() if lang.codec_id == codec_id and lang.code != code), None)
        if clash is not None:
            raise ValueError(f"codec_id {codec_id} of language {code!r} is already used by {clash.code!r}")
    lang = Language(code, name, codec_id, parent)
    _index(lang)
    return lang


def language_from_spec(spec: str) -> Language:
    """A command-line language: a known code or name (``de``, ``german``), or ``CODE:NAME`` to register a new one
    (``gsw:swissgerman``; its codec row comes later from the model, ``qtts languages add``)."""
    code, sep, name = str(spec).partition(":")
    if not sep:
        return get_language(code)
    if not (code.strip() and name.strip()):
        raise ValueError(f"language {spec!r}: expected CODE or CODE:NAME (e.g. gsw:swissgerman)")
    if is_known_language(code) and get_language(code).name == name.strip().lower():
        return get_language(code)
    return register_language(code.strip().lower(), name.strip().lower())


def get_language(key: str) -> Language:
    """Look a language up by code or name (case-insensitive); unknown keys raise ``KeyError``."""
    lang = _registry.get(str(key).strip().lower())
    if lang is None:
        codes = ", ".join(sorted({known.code for known in _registry.values()}))
        raise KeyError(f"unknown language {key!r} (known: {codes}; register new ones under languages: in the config)")
    return lang


def is_known_language(key: str) -> bool:
    return str(key).strip().lower() in _registry


def known_languages() -> list[Language]:
    seen: dict[str, Language] = {}
    for lang in _registry.values():
        seen.setdefault(lang.code, lang)
    return list(seen.values())


def codec_language_ids() -> dict[str, int]:
    """``{name: codec_id}`` as in the released config's ``codec_language_id``."""
    return {lang.name: lang.codec_id for lang in known_languages() if lang.codec_id is not None}
