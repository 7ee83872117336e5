"""Split long texts into sentence-sized pieces for synthesis.

``qtts synth`` does not feed a long text to the talker in one go: the talker works best on
pieces of bounded length, so the text is cut into sentences, each piece is generated with the
same voice (same speaker, reference or instruction), and the audio is concatenated. This
module does the cutting for the ten released languages (zh en ja ko de fr ru pt es it) with
``re`` and a small scanner only, no language models or per-language tokenizers.

Rules, in order: newlines end a piece; sentence-final punctuation ends a piece (Latin/Cyrillic
``. ! ? …`` need a following space, CJK ``。！？；…`` do not); a piece over ``max_chars`` is cut
at a clause boundary, else at a space, else hard; pieces under ``min_chars`` are merged with a
neighbour. Nothing but whitespace is ever dropped, so the pieces rejoin to the input.
"""

from __future__ import annotations

import re

__all__ = ["split_sentences"]

# Full-width terminators end a sentence without a following space (zh/ja write none).
_CJK_TERMINATORS = "。｡！？；"
# Latin/Cyrillic terminators end a sentence only before whitespace (or ¿ ¡ or a CJK char).
_LATIN_TERMINATORS = ".!?…"
_TERMINATORS = _CJK_TERMINATORS + _LATIN_TERMINATORS
# Closing quotes/brackets after a terminator belong to the sentence they close. '"' is handled
# apart: it closes only when an odd number of them precede it on the line (an open quote).
_CLOSERS = "”’'»«)）」』】》〉]"
# Inverted marks open the next Spanish sentence, so a terminator right before one ends a piece.
_SPANISH_OPENERS = "¿¡"
# Horizontal spaces French puts before a closing » (space, no-break space, narrow no-break space).
_FRENCH_SPACES = " \u00a0\u202f"
# Abbreviations whose period is not a sentence end, compared case-insensitively with the dot.
# Kept small and explicit; single capital letters (initials, "M." for Monsieur) are handled apart.
_ABBREVIATIONS = frozenset(
    a.casefold()
    for a in (
        "Dr.", "Mr.", "Mrs.", "Ms.", "St.", "Prof.", "Jr.", "Sr.", "Sra.", "Srta.", "Mme.", "Mlle.",
        "e.g.", "i.e.", "etc.", "vs.", "cf.", "z.B.", "u.a.", "usw.", "bzw.", "d.h.", "Nr.",
        "г.", "гг.", "т.е.", "т.д.", "т.п.", "др.", "см.",
    )
)  # fmt: skip

# Clause boundaries for cutting an over-long sentence: the mark stays with the head.
_CLAUSE_MARKS = ",;:，、；："
_DASH = re.compile(r" [–—] ")
# Han, kana, CJK punctuation and full-width forms: text written without spaces between words.
# Hangul is left out on purpose: Korean separates words (and sentences) with spaces.
_CJK = re.compile(
    "[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003134f]"
)


def _is_cjk(ch: str) -> bool:
    return bool(_CJK.match(ch))


def _edge_is_cjk(s: str, from_end: bool) -> bool:
    """Whether the script at one edge of ``s`` is CJK, looking past Latin punctuation.

    ``好……`` or ``“好。”`` end in CJK even though their last character (… or ”) is shared
    punctuation, so the first character that is CJK or a letter/digit decides.
    """
    for ch in reversed(s) if from_end else s:
        if _is_cjk(ch):
            return True
        if ch.isalnum():
            return False
    return False


def _join(a: str, b: str) -> str:
    """Join two pieces as the script writes them: nothing between CJK, else one space."""
    if _edge_is_cjk(a, from_end=True) and _edge_is_cjk(b, from_end=False):
        return a + b
    return a + " " + b


def _period_is_abbreviation(line: str, i: int) -> bool:
    """Whether the single '.' at ``line[i]`` ends a known abbreviation or an initial."""
    start = i
    while start > 0 and not line[start - 1].isspace():
        start -= 1
    word = line[start:i].lstrip("([{«\"“‘'¿¡")
    if not word:
        return False
    if len(word) == 1 and word.isupper():  # an initial: J. R. R. Tolkien, А. С. Пушкин, M. Dupont
        return True
    return (word + ".").casefold() in _ABBREVIATIONS


def _end_of_closers(line: str, k: int) -> int:
    """Index just past the closing quotes/brackets that follow a terminator ending at ``k``."""
    n = len(line)
    while k < n:
        ch = line[k]
        if ch in _CLOSERS or (ch == '"' and line.count('"', 0, k) % 2 == 1):
            k += 1
            continue
        if ch in _FRENCH_SPACES:  # « Bonjour. » : a spaced » that is followed by a space closes
            m = k
            while m < n and line[m] in _FRENCH_SPACES:
                m += 1
            if m < n and line[m] == "»" and (m + 1 == n or line[m + 1].isspace()):
                k = m + 1
                continue
        break
    return k


def _sentence_ends(line: str) -> list[int]:
    """Indices (exclusive) at which the sentences of one line end."""
    n = len(line)
    ends: list[int] = []
    i = 0
    while i < n:
        if line[i] not in _TERMINATORS:
            i += 1
            continue
        j = i
        while j < n and line[j] in _TERMINATORS:
            j += 1
        run = line[i:j]
        k = _end_of_closers(line, j)
        if _terminator_ends_sentence(line, i, run, j, k):
            ends.append(k)
            i = k
        else:
            i = j
    return ends


def _terminator_ends_sentence(line: str, i: int, run: str, j: int, k: int) -> bool:
    """Whether the terminator run ``line[i:j]`` (closers up to ``k``) ends a sentence."""
    n = len(line)
    if any(ch in _CJK_TERMINATORS for ch in run) or k == n:
        return True
    nxt = line[k]
    if nxt in _SPANISH_OPENERS:  # "Hola.¿Qué tal?"
        return True
    if not nxt.isspace():
        # "好……我们", "你好!我们": no space is written before CJK text; "3.14", "a.m." stay.
        return _is_cjk(nxt)
    if run == "." and k == j and _period_is_abbreviation(line, i):
        return False
    if run != "." and set(run) <= {".", "…"}:
        rest = line[k:].lstrip()
        if rest and rest[0].islower():  # "Well... maybe", "Je pense… peut-être": one sentence
            return False
    return True


def _cut_point(piece: str, max_chars: int) -> tuple[int, int]:
    """Where to cut an over-long piece: (end of head, start of tail).

    The last clause boundary that keeps the head within ``max_chars`` is preferred, since a
    pause is natural there; then the last space; then a hard cut (CJK without punctuation).
    """
    best = -1
    for p in range(min(max_chars, len(piece)) - 1, 0, -1):
        ch = piece[p]
        if ch in _CLAUSE_MARKS:
            if ch in ",:" and 0 < p < len(piece) - 1 and piece[p - 1].isdigit() and piece[p + 1].isdigit():
                continue  # 12,50 and 3:45 are numbers, not clauses
            best = p + 1
            break
    for m in _DASH.finditer(piece, 0, max_chars + 1):
        if m.end() - 1 > best:  # keep the dash with the head: "A –" | "B"
            best = m.end() - 1
    if best > 0:
        return best, best
    for p in range(min(max_chars, len(piece) - 1), 0, -1):
        if piece[p].isspace():
            return p, p + 1
    return max_chars, max_chars


def _bound(piece: str, max_chars: int) -> list[str]:
    """Cut ``piece`` into parts of at most ``max_chars`` characters each."""
    parts: list[str] = []
    while len(piece) > max_chars:
        head_end, tail_start = _cut_point(piece, max_chars)
        head, piece = piece[:head_end].strip(), piece[tail_start:].strip()
        if head:
            parts.append(head)
    if piece:
        parts.append(piece)
    return parts


def _merge_short(pieces: list[str], min_chars: int, max_chars: int) -> list[str]:
    """Merge pieces under ``min_chars`` forward (the last one backward) while within max_chars."""
    out: list[str] = []
    for piece in pieces:
        if out and len(out[-1]) < min_chars and len(joined := _join(out[-1], piece)) <= max_chars:
            out[-1] = joined
        else:
            out.append(piece)
    if len(out) >= 2 and len(out[-1]) < min_chars and len(joined := _join(out[-2], out[-1])) <= max_chars:
        out[-2:] = [joined]
    return out


def split_sentences(text: str, max_chars: int = 200, min_chars: int = 0) -> list[str]:
    """Split ``text`` into stripped, non-empty pieces of at most ``max_chars`` characters.

    Pieces end at newlines and sentence ends; over-long sentences are cut at clauses, spaces,
    or hard; pieces shorter than ``min_chars`` are merged with the next one (the last with the
    previous one) when the result fits ``max_chars``, joined by a space, or by nothing between
    CJK characters. Bounded pieces keep the talker in its comfortable range; merging avoids
    synthesising fragments like "Yes." alone, which tend to come out rushed.

    Raises ValueError when ``max_chars < 1`` or ``min_chars > max_chars``.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    if min_chars > max_chars:
        raise ValueError(f"min_chars ({min_chars}) must not exceed max_chars ({max_chars})")
    pieces: list[str] = []
    for line in text.splitlines():
        start = 0
        for end in [*_sentence_ends(line), len(line)]:
            sentence = line[start:end].strip()
            start = end
            if sentence:
                pieces.extend(_bound(sentence, max_chars))
    if min_chars > 0:
        pieces = _merge_short(pieces, min_chars, max_chars)
    return pieces
