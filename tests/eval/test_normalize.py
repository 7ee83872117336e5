"""Normalisation rules of the Seed-TTS-eval protocol, each on a hand-checked example."""

import pytest

from qtts.eval.normalize import normalize, to_simplified


def test_cjk_punctuation_is_removed():
    # every mark of ，。！？、；：「」『』《》…— goes; the four characters 你好世界 and the final 好 stay
    assert normalize("你好，世界。！？、；：「」『』《》…—好", "zh") == "你好世界好"


def test_ascii_punctuation_is_removed():
    # , ! " ( ) - ; : ? go; "a-b" joins to "ab" (the protocol deletes, it does not split), case folds
    assert normalize('Hello, World! "Quote" (x) a-b; c:d?', "en") == "hello world quote x ab cd"


def test_apostrophe_is_kept():
    # the ASCII ' stays inside words; the period and comma go
    assert normalize("Don't STOP, it's fine.", "en") == "don't stop it's fine"


def test_typographic_apostrophe_is_removed_as_in_the_protocol():
    # ’ is in the CJK/general punctuation set, only the ASCII ' is spared: "Don’t" → "dont"
    assert normalize("Don’t", "en") == "dont"


def test_whitespace_collapses_and_case_folds():
    # tabs, newlines and runs of spaces become one space, ends stripped; Ä/Ü lowercase to ä/ü
    assert normalize("  ÄRGER \t Über\n\nALLES  ", "de") == "ärger über alles"


def test_traditional_to_simplified():
    # 這→这 個→个 東→东 西 unchanged
    assert to_simplified("這個東西") == "这个东西"
    # normalize converts Chinese, given by code, name or dialect: 漢→汉 語→语 說→说 話→话
    assert normalize("漢語說話", "zh") == "汉语说话"
    assert normalize("漢語", "chinese") == "汉语"
    assert normalize("說話", "zh-sichuan") == "说话"


def test_japanese_is_not_simplified_and_keeps_iteration_mark():
    # Japanese kanji 漢 is not a Chinese Traditional form to convert; 々 is a letter, not punctuation; 、 goes
    assert normalize("漢字、時々", "ja") == "漢字時々"


def test_unknown_language_raises():
    with pytest.raises(KeyError, match="unknown language"):
        normalize("text", "klingon")
