"""Evaluation runs: results, reports and resume with stand-in scorers (fast, exact), TTS and codec runs on tiny random
models, and the built-in ASR on espeak-ng clips through ``qtts eval asr`` in both test-set formats."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from qtts.eval.asr import ASR
from qtts.eval.report import REPORT_JSON, REPORT_MD
from qtts.eval.run import choose_voice, evaluate_asr, evaluate_codec, evaluate_tts
from qtts.eval.scoring import OVERALL, score_utterance, summarize_by_language

pytestmark = pytest.mark.usefixtures("one_thread")


class ByLength(ASR):
    """A stand-in recogniser: the transcript of a clip is looked up by its length at 16 kHz (every test clip has its
    own), so results are known in advance; it records the clips it was asked for."""

    name = "by-length"

    def __init__(self, hyps: dict[int, str]):
        self.hyps, self.calls = hyps, []

    def transcribe(self, wavs, language):
        self.calls += [(len(w), language) for w in wavs]
        return [self.hyps.get(len(w), "") for w in wavs]


class MeanEmbedder:
    """A stand-in speaker embedder: (mean, std, 1) of the clip, so the cosine is known."""

    name = "mean-std"

    def embed(self, wavs):
        return torch.stack([torch.stack([w.mean(), w.std(), torch.tensor(1.0)]) for w in wavs])


class LengthMOS:
    name = "length-mos"

    def score(self, wavs):
        return [{"mos": 1 + len(w) / 16000, "sig": 0.0} for w in wavs]


def _tone(path, seconds, freq, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
    return path


# text, what the stand-in ASR hears, language
ITEMS = [
    ("a", "The cat sat on the mat.", "the cat sit on mat", "en"),  # 1 S + 1 D / 6 = 1/3
    ("b", "Hello, world!", "hello world", "en"),  # 0 / 2
    ("c", "good morning", "good morning to you all", "en"),  # 3 I / 2 = 1.5
    ("d", "今天天气很好", "今天天汽很好", "zh"),  # 1 / 6 chars
]


@pytest.fixture
def tone_set(tmp_path):
    """A JSONL test set of tones of distinct lengths (item i lasts 0.5 + 0.1 i s), with prompts for SIM."""
    rows, hyps = [], {}
    for i, (ident, text, hyp, language) in enumerate(ITEMS):
        seconds = 0.5 + 0.1 * i
        _tone(tmp_path / "set" / "wavs" / f"{ident}.wav", seconds, 200 + 50 * i)
        _tone(tmp_path / "set" / "prompts" / f"{ident}.wav", 0.4, 300)
        rows.append({"id": ident, "text": text, "language": language, "audio": f"wavs/{ident}.wav",
                     "speaker": "s", "ref_audio": f"prompts/{ident}.wav", "ref_text": "prompt"})
        hyps[int(seconds * 16000)] = hyp
    path = tmp_path / "set" / "testset.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path, hyps


def test_report_numbers_are_the_scoring_modules(tone_set, tmp_path):
    path, hyps = tone_set
    asr = ByLength(hyps)
    report = evaluate_asr(path, tmp_path / "out", asr=asr, speaker_embedder=MeanEmbedder(), mos=LengthMOS(),
                          batch_size=3, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["a", "b", "c", "d"]
    assert {(n, lang) for n, lang in asr.calls} == {(n, "en") for n in list(hyps)[:3]} | {(list(hyps)[3], "zh")}
    expected = summarize_by_language((lang, score_utterance(text, hyp, lang)) for _, text, hyp, lang in ITEMS)
    stats = report["systems"]["audio"]
    assert list(stats) == ["en", "zh", OVERALL]
    for language, summary in expected.items():
        assert stats[language]["wer"] == pytest.approx(summary.mean_rate_x100)
        assert stats[language]["corpus_wer"] == pytest.approx(summary.corpus_rate_x100)
        assert stats[language]["above_50"] == summary.above_50
        assert stats[language]["n"] == summary.count
    # by hand, en: mean (1/3 + 0 + 1.5) / 3 × 100 = 61.11; corpus (2 + 0 + 3) / (6 + 2 + 2) × 100 = 50; one above 50 %
    assert stats["en"]["wer"] == pytest.approx(100 * (1 / 3 + 1.5) / 3)
    assert (stats["en"]["corpus_wer"], stats["en"]["above_50"], stats["en"]["unit"]) == (50.0, 1, "word")
    assert (stats["zh"]["unit"], stats[OVERALL]["unit"]) == ("char", "mixed")
    by_id = {r["id"]: r for r in rows}
    assert by_id["a"]["hyp"] == "the cat sit on mat" and by_id["a"]["wer"] == pytest.approx(1 / 3)
    # MOS: 1 + seconds; SIM: cosine of (mean, std, 1) of each tone and its prompt, both ~(0, 0.212, 1) → ~1
    assert stats["en"]["mos"] == pytest.approx(1 + (0.5 + 0.6 + 0.7) / 3)
    assert all(0.99 < r["sim"] <= 1.0 + 1e-6 for r in rows)
    assert stats[OVERALL]["sim"] == pytest.approx(sum(r["sim"] for r in rows) / 4)
    assert report["settings"]["asr"] == "by-length" and report["settings"]["sim"] == "mean-std"
    md = (tmp_path / "out" / REPORT_MD).read_text()
    assert "| en (WER) | 3 | 61.11 | 50.00 | 1 | 1.000 | 1.600 |" in md
    assert json.loads((tmp_path / "out" / REPORT_JSON).read_text()) == json.loads(json.dumps(report))
    png = (tmp_path / "out" / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_resume_redoes_only_missing_and_torn_rows(tone_set, tmp_path):
    path, hyps = tone_set
    out = tmp_path / "out"
    first = evaluate_asr(path, out, asr=ByLength(hyps), batch_size=2, progress=False)
    results = out / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    assert len(lines) == 4

    asr = ByLength(hyps)
    assert evaluate_asr(path, out, asr=asr, progress=False) == first
    assert asr.calls == []  # all done: nothing transcribed

    last = json.loads(lines[-1])
    results.write_text("".join(lines[:-1]) + lines[-1][:25])  # a crash mid-write: a torn last line
    asr = ByLength(hyps)
    assert evaluate_asr(path, out, asr=asr, progress=False) == first
    assert len(asr.calls) == 1 and asr.hyps[asr.calls[0][0]] == last["hyp"]
    assert results.read_text() == "".join(lines)  # the torn line was cut and redone

    results.write_text("".join(lines[1:]))  # a row deleted
    asr = ByLength(hyps)
    assert evaluate_asr(path, out, asr=asr, progress=False) == first
    assert len(asr.calls) == 1 and asr.hyps[asr.calls[0][0]] == json.loads(lines[0])["hyp"]

    results.write_text(lines[0] + "{not json\n" + "".join(lines[1:]))
    with pytest.raises(ValueError, match=r"results.jsonl:2: not a result row"):
        evaluate_asr(path, out, asr=ByLength(hyps), progress=False)
    results.write_text("".join(lines))
    with pytest.raises(ValueError, match=r"other settings \(mos"):
        evaluate_asr(path, out, asr=ByLength(hyps), mos=LengthMOS(), progress=False)


def test_missing_audio_and_english_only_asr_fail_before_work(tone_set, tmp_path):
    path, hyps = tone_set
    (path.parent / "wavs" / "b.wav").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 audio files missing: .*testset.jsonl:2 .*b.wav"):
        evaluate_asr(path, tmp_path / "out", asr=ByLength(hyps), progress=False)
    assert not (tmp_path / "out").exists()

    class EnglishOnly(ByLength):
        def transcribe(self, wavs, language):
            if language != "en":
                raise ValueError(f"English only, not {language}")
            return super().transcribe(wavs, language)

    _tone(path.parent / "wavs" / "b.wav", 0.6, 250)
    with pytest.raises(ValueError, match="English only, not zh"):
        evaluate_asr(path, tmp_path / "out", asr=EnglishOnly(hyps), progress=False)
    assert not (tmp_path / "out" / "results.jsonl").exists()
    report = evaluate_asr(path, tmp_path / "out", asr=EnglishOnly(hyps), language="en", progress=False)
    assert report["systems"]["audio"][OVERALL]["n"] == 3
    asr = EnglishOnly(hyps)  # the same settings spelled otherwise: resumed, nothing to do
    assert evaluate_asr(str(path), tmp_path / "out", asr=asr, language="english", progress=False) == report
    assert asr.calls == []


def test_audio_dir_scores_audio_made_elsewhere(tone_set, tmp_path):
    """``audio_dir``: DIR/ID.wav is scored instead of the test set's audio (Seed-TTS-eval's output folder); SIM is
    still against the item's prompt."""
    path, hyps = tone_set
    made = tmp_path / "made"
    made.mkdir()
    for a, b in (("a", "b"), ("b", "a"), ("c", "c"), ("d", "d")):  # a and b swapped
        shutil.copy(path.parent / "wavs" / f"{b}.wav", made / f"{a}.wav")
    evaluate_asr(path, tmp_path / "out", asr=ByLength(hyps), audio_dir=str(made), progress=False)
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl").open())}
    assert (rows["a"]["hyp"], rows["b"]["hyp"]) == ("hello world", "the cat sit on mat")
    assert rows["a"]["audio"] == str(made / "a.wav")
    (made / "d.wav").unlink()
    with pytest.raises(FileNotFoundError, match=r"testset.jsonl:4 \(.*made/d.wav\)"):
        evaluate_asr(path, tmp_path / "out2", asr=ByLength(hyps), audio_dir=str(made), progress=False)


def test_a_segment_of_a_recording_is_scored_and_reconstructed(tmp_path):
    """A manifest row with ``start``/``end`` is that segment: the ASR hears it, the codec reconstructs it."""
    from qtts.models.codec import SpeechTokenizer
    from qtts.models.random_release import tiny_codec_config

    _tone(tmp_path / "long.wav", 2.0, 220)
    row = {"id": "seg", "text": "a b", "language": "en", "audio": "long.wav", "start": 0.5, "end": 1.0}
    (tmp_path / "t.jsonl").write_text(json.dumps(row) + "\n")
    asr = ByLength({8000: "a b"})
    report = evaluate_asr(tmp_path / "t.jsonl", tmp_path / "out", asr=asr, progress=False)
    assert asr.calls == [(8000, "en")] and report["systems"]["audio"]["en"]["wer"] == 0.0
    seen = []
    metrics = lambda ref, rec, rate: seen.append((len(ref), len(rec), rate)) or {}  # noqa: E731
    evaluate_codec(SpeechTokenizer(tiny_codec_config()), tmp_path / "t.jsonl", tmp_path / "codec",
                   asr=ByLength({8000: "a b"}), metrics=metrics, progress=False)
    assert seen[0][0] == 12000 and abs(seen[0][1] - 12000) < 1920 and seen[0][2] == 24000  # 0.5 s at 24 kHz


def test_empty_audio_scores_as_all_deletions(tone_set, tmp_path):
    """A clip without samples (a model that stopped at once) is not sent to the scorers: its transcript is empty
    (WER 1.0), it has no SIM or MOS, and the report counts it."""
    path, hyps = tone_set
    sf.write(path.parent / "wavs" / "b.wav", np.zeros(0, np.float32), 16000)
    asr = ByLength(hyps)
    report = evaluate_asr(path, tmp_path / "out", asr=asr, speaker_embedder=MeanEmbedder(), mos=LengthMOS(),
                          progress=False)
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl").open())}
    assert rows["b"]["empty"] and (rows["b"]["hyp"], rows["b"]["wer"]) == ("", 1.0)
    assert "sim" not in rows["b"] and "mos" not in rows["b"] and "sim" in rows["a"]
    assert len(asr.calls) == 3
    en = report["systems"]["audio"]["en"]
    # en: mean (1/3 + 1 + 1.5) / 3 × 100 = 94.44; corpus (2 + 2 + 3) / (6 + 2 + 2) × 100 = 70; b and c above 50 %
    assert "| en (WER) | 3 | 94.44 | 70.00 | 2 | 1 |" in (tmp_path / "out" / REPORT_MD).read_text()
    assert en["empty"] == 1 and en["wer"] == pytest.approx(100 * (1 / 3 + 1.0 + 1.5) / 3)


# -- TTS and codec on tiny random models ----------------------------------------------------------------------------

FRAMES, HOP = 3, 1920


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    from qtts.models.random_release import tiny_codec_config, write_random_release
    from qtts.models.talker import tiny

    return write_random_release(tmp_path_factory.mktemp("tts") / "base", tiny("base", predictor_hidden=32),
                                tiny_codec_config(), eos_scale=0)


def test_evaluate_tts_on_a_tiny_random_model(base_model, tone_set, tmp_path):
    from qtts.inference import Synthesizer

    path, _ = tone_set
    synth = Synthesizer.from_pretrained(base_model)
    out = tmp_path / "out"
    asr = ByLength({})  # noise: every transcript is empty, WER 100 %
    report = evaluate_tts(synth, path, out, asr=asr, speaker_embedder=MeanEmbedder(), batch_size=3,
                          max_new_tokens=FRAMES, progress=False)
    wavs = sorted(p.name for p in (out / "audio").iterdir())
    assert wavs == ["a.wav", "b.wav", "c.wav", "d.wav"]
    for name in wavs:
        info = sf.info(out / "audio" / name)
        assert (info.samplerate, info.frames) == (24000, FRAMES * HOP)
    rows = {json.loads(line)["id"]: json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()}
    assert set(rows) == {"a", "b", "c", "d"} and all(r["system"] == "generated" for r in rows.values())
    assert all(r["wer"] == 1.0 and r["hyp"] == "" and -1 <= r["sim"] <= 1 for r in rows.values())
    stats = report["systems"]["generated"]
    assert list(stats) == ["en", "zh", OVERALL] and stats[OVERALL]["wer"] == 100.0
    assert report["settings"]["voice"] == "auto" and report["settings"]["sampling"] == {"max_new_tokens": FRAMES}
    plain = evaluate_tts(synth, path, tmp_path / "plain", asr=ByLength({}), voice="plain", batch_size=4,
                         max_new_tokens=FRAMES, greedy=True, progress=False)
    assert plain["systems"]["generated"][OVERALL]["n"] == 4
    assert all(sf.info(p).frames == FRAMES * HOP for p in (tmp_path / "plain" / "audio").iterdir())

    # resume: a deleted wav and its row are made again, nothing else
    (out / "audio" / "c.wav").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "audio").iterdir()}
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(line for line in lines if json.loads(line)["id"] != "c"))
    asr = ByLength({})
    again = evaluate_tts(synth, path, out, asr=asr, speaker_embedder=MeanEmbedder(), batch_size=3,
                         max_new_tokens=FRAMES, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "audio").iterdir() if p.name != "c.wav"} == kept
    assert (out / "audio" / "c.wav").is_file() and len(asr.calls) == 1
    assert again["systems"]["generated"][OVERALL]["wer"] == 100.0


def test_choose_voice_by_the_items_fields_and_the_model(base_model):
    from qtts.eval.testset import TestItem
    from qtts.inference import Synthesizer

    synth = Synthesizer.from_pretrained(base_model)
    clone = TestItem("a", "Hi.", "en", speaker="nobody", ref_audio="p.wav", where="t:1")
    assert choose_voice(clone, synth) == "clone"
    with pytest.raises(ValueError, match=r"t:1: item 'a' cannot be spoken with voice='speaker'"):
        choose_voice(clone, synth, "speaker")
    with pytest.raises(ValueError, match=r"t:2: item 'b' names no voice this 'base' model can speak"):
        choose_voice(TestItem("b", "Hi.", "en", speaker="nobody", where="t:2"), synth)
    assert choose_voice(TestItem("c", "Hi.", "en"), synth) == "plain"  # no voice named: no speaker slot
    assert choose_voice(clone, synth, "plain") == "plain"
    assert choose_voice(clone, synth, "xvector") == "xvector"  # asked for; auto never picks it
    with pytest.raises(ValueError, match=r"item 'c' cannot be spoken with voice='xvector'"):
        choose_voice(TestItem("c", "Hi.", "en"), synth, "xvector")  # no prompt audio


def test_evaluate_tts_checks_every_voice_before_work(base_model, tone_set, tmp_path):
    from qtts.inference import Synthesizer

    path, _ = tone_set
    synth = Synthesizer.from_pretrained(base_model)
    (path.parent / "prompts" / "c.wav").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 prompt audio files \(ref_audio\) missing: .*testset.jsonl:3"):
        evaluate_tts(synth, path, tmp_path / "out", asr=ByLength({}), progress=False)
    with pytest.raises(ValueError, match="cannot be spoken with voice='instruct'"):
        evaluate_tts(synth, path, tmp_path / "out", asr=ByLength({}), voice="instruct", progress=False)
    assert not (tmp_path / "out").exists()


def test_evaluate_codec_on_a_tiny_random_codec(tone_set, tmp_path):
    from qtts.models.codec import SpeechTokenizer
    from qtts.models.random_release import tiny_codec_config
    from qtts.models.random_weights import randomize_codec

    codec = SpeechTokenizer(tiny_codec_config())
    randomize_codec(codec, seed=1)
    path, hyps = tone_set
    seen = []

    def metrics(reference, reconstruction, sample_rate):
        seen.append((len(reference), len(reconstruction), sample_rate))
        return {"stoi": 0.5, "pesq_wb": float("nan")}

    out = tmp_path / "out"
    report = evaluate_codec(codec, path, out, asr=ByLength(hyps), mos=LengthMOS(), metrics=metrics,
                            speaker_embedder=MeanEmbedder(), batch_size=2, progress=False)
    assert sorted(p.name for p in (out / "audio").iterdir()) == ["a.wav", "b.wav", "c.wav", "d.wav"]
    assert sorted(report["systems"]) == ["original", "reconstruction"]
    original, recon = report["systems"]["original"], report["systems"]["reconstruction"]
    # the originals are the tones the stand-in ASR knows: the same numbers as scoring them directly
    assert original["en"]["wer"] == pytest.approx(100 * (1 / 3 + 1.5) / 3)
    assert original[OVERALL]["sim"] is None and original[OVERALL]["stoi"] is None
    assert recon[OVERALL]["stoi"] == 0.5 and recon[OVERALL]["pesq_wb"] is None  # NaN: undefined, left out
    assert recon[OVERALL]["sim"] is not None and recon[OVERALL]["mos"] is not None
    assert report["settings"]["metrics"].endswith("metrics") and report["settings"]["mos"] == "length-mos"
    assert len(seen) == 4 and all(rate == 24000 for *_, rate in seen)
    for name in ("a", "d"):  # reconstructions: whole 12.5 Hz frames of the 24 kHz input
        info = sf.info(out / "audio" / f"{name}.wav")
        assert info.samplerate == 24000 and info.frames % HOP == 0 and info.frames > 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["system"], r["id"]) for r in rows) == sorted(
        (s, i) for s in ("original", "reconstruction") for i in "abcd")
    asr = ByLength(hyps)
    assert evaluate_codec(codec, path, out, asr=asr, mos=LengthMOS(), metrics=metrics,
                          speaker_embedder=MeanEmbedder(), progress=False) == report
    assert asr.calls == []


# -- the built-in ASR on espeak-ng clips, through the command ----------------------------------------------------


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_eval_asr_command_gives_the_same_numbers_for_jsonl_and_seed_tts(tmp_path, capsys):
    from data_prep.synthetic import generate_testset
    from qtts.cli import main
    from qtts.eval.asr import tiny_en_model_path

    tiny_en = ["--asr", str(tiny_en_model_path())]  # Whisper tiny.en: English-only, ~1 s a clip on CPU
    testset = generate_testset(tmp_path / "set", per_language=3, languages=["en"])
    assert main(["eval", "asr", str(testset), "--out", str(tmp_path / "a"), "--no-progress", "--sim", *tiny_en]) == 0
    assert "| en (WER) | 3 |" in capsys.readouterr().out
    assert main(["eval", "asr", str(tmp_path / "set" / "en"), "--out", str(tmp_path / "b"), "--no-progress",
                 "--json", "--sim", *tiny_en]) == 0
    printed = json.loads(capsys.readouterr().out.split("\nwrote ")[0])
    a = json.loads((tmp_path / "a" / REPORT_JSON).read_text())
    b = json.loads((tmp_path / "b" / REPORT_JSON).read_text())
    assert printed == b
    assert a["systems"] == b["systems"] and a["systems"]["audio"]["en"]["n"] == 3
    rows = [[(r["id"], r["hyp"], r["wer"], r["sim"]) for r in map(json.loads, (tmp_path / d / "results.jsonl").open())]
            for d in "ab"]
    assert sorted(rows[0]) == sorted(rows[1])
    print(a["systems"]["audio"]["en"])
    assert a["systems"]["audio"]["en"]["wer"] <= 50  # espeak-ng English through tiny.en: the floor is low
    assert a["settings"]["sim"] == "resemblyzer"
    # SIM is against each item's own prompt (same voice); against another voice's prompt it is lower
    from dataclasses import replace

    from qtts.eval.similarity import open_speaker_embedder
    from qtts.eval.testset import read_testset

    items = read_testset(testset)
    swapped = [replace(item, ref_audio=items[(i + 1) % 3].ref_audio) for i, item in enumerate(items)]
    other = evaluate_asr(swapped, tmp_path / "e", asr=ByLength({}), speaker_embedder=open_speaker_embedder(),
                         progress=False)
    same_voice, other_voice = a["systems"]["audio"]["en"]["sim"], other["systems"]["audio"]["en"]["sim"]
    print(f"SIM same voice {same_voice:.3f}, other voice {other_voice:.3f}")
    assert same_voice > 0.75 and same_voice > other_voice + 0.03

    # a check that can fail: a bad test set is exit status 2 with the file named
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n')
    assert main(["eval", "asr", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "c")]) == 2
    assert "bad.jsonl:1: field 'text': missing" in capsys.readouterr().err
    # an English-only ASR: a Chinese list fails before any work
    (tmp_path / "zh").mkdir()
    (tmp_path / "zh" / "meta.lst").write_text(f"u|p|{testset.parent}/en/wavs/en_test_0000.wav|你好。|"
                                              f"{testset.parent}/en/wavs/en_test_0000.wav\n")
    assert main(["eval", "asr", str(tmp_path / "zh"), "--out", str(tmp_path / "d"), *tiny_en]) == 2
    assert "English-only" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_eval_codec_command_with_every_metric(tmp_path, capsys):
    """``qtts eval codec`` with the real scorers (tiny.en, Resemblyzer SIM, DNSMOS, PESQ/STOI/mel distance) on a
    tiny random codec: the reconstructions are noise, the originals espeak-ng speech."""
    from data_prep.synthetic import generate_testset
    from qtts.cli import main
    from qtts.eval.asr import tiny_en_model_path
    from qtts.models.codec import SpeechTokenizer
    from qtts.models.random_release import tiny_codec_config
    from qtts.models.random_weights import randomize_codec

    codec = SpeechTokenizer(tiny_codec_config())
    randomize_codec(codec, seed=2)
    codec.save_pretrained(tmp_path / "codec")
    testset = generate_testset(tmp_path / "set", per_language=2, languages=["en"])
    assert main(["eval", "codec", str(tmp_path / "codec"), str(testset), "--out", str(tmp_path / "out"), "--sim",
                 "--mos", "--no-progress", "--asr", str(tiny_en_model_path())]) == 0
    report = json.loads((tmp_path / "out" / REPORT_JSON).read_text())
    original, recon = report["systems"]["original"]["en"], report["systems"]["reconstruction"]["en"]
    assert original["n"] == recon["n"] == 2
    assert recon["wer"] >= original["wer"]
    assert 1 <= original["mos"] <= 5 and 1 <= recon["mos"] <= 5
    assert original["sim"] is None and -1 <= recon["sim"] <= 1
    assert 1.0 <= recon["pesq_wb"] <= 4.7 and 1.0 <= recon["pesq_nb"] <= 4.6 and recon["mel_distance"] > 0
    assert recon["stoi"] is not None and original["pesq_wb"] is None  # metrics compare a reconstruction only
    assert report["settings"]["mos"] == "dnsmos" and report["settings"]["metrics"] == "reconstruction_metrics"
    out = capsys.readouterr().out
    assert "## reconstruction" in out and "## original" in out and "pesq_wb" in out


def test_item_requests_speak_items_as_the_voice_methods_do(base_model, tmp_path):
    """Test-set items become the requests the Synthesizer's voice methods build (clone in context or by x-vector,
    plain), prompts encoded in one batch per kind; generate_audio's clips equal voice_clone's with the batch's
    seed."""
    from qtts.audio.io import load_audio
    from qtts.eval.run import _batch_seed, generate_audio, item_requests
    from qtts.eval.testset import TestItem
    from qtts.inference import Synthesizer

    synth = Synthesizer.from_pretrained(base_model)
    prompts = [_tone(tmp_path / f"p{i}.wav", 0.4 + 0.1 * i, 300 + 40 * i) for i in range(2)]
    items = [TestItem("a", "Hello there.", "en", ref_audio=str(prompts[0]), ref_text="A prompt."),
             TestItem("b", "Good night.", "en", ref_audio=str(prompts[1])),
             TestItem("c", "Plain words.", "en")]
    requests = item_requests(synth, items)
    assert [r.text for r in requests] == [i.text for i in items]
    assert requests[0].prompt.in_context and requests[0].prompt.ref_text == "A prompt."
    assert requests[1].prompt is not None and not requests[1].prompt.in_context
    assert requests[2].prompt is None and requests[2].speaker is None and requests[2].instruct is None
    assert [r.non_streaming_mode for r in requests] == [False, False, True]  # voice_clone's default for clones
    alone = synth.create_voice_prompt(str(prompts[0]), "A prompt.")
    torch.testing.assert_close(requests[0].prompt.xvector, alone.xvector)
    torch.testing.assert_close(requests[0].prompt.ref_codes, alone.ref_codes)
    # the x-vector voice ignores ref_text; a text layout applies to every request
    laid_out = item_requests(synth, items[:2], "xvector", text_layout="non_streaming")
    assert not any(r.prompt.in_context for r in laid_out) and all(r.non_streaming_mode for r in laid_out)
    torch.testing.assert_close(laid_out[0].prompt.xvector, alone.xvector)
    assert [r.non_streaming_mode for r in item_requests(synth, items, text_layout="streaming")] == [False] * 3

    clones = items[:1]
    paths = generate_audio(synth, clones, tmp_path / "audio", seed=3, sampling={"max_new_tokens": FRAMES},
                           progress=False)
    expected = synth.voice_clone([clones[0].text], ref_audio=[clones[0].ref_audio], ref_text=[clones[0].ref_text],
                                 language=["en"], seed=_batch_seed(3, ["a"]), max_new_tokens=FRAMES)[0]
    written = load_audio(paths["a"], synth.sample_rate)[0][0]
    assert written.shape == expected.shape and len(expected) > 0
    torch.testing.assert_close(written, expected, atol=1e-4, rtol=0)
