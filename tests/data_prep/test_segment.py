import json
import math

import pytest
import soundfile as sf
import torch

from data_prep import segment
from data_prep.segment import find_speech_segments, read_cues, segment_manifest
from qtts.audio.io import load_audio
from qtts.data.manifest import Utterance, read_manifest, write_manifest

SR = 16000
TOL = 0.05


def _tone(seconds, freq=220.0, amp=0.3):
    t = torch.arange(int(round(seconds * SR))) / SR
    # two partials and a slow tremolo, closer to a voice than a pure sine
    return amp * (0.7 * torch.sin(2 * math.pi * freq * t) + 0.3 * torch.sin(2 * math.pi * 3 * freq * t)) \
        * (0.8 + 0.2 * torch.sin(2 * math.pi * 4 * t))


def _silence(seconds):
    return torch.zeros(int(round(seconds * SR)))


def _noisy(parts, noise=0.003, seed=0):
    wav = torch.cat(parts)
    return wav + noise * torch.randn(wav.shape, generator=torch.Generator().manual_seed(seed))


def _assert_close(found, expected):
    assert len(found) == len(expected), f"found {found}, expected {expected}"
    for (fs, fe), (es, ee) in zip(found, expected):
        assert abs(fs - es) <= TOL and abs(fe - ee) <= TOL, f"found {found}, expected {expected}"


# 1.0-2.5 speech, 0.8 s pause, 3.3-3.9 + 0.15 s gap (bridged) + 4.05-4.55, a 0.1 s click (dropped)
SCENE = [_silence(1.0), _tone(1.5), _silence(0.8), _tone(0.6, 330), _silence(0.15), _tone(0.5),
         _silence(1.2), _tone(0.1, 500), _silence(1.0)]
SCENE_SPEECH = [(1.0, 2.5), (3.3, 4.55)]


@pytest.mark.parametrize("amp, noise", [(0.3, 0.003), (0.01, 0.0001), (0.5, 0.03)], ids=["normal", "quiet", "noisy"])
def test_finds_tones_between_silences_at_any_level(amp, noise):
    wav = _noisy([part * (amp / 0.3) for part in SCENE], noise=noise)
    _assert_close(find_speech_segments(wav, SR, pad_s=0.0), SCENE_SPEECH)


def test_padding_adds_context_but_stops_halfway_into_a_short_pause():
    wav = _noisy(SCENE)
    _assert_close(find_speech_segments(wav, SR, pad_s=0.1), [(0.9, 2.6), (3.2, 4.65)])
    _assert_close(find_speech_segments(wav, SR, pad_s=0.6), [(0.4, 2.9), (2.9, 5.15)])
    # a stereo tensor and a longer minimum pause: the two regions merge
    stereo = torch.stack([wav, wav])
    _assert_close(find_speech_segments(stereo, SR, pad_s=0.0, min_silence_s=1.0), [(1.0, 4.55)])


def test_silence_and_steady_noise_have_no_speech():
    assert find_speech_segments(torch.zeros(SR * 2), SR) == []
    assert find_speech_segments(_noisy([_silence(3.0)], noise=0.05), SR) == []
    assert find_speech_segments(torch.zeros(0), SR) == []


def test_long_speech_is_split_at_its_quietest_point():
    # 10 s of sound whose only low point is a 0.25 s dip at 6.0-6.25 s (too short to count as a pause)
    wav = _noisy([_silence(0.5), _tone(5.5), _tone(0.25, amp=0.01), _tone(4.0), _silence(0.5)])
    found = find_speech_segments(wav, SR, pad_s=0.0, max_segment_s=8.0)
    _assert_close([(found[0][0], found[-1][1])], [(0.5, 10.25)])
    assert len(found) == 2 and found[0][1] == found[1][0]
    assert 6.0 <= found[0][1] <= 6.25, found  # the cut lies in the dip
    assert len(find_speech_segments(wav, SR, pad_s=0.0, max_segment_s=12.0)) == 1

    # no low point at all: equal pieces, none longer than the maximum nor shorter than a quarter of it
    steady = _noisy([_silence(2.0), _tone(12.0), _silence(2.0)])
    pieces = find_speech_segments(steady, SR, pad_s=0.0, max_segment_s=5.0)
    assert pieces[0][0] == pytest.approx(2.0, abs=TOL) and pieces[-1][1] == pytest.approx(14.0, abs=TOL)
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    assert all(1.25 <= e - s <= 5.0 for s, e in pieces), pieces
    with pytest.raises(ValueError):
        find_speech_segments(steady, SR, max_segment_s=0.3)


def test_read_cues_srt_and_vtt(tmp_path):
    srt = tmp_path / "a.srt"
    srt.write_text("1\n00:00:01,000 --> 00:00:02,500\nHello <i>there</i>\n\n2\n00:00:03,300 --> 00:00:04,550\n"
                   "General\nKenobi\n", encoding="utf-8")
    assert read_cues(srt) == [(1.0, 2.5, "Hello there"), (3.3, 4.55, "General Kenobi")]
    vtt = tmp_path / "b.vtt"
    vtt.write_text("WEBVTT\n\n00:01.000 --> 00:02.500 align:start\nHello\n", encoding="utf-8")
    assert read_cues(vtt) == [(1.0, 2.5, "Hello")]


def test_segment_manifest_from_a_folder_with_subtitles(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    sf.write(corpus / "talk.wav", _noisy(SCENE).numpy(), SR, subtype="PCM_16")
    (corpus / "talk.srt").write_text("1\n00:00:01,000 --> 00:00:02,500\nfirst part\n\n"
                                     "2\n00:00:03,300 --> 00:00:04,500\nsecond part\n", encoding="utf-8")
    sf.write(corpus / "quiet.wav", _noisy([_tone(0.8), _silence(1.0), _tone(0.8)]).numpy(), SR)
    (corpus / "broken.wav").write_bytes(b"not audio" * 50)

    out = corpus / "segments.jsonl"
    result = segment_manifest(corpus, out, language="de", pad_s=0.0)
    rows = {r.id: r for r in read_manifest(out)}
    assert sorted(rows) == ["quiet_0000", "quiet_0001", "talk_0000", "talk_0001"]
    talk = [rows["talk_0000"], rows["talk_0001"]]
    _assert_close([(r.start, r.end) for r in talk], SCENE_SPEECH)
    assert [r.text for r in talk] == ["first part", "second part"]
    assert rows["quiet_0000"].text == "" and rows["quiet_0000"].speaker == "quiet"
    assert rows["talk_0001"].duration == pytest.approx(rows["talk_0001"].end - rows["talk_0001"].start, abs=1e-3)
    assert all(r.language == "de" for r in rows.values())
    assert json.loads(out.read_text().splitlines()[0])["audio"] == "quiet.wav"
    assert [r.path.endswith("broken.wav") for r in result.rejects] == [True]
    talk = rows["talk_0000"]
    wav, _ = load_audio(talk.audio, sample_rate=None, start=talk.start, end=talk.end)
    assert wav.shape[-1] == pytest.approx(1.5 * SR, abs=TOL * SR)
    with pytest.raises(ValueError, match="language"):
        segment_manifest(corpus / "talk.wav", tmp_path / "x.jsonl")


def test_segment_manifest_respects_row_start_and_end(tmp_path):
    sf.write(tmp_path / "long.wav", _noisy(SCENE + SCENE).numpy(), SR, subtype="PCM_16")
    scene = sum(len(p) for p in SCENE) / SR
    source = tmp_path / "in.jsonl"
    write_manifest(source, [Utterance("book", "long.wav", "whole chapter", "en", "reader", start=scene, end=2 * scene,
                                      extra={"dnsmos": 3.1})])
    out = tmp_path / "out.jsonl"
    assert segment.main([str(source), str(out), "--pad", "0", "--workers", "1"]) == 0
    rows = read_manifest(out)
    _assert_close([(r.start, r.end) for r in rows], [(s + scene, e + scene) for s, e in SCENE_SPEECH])
    assert [r.id for r in rows] == ["book_0000", "book_0001"]
    assert all(r.speaker == "reader" and r.text == "" and r.extra == {"dnsmos": 3.1, "source_id": "book"} for r in rows)
