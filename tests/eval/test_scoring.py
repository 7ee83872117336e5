"""Scoring by the Seed-TTS-eval rules; every expected number is worked out by hand in a comment."""

import pytest

from qtts.eval.scoring import OVERALL, Summary, UtteranceScore, score_utterance, summarize, summarize_by_language


def test_chinese_cer_ignores_spaces_and_punctuation():
    # ref 今天天气很好 = 6 chars; hyp has only spaces between the same 6 chars → 0 edits
    assert score_utterance("今天天气很好。", "今天 天气 很 好", "zh") == UtteranceScore(0, 6, 0.0, "char")


def test_chinese_cer_counts_substitution_and_insertion():
    # 今天天[气→汽]很好[+啊]: 1 substitution + 1 insertion = 2 edits / 6 chars = 1/3
    score = score_utterance("今天天气很好", "今天天汽很好啊", "zh")
    assert (score.errors, score.units, score.unit) == (2, 6, "char")
    assert score.rate == pytest.approx(1 / 3)


def test_traditional_hypothesis_scores_against_simplified_reference():
    # 我們說話 → 我们说话 after t2s: 0 edits / 4 chars
    assert score_utterance("我们说话", "我們說話", "zh").errors == 0


def test_japanese_cer():
    # ref こんにちは世界 (、 removed) = 7 chars; hyp こんにちわ世界 (space removed): は→わ, 1 substitution → 1/7
    score = score_utterance("こんにちは、世界", "こんにちわ 世界", "ja")
    assert (score.errors, score.units, score.unit) == (1, 7, "char")
    assert score.rate == pytest.approx(1 / 7)


def test_korean_cer_ignores_where_the_spaces_fall():
    # ref 안녕하세요세계 = 7 chars; hyp 안녕하세요세게 (spaces elsewhere, removed): 계→게, 1 substitution → 1/7
    score = score_utterance("안녕하세요 세계", "안녕 하세요 세게", "ko")
    assert (score.errors, score.units, score.unit) == (1, 7, "char")


def test_english_wer():
    # ref the cat sat on the mat (6 words); hyp the cat sit on mat: sat→sit (1 S) and one "the" deleted (1 D) → 2/6
    score = score_utterance("The cat sat on the mat.", "the cat sit on mat", "en")
    assert (score.errors, score.units, score.unit) == (2, 6, "word")
    assert score.rate == pytest.approx(1 / 3)


def test_english_punctuation_and_case_are_not_errors():
    # both normalise to "hello world" → 0 / 2
    assert score_utterance("Hello, world!", "hello world", "english") == UtteranceScore(0, 2, 0.0, "word")


def test_german_wer():
    # ref ich habe einen hund (4 words); hyp ich habe ein hund: einen→ein, 1 S → 1/4
    assert score_utterance("Ich habe einen Hund.", "ich habe ein Hund", "de") == UtteranceScore(1, 4, 0.25, "word")


def test_empty_hypothesis_is_all_deletions():
    # 2 reference words, nothing recognised: 2 D / 2 = 1.0
    assert score_utterance("good morning", "", "en") == UtteranceScore(2, 2, 1.0, "word")


@pytest.mark.parametrize("reference", ["", "   ", "。！"])
def test_empty_reference_raises_naming_the_item(reference):
    with pytest.raises(ValueError, match="'utt7'.*empty reference"):
        score_utterance(reference, "anything", "zh", item="utt7")


def test_mean_of_utterances_differs_from_corpus_rate():
    short = score_utterance("hello world", "hello word", "en")  # 1 S / 2 words = 0.5
    long = score_utterance("one two three four five six seven eight", "one two three four five six seven eight",
                           "en")  # 0 / 8
    # mean = (0.5 + 0) / 2 × 100 = 25.0; corpus = (1 + 0) / (2 + 8) × 100 = 10.0; 0.5 is not above 50 %
    assert summarize([short, long]) == Summary(mean_rate_x100=25.0, corpus_rate_x100=10.0, above_50=0, count=2)


def test_utterance_above_50_percent_is_kept_and_counted():
    babble = score_utterance("good morning", "good morning to you all", "en")  # 3 I / 2 words = 1.5
    assert babble.rate == 1.5
    clean = score_utterance("a b c d", "a b c d", "en")  # 0 / 4
    # mean = (1.5 + 0) / 2 × 100 = 75.0 (the 150 % is kept); corpus = 3 / (2 + 4) × 100 = 50.0; one above 50 %
    assert summarize([babble, clean]) == Summary(mean_rate_x100=75.0, corpus_rate_x100=50.0, above_50=1, count=2)


def test_summarize_by_language():
    zh_a = score_utterance("今天天气很好", "今天天汽很好", "zh")  # 1 / 6
    zh_b = score_utterance("你好", "你好", "chinese")  # 0 / 2
    en = score_utterance("hello world", "hello", "en")  # 1 D / 2 = 0.5
    summaries = summarize_by_language([("zh", zh_a), ("chinese", zh_b), ("en", en)])
    assert set(summaries) == {"zh", "en", OVERALL}
    # zh: mean = (1/6 + 0) / 2 × 100 = 8.333…; corpus = 1 / 8 × 100 = 12.5
    assert summaries["zh"].mean_rate_x100 == pytest.approx(100 / 12)
    assert summaries["zh"].corpus_rate_x100 == pytest.approx(12.5)
    assert summaries["zh"].count == 2
    assert summaries["en"] == Summary(mean_rate_x100=50.0, corpus_rate_x100=50.0, above_50=0, count=1)
    # overall: mean = (1/6 + 0 + 1/2) / 3 × 100 = 22.222…; corpus = 2 / 10 × 100 = 20.0
    assert summaries[OVERALL].mean_rate_x100 == pytest.approx(200 / 9)
    assert summaries[OVERALL].corpus_rate_x100 == pytest.approx(20.0)
    assert summaries[OVERALL].count == 3


def test_nothing_to_summarise_raises():
    with pytest.raises(ValueError, match="no utterances"):
        summarize([])
    with pytest.raises(ValueError, match="no utterances"):
        summarize_by_language([])
