"""split_sentences cuts long synthesis texts into bounded, rejoinable pieces in all ten languages."""

import random
import re

import pytest

from qtts.text.sentences import split_sentences
from tests.text.samples import MULTILINGUAL

TWO_SENTENCES = {
    "zh": ["今天天气很好。", "我们去公园吧！"],
    "en": ["The weather is nice today.", "Let's go to the park!"],
    "ja": ["今日は晴れです。", "公園に行きましょう。"],
    "ko": ["오늘은 날씨가 좋아요.", "공원에 갑시다!"],
    "de": ["Heute ist das Wetter schön.", "Gehen wir in den Park!"],
    "fr": ["Il fait beau aujourd'hui.", "Allons au parc !"],
    "ru": ["Сегодня хорошая погода.", "Пойдём в парк!"],
    "pt": ["Hoje o tempo está bom.", "Vamos ao parque?"],
    "es": ["¿Hace buen tiempo hoy?", "¡Vamos al parque!"],
    "it": ["Oggi il tempo è bello.", "Andiamo al parco…"],
}
CJK = {"zh", "ja"}


def squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


@pytest.mark.parametrize("lang", sorted(TWO_SENTENCES))
def test_two_sentences_per_language(lang):
    expected = TWO_SENTENCES[lang]
    text = ("" if lang in CJK else " ").join(expected)
    assert split_sentences(text) == expected


def test_decimals_are_not_sentence_ends():
    assert split_sentences("Pi is 3.14 today. Tomorrow it is 2.72.") == ["Pi is 3.14 today.", "Tomorrow it is 2.72."]
    assert split_sentences("Das kostet 12,50 €. Danke.") == ["Das kostet 12,50 €.", "Danke."]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Dr. Smith met Mrs. Jones. They talked.", ["Dr. Smith met Mrs. Jones.", "They talked."]),
        ("Bring fruit, e.g. apples, i.e. red ones. Done.", ["Bring fruit, e.g. apples, i.e. red ones.", "Done."]),
        ("Er kam z.B. heute, usw. bzw. morgen. Gut.", ["Er kam z.B. heute, usw. bzw. morgen.", "Gut."]),
        ("M. Dupont et Mme. Martin arrivent. Bien.", ["M. Dupont et Mme. Martin arrivent.", "Bien."]),
        ("Sr. García y Sra. López. Hola.", ["Sr. García y Sra. López.", "Hola."]),
        ("В 1999 г. он уехал, т.е. навсегда. Всё.", ["В 1999 г. он уехал, т.е. навсегда.", "Всё."]),
        ("Cats vs. dogs etc. are fine. Yes.", ["Cats vs. dogs etc. are fine.", "Yes."]),
    ],
)
def test_abbreviations_are_not_sentence_ends(text, expected):
    assert split_sentences(text) == expected


def test_initials_are_not_sentence_ends():
    text = "J. R. R. Tolkien wrote it. А. С. Пушкин тоже."
    assert split_sentences(text) == ["J. R. R. Tolkien wrote it.", "А. С. Пушкин тоже."]


def test_ellipsis_before_lowercase_stays_inside():
    assert split_sentences("Well... maybe not. Je pense… peut-être. Wait… What?") == [
        "Well... maybe not.",
        "Je pense… peut-être.",
        "Wait…",
        "What?",
    ]


def test_runs_of_marks_and_cjk_ellipsis():
    assert split_sentences("Really?! Yes... No.") == ["Really?!", "Yes...", "No."]
    assert split_sentences("我不知道……我们走吧。") == ["我不知道……", "我们走吧。"]
    assert split_sentences("第一；第二。") == ["第一；", "第二。"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("She said “Go!” And went.", ["She said “Go!”", "And went."]),
        ("(See above.) Next one.", ["(See above.)", "Next one."]),
        ("« Bonjour. » Il part.", ["« Bonjour. »", "Il part."]),
        ("»Hallo.« Er ging.", ["»Hallo.«", "Er ging."]),
        ("「行こう。」彼は言った。", ["「行こう。」", "彼は言った。"]),
        ("他说：“好。”然后走了。", ["他说：“好。”", "然后走了。"]),
        ("他说（好！）我们走【走吧。】好", ["他说（好！）", "我们走【走吧。】", "好"]),
    ],
)
def test_closing_quotes_stay_with_their_sentence(text, expected):
    assert split_sentences(text) == expected


def test_spanish_inverted_marks_start_the_next_sentence():
    assert split_sentences("Hola.¿Qué tal? ¡Bien!") == ["Hola.", "¿Qué tal?", "¡Bien!"]


def test_newlines_always_end_a_piece():
    assert split_sentences("Title\nFirst line, no stop\n\n\nLast\r\nend") == [
        "Title",
        "First line, no stop",
        "Last",
        "end",
    ]
    assert split_sentences("标题\n正文") == ["标题", "正文"]


def test_empty_and_whitespace():
    assert split_sentences("") == []
    assert split_sentences("  \n\t \r\n ") == []
    assert split_sentences("  Hello.   World.  ") == ["Hello.", "World."]


def test_long_piece_is_cut_at_the_last_clause_boundary():
    text = "one two, three four; five six seven eight"
    assert split_sentences(text, max_chars=22) == ["one two, three four;", "five six seven eight"]
    assert split_sentences("今天天气很好，我们去公园吧、然后回家", max_chars=10) == [
        "今天天气很好，", "我们去公园吧、", "然后回家"]
    assert split_sentences("It was late – we left – home", max_chars=16) == ["It was late –", "we left – home"]


def test_numbers_are_not_clause_boundaries():
    assert split_sentences("It is 3:45 and 12,50 euros now", max_chars=20) == ["It is 3:45 and 12,50", "euros now"]


def test_long_piece_without_clauses_is_cut_at_whitespace():
    text = "alpha beta gamma delta epsilon zeta"
    pieces = split_sentences(text, max_chars=12)
    assert pieces == ["alpha beta", "gamma delta", "epsilon zeta"]


def test_long_cjk_without_punctuation_is_cut_hard():
    text = "今天天气很好我们去公园散步吧"
    assert split_sentences(text, max_chars=5) == ["今天天气很", "好我们去公", "园散步吧"]
    assert split_sentences("abcdefgh", max_chars=3) == ["abc", "def", "gh"]


def _random_texts():
    rng = random.Random(1234)
    words = ["a", "word", "longerword", "3.14", "Dr.", "e.g.", "好", "今天天气", "¿Qué", "tal?", "—", "–", ",", "。"]
    marks = ["", "", "", ".", ",", "!", "?", "…", "。", "，", "\n", "?!"]
    texts = list(MULTILINGUAL)
    for _ in range(40):
        n = rng.randint(1, 80)
        texts.append(
            "".join(rng.choice(words) + rng.choice(marks) + rng.choice([" ", " ", "", "  "]) for _ in range(n))
        )
    texts.append("x" * 500)
    texts.append("好" * 500)
    return texts


@pytest.mark.parametrize("max_chars", [1, 2, 7, 20, 64, 200])
def test_pieces_never_exceed_max_chars(max_chars):
    for text in _random_texts():
        pieces = split_sentences(text, max_chars=max_chars, min_chars=min(10, max_chars))
        assert all(1 <= len(p) <= max_chars for p in pieces), (text, pieces)
        assert all(p == p.strip() for p in pieces)
        assert squash("".join(pieces)) == squash(text)


def test_min_chars_merges_short_pieces():
    text = "Yes. No. Maybe so, said the man walking by. Ok."
    assert split_sentences(text) == ["Yes.", "No.", "Maybe so, said the man walking by.", "Ok."]
    # Forward merges while short; the short last piece goes back onto the previous one.
    assert split_sentences(text, max_chars=200, min_chars=10) == ["Yes. No. Maybe so, said the man walking by. Ok."]
    assert split_sentences(text, max_chars=40, min_chars=10) == [
        "Yes. No.",
        "Maybe so, said the man walking by. Ok.",
    ]
    # A merge that would pass max_chars does not happen.
    assert split_sentences("Hi. " + "x" * 30, max_chars=30, min_chars=5) == ["Hi.", "x" * 30]


def test_min_chars_joins_cjk_without_space():
    assert split_sentences("好。我们走吧。", min_chars=5) == ["好。我们走吧。"]
    assert split_sentences("“好。”我们走吧。", min_chars=5) == ["“好。”我们走吧。"]
    assert split_sentences("好。Let's go now.", min_chars=5) == ["好。 Let's go now."]
    assert split_sentences("오늘. 공원에 갑시다!", min_chars=5) == ["오늘. 공원에 갑시다!"]


def test_round_trip_ignoring_whitespace():
    text = "\n".join(MULTILINGUAL) + "\n" + " ".join(" ".join(v) for v in TWO_SENTENCES.values())
    for max_chars, min_chars in [(200, 0), (30, 0), (30, 15), (5, 0), (1, 0)]:
        pieces = split_sentences(text, max_chars=max_chars, min_chars=min_chars)
        assert squash("".join(pieces)) == squash(text)


@pytest.mark.parametrize("kwargs", [{"max_chars": 0}, {"max_chars": -5}, {"max_chars": 10, "min_chars": 11}])
def test_bad_limits_raise(kwargs):
    with pytest.raises(ValueError, match="max_chars"):
        split_sentences("Hello.", **kwargs)
