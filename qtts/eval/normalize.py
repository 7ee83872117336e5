"""Text normalisation before scoring, as the Seed-TTS-eval protocol does it.

Both the reference and the ASR transcript go through :func:`normalize`, so punctuation, case and spacing never count
as errors. The rules (they decide published numbers, so they are matched, not improved):

* every ASCII punctuation mark is removed except the ASCII apostrophe (``don't`` stays one word); the CJK and
  full-width marks are removed too, the typographic apostrophe ``’`` and the full-width ``＇`` included, so
  ``don’t`` becomes ``dont`` exactly as the protocol scores it;
* runs of whitespace collapse to one space, the ends are stripped;
* the text is lowercased;
* Chinese (and its dialects) is converted to Simplified: the ASR model may answer in Traditional characters, which
  would otherwise all count as substitutions against a Simplified reference.
"""

from __future__ import annotations

import string
from functools import lru_cache

import opencc

from qtts.text.languages import get_language

# CJK and full-width punctuation: the CJK Symbols and Punctuation marks, the full-width ASCII marks, half-width CJK
# marks, and the general punctuation East Asian text uses (dashes, curly quotes, ellipsis). Listed, not taken as
# Unicode ranges, because those ranges also hold letters (々 〆 〇, the full-width Latin letters and digits).
CJK_PUNCTUATION = (
    "！＂＃＄％＆＇（）＊＋，－／：；＜＝＞？＠［＼］＾＿｀｛｜｝～"  # full-width ASCII marks (U+FF01…U+FF5E)
    "｟｠｡｢｣､･"  # full-width white parentheses, half-width CJK marks
    "、。〃〈〉《》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿"  # CJK Symbols and Punctuation
    "–—‘’‛“”„‟…‧﹏"  # general punctuation used in CJK text
)
ASCII_PUNCTUATION = string.punctuation.replace("'", "")
PUNCTUATION = frozenset(ASCII_PUNCTUATION + CJK_PUNCTUATION)
_DELETE_PUNCTUATION = str.maketrans("", "", "".join(sorted(PUNCTUATION)))


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    """One converter per process: loading the dictionaries is the costly part."""
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional → Simplified Chinese (OpenCC ``t2s``); other scripts pass through unchanged."""
    return _t2s().convert(text)


def base_language(language: str) -> str:
    """The scoring language of a code or name: a dialect is scored as its parent (``zh-sichuan`` → ``zh``)."""
    lang = get_language(language)
    return lang.parent or lang.code


def normalize(text: str, language: str) -> str:
    """``text`` as the protocol compares it: no punctuation but ``'``, single spaces, lowercase, and Simplified
    characters for Chinese. ``language`` is a qtts code or name (``zh``, ``chinese``); unknown ones raise KeyError."""
    if base_language(language) == "zh":
        text = to_simplified(text)
    text = text.translate(_DELETE_PUNCTUATION)
    return " ".join(text.split()).lower()
