import hashlib
import json
import re
import shutil
import unicodedata

import pytest
import torch

from data_prep import synthetic
from data_prep.sentences import HELD_OUT, SENTENCES
from data_prep.synthetic import LANGUAGES, generate_corpus, generate_testset, plan_corpus, plan_testset
from qtts.audio.io import audio_info, load_audio
from qtts.data.manifest import read_manifest

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def _hashes(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.wav"))}


@pytest.mark.parametrize(("banks", "least"), [(SENTENCES, 10), (HELD_OUT, 8)], ids=["corpus", "held_out"])
def test_sentence_bank_covers_every_language_with_consistent_spoken_forms(banks, least):
    assert set(banks) == set(LANGUAGES)
    for language, bank in banks.items():
        assert len(bank) >= least, language
        assert len({s.text for s in bank}) == len(bank), f"{language}: repeated sentence"
    for s in banks["zh"]:
        hanzi = [c for c in s.text if unicodedata.name(c).startswith("CJK UNIFIED")]
        syllables = re.findall(r"[a-zü]+\d?", s.spoken)
        assert len(hanzi) == len(syllables), f"{s.text} vs {s.spoken}"
        assert all(re.fullmatch(r"[a-zü]+[1-5]", syl) for syl in syllables), s.spoken
    for s in banks["ja"]:
        assert all(unicodedata.name(c).startswith(("HIRAGANA", "KATAKANA", "IDEOGRAPHIC")) for c in s.text), s.text
        # the spoken form only rewrites the particles は/へ as they sound
        assert len(s.speech) == len(s.text)
        assert all(a == b or (a, b) in {("は", "わ"), ("へ", "え")} for a, b in zip(s.text, s.speech)), s.text
    for language in set(LANGUAGES) - {"zh", "ja"}:
        assert all(s.spoken is None for s in banks[language])


def test_plan_is_deterministic_and_stable_under_subsetting():
    full = plan_corpus(3, None, 4, seed=0)
    assert full == plan_corpus(3, None, 4, seed=0)
    # asking for fewer languages, speakers or utterances keeps the rows that remain unchanged
    small = plan_corpus(2, ["german", "ja"], 3, seed=0)
    expected = [i for i in full if i.language in {"de", "ja"} and i.speaker[-1] != "3" and not i.id.endswith("2")]
    assert sorted(small, key=lambda i: i.id) == sorted(expected, key=lambda i: i.id)
    assert [i.text for i in plan_corpus(3, None, 4, seed=1)] != [i.text for i in full]
    for language in LANGUAGES:
        items = [i for i in full if i.language == language]
        assert len({i.speaker for i in items}) == 4
        assert len({i.voice for i in items}) == 4, f"{language}: two speakers share a voice"
        assert all(i.speaker.startswith(f"{language}_spk") for i in items)
    lengths = {len(i.text) for i in full}
    assert max(lengths) > 2 * min(lengths), "utterance lengths should vary"
    with pytest.raises(KeyError):
        plan_corpus(1, ["xx"])


@needs_espeak
def test_generation_is_deterministic_and_durations_are_real(tmp_path):
    a = generate_corpus(tmp_path / "a", utterances_per_speaker=2, languages=["en", "zh", "ja"], seed=3)
    b = generate_corpus(tmp_path / "b", utterances_per_speaker=2, languages=["en", "zh", "ja"], seed=3, workers=1)
    assert a.read_bytes() == b.read_bytes()
    hashes = _hashes(tmp_path / "a")
    assert hashes == _hashes(tmp_path / "b") and len(hashes) == 18

    rows = read_manifest(a)
    raw = [json.loads(line) for line in a.read_text(encoding="utf-8").splitlines()]
    assert [r["audio"] for r in raw] == [f"wavs/{r['language']}/{r['speaker']}/{r['id']}.wav" for r in raw]
    assert {r.language for r in rows} == {"en", "zh", "ja"}
    for row in rows:
        info = audio_info(row.audio)
        assert (info.sample_rate, info.channels) == (22050, 1)
        assert row.duration == pytest.approx(info.duration, abs=1e-3)
        assert row.duration > 0.8
    zh = next(r for r in rows if r.language == "zh")
    assert re.search(r"[\u4e00-\u9fff]", zh.text) and re.search(r"[a-z]+[1-5]", zh.extra["spoken"])


@needs_espeak
def test_all_ten_languages_three_speakers_each_with_audible_speech(tmp_path):
    rows = read_manifest(generate_corpus(tmp_path, utterances_per_speaker=1))
    assert {r.language for r in rows} == set(LANGUAGES)
    for language in LANGUAGES:
        assert len({r.speaker for r in rows if r.language == language}) == 3
    for row in rows:
        wav, _ = load_audio(row.audio, sample_rate=None)
        rms_db = 20 * torch.log10(wav.pow(2).mean().sqrt())
        assert rms_db > -35, f"{row.id} is nearly silent ({rms_db:.1f} dBFS)"


@needs_espeak
def test_rerun_resumes_only_missing_or_broken_wavs(tmp_path):
    assert synthetic.main([str(tmp_path), "--per-speaker", "2", "--languages", "ko,ru"]) == 0
    before = _hashes(tmp_path)
    wavs = sorted(tmp_path.rglob("*.wav"))
    wavs[0].unlink()
    wavs[1].write_bytes(wavs[1].read_bytes()[:30])  # a torn file
    untouched = {p: p.stat().st_mtime_ns for p in wavs[2:]}
    generate_corpus(tmp_path, utterances_per_speaker=2, languages=["ko", "ru"])
    assert _hashes(tmp_path) == before
    assert {p: p.stat().st_mtime_ns for p in wavs[2:]} == untouched
    with pytest.raises(ValueError, match="seed"):
        generate_corpus(tmp_path, utterances_per_speaker=2, languages=["ko"], seed=1)


def test_held_out_sentences_never_reach_a_corpus():
    """No held-out sentence is in the corpus bank, nor inside any utterance a corpus can be planned with."""
    for language in LANGUAGES:
        held = {s.text for s in HELD_OUT[language]}
        assert not held & {s.text for s in SENTENCES[language]}, language
        assert not held & {s.speech for s in SENTENCES[language]}, language
    corpus = plan_corpus(12, None, 6, seed=0) + plan_corpus(12, None, 6, seed=1)
    for item in corpus:
        for s in HELD_OUT[item.language]:
            assert s.text not in item.text and s.speech not in item.spoken, (item.id, s.text)
    for item in plan_testset(speakers_per_language=6):
        assert item.target.text in {s.text for s in HELD_OUT[item.target.language]}
        assert item.prompt.text in {s.text for s in HELD_OUT[item.target.language]}


def test_testset_plan_is_deterministic_and_stable_under_subsetting():
    full = plan_testset(None, None, 3, seed=0)
    assert full == plan_testset(None, None, 3, seed=0)
    assert len(full) == sum(len(bank) for bank in HELD_OUT.values())
    small = plan_testset(3, ["en", "japanese"], 3, seed=0)
    assert small == [i for i in full if i.target.language in {"en", "ja"} and int(i.target.id[-4:]) < 3]
    assert [i.target.text for i in plan_testset(None, ["en"], seed=1)] != [
        i.target.text for i in full if i.target.language == "en"]
    for item in full:
        assert item.prompt.text != item.target.text and item.prompt.voice == item.target.voice
        assert item.target.speaker == f"{item.target.language}_spk{int(item.target.id[-4:]) % 3}"
    en = [i for i in full if i.target.language == "en"]
    assert sorted(i.target.text for i in en) == sorted(s.text for s in HELD_OUT["en"])  # each sentence once
    with pytest.raises(ValueError, match="en: 17 test items asked, the held-out bank has 16"):
        plan_testset(17, ["en"])


def test_a_seen_text_testset_reads_the_corpus_sentences():
    """``text_bank="corpus"``: the same plan over the corpus's own bank (a trained model's fit to its training text)."""
    seen = plan_testset(None, ["en", "de"], 3, seed=0, text_bank="corpus")
    for language in ("en", "de"):
        mine = [i for i in seen if i.target.language == language]
        assert sorted(i.target.text for i in mine) == sorted(s.text for s in SENTENCES[language])
        assert all(i.target.id.startswith(f"{language}_seen_") and i.prompt.text in
                   {s.text for s in SENTENCES[language]} for i in mine)
    with pytest.raises(ValueError, match="text_bank must be one of"):
        plan_testset(text_bank="harvard")


@needs_espeak
def test_testset_as_jsonl_and_seed_tts_lists_over_the_same_wavs(tmp_path):
    assert synthetic.main([str(tmp_path), "--testset", "--per-language", "2", "--languages", "en,zh"]) == 0
    rows = read_manifest(tmp_path / "testset.jsonl")
    assert [r.id for r in rows] == ["en_test_0000", "en_test_0001", "zh_test_0000", "zh_test_0001"]
    for language in ("en", "zh"):
        lines = (tmp_path / language / "meta.lst").read_text(encoding="utf-8").splitlines()
        mine = [r for r in rows if r.language == language]
        assert lines == [f"{r.id}|{r.ref_text}|prompt-wavs/{r.id}.wav|{r.text}|wavs/{r.id}.wav" for r in mine]
        for r in mine:
            assert r.audio == str(tmp_path / language / "wavs" / f"{r.id}.wav")
            assert r.ref_audio == str(tmp_path / language / "prompt-wavs" / f"{r.id}.wav")
            assert audio_info(r.audio).duration == pytest.approx(r.duration, abs=1e-3)
            assert audio_info(r.ref_audio).frames > 0
    before = _hashes(tmp_path)
    assert len(before) == 8  # a target and a prompt per item
    prompt = tmp_path / "en" / "prompt-wavs" / "en_test_0001.wav"
    prompt.write_bytes(prompt.read_bytes()[:40])  # torn
    untouched = tmp_path / "zh" / "wavs" / "zh_test_0000.wav"
    mtime = untouched.stat().st_mtime_ns
    generate_testset(tmp_path, per_language=2, languages=["en", "zh"])
    assert _hashes(tmp_path) == before and untouched.stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="seed"):
        generate_testset(tmp_path, per_language=2, languages=["en"], seed=4)
