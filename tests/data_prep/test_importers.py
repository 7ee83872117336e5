import json
from pathlib import Path

import pytest

from data_prep import common_voice, emilia, folder, libritts_r, mls
from data_prep.common import audio_ref
from qtts.data.manifest import read_manifest

from .conftest import write_tone


def _rejects(out: Path) -> dict[str, str]:
    """``{file name: reason}`` of the rejects report next to ``out``."""
    lines = out.with_name(out.stem + ".rejects.jsonl").read_text(encoding="utf-8").splitlines()
    return {Path(r["path"]).name: r["reason"] for r in map(json.loads, lines)}


def _broken(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF but not really a wave file" * 10)
    return path


def test_audio_ref_is_relative_only_below_the_manifest(tmp_path):
    audio = tmp_path / "corpus" / "spk" / "a.wav"
    assert audio_ref(audio, tmp_path / "corpus" / "m.jsonl") == "spk/a.wav"
    assert audio_ref(audio, tmp_path / "elsewhere" / "m.jsonl") == str(audio)
    assert audio_ref(audio, None) == str(audio)


def test_folder_import(tmp_path):
    root = tmp_path / "voice"
    write_tone(root / "alice" / "a1.wav", 0.5)
    (root / "alice" / "a1.txt").write_text("\ufeffHello  there.\n", encoding="utf-8")
    write_tone(root / "alice" / "take2" / "a2.flac", 0.75, sr=24000)
    (root / "alice" / "take2" / "a2.lab").write_text("Second take", encoding="utf-8")
    write_tone(root / "bob" / "b1.mp3", 1.0, sr=22050)
    (root / "bob" / "b1.txt").write_text("Bonjour", encoding="utf-8")
    write_tone(root / "bob" / "b2.wav")  # no transcript
    write_tone(root / "bob" / "b3.wav")
    (root / "bob" / "b3.txt").write_text("  \n", encoding="utf-8")
    _broken(root / "bob" / "b4.wav")
    (root / "bob" / "b4.txt").write_text("broken audio", encoding="utf-8")
    write_tone(root / "top.ogg", 0.25)
    (root / "top.txt").write_text("at the top", encoding="utf-8")

    out = root / "manifest.jsonl"
    result = folder.import_folder(root, out, language="english", workers=1)
    by_id = {r.id: r for r in read_manifest(out)}
    assert sorted(by_id) == ["alice_a1", "alice_take2_a2", "bob_b1", "top"]
    assert by_id["alice_a1"].text == "Hello there."
    assert by_id["alice_take2_a2"].speaker == "alice" and by_id["top"].speaker == "voice"
    assert {r.language for r in by_id.values()} == {"en"}
    for row, seconds in zip((by_id[k] for k in ("alice_a1", "alice_take2_a2", "bob_b1", "top")),
                            (0.5, 0.75, 1.0, 0.25)):
        assert row.duration == pytest.approx(seconds, abs=0.03)
        assert Path(row.audio).is_file()
    raw = [json.loads(line) for line in out.read_text().splitlines()]
    assert raw[0]["audio"] == "alice/a1.wav"  # the manifest sits above the audio: relative paths
    rejects = _rejects(out)
    assert set(rejects) == {"b2.wav", "b3.wav", "b4.wav"}
    assert rejects["b2.wav"].startswith("no transcript") and rejects["b3.wav"].startswith("empty transcript")
    assert rejects["b4.wav"].startswith("unreadable audio")
    assert len(result.rows) == 4 and len(result.rejects) == 3

    elsewhere = tmp_path / "out" / "m.jsonl"
    assert folder.main([str(root), str(elsewhere), "--language", "fr", "--speaker", "narrator"]) == 0
    raw = [json.loads(line) for line in elsewhere.read_text().splitlines()]
    assert all(Path(r["audio"]).is_absolute() and r["speaker"] == "narrator" and r["language"] == "fr" for r in raw)
    with pytest.raises(KeyError):
        folder.import_folder(root, None, language="klingon")


def test_libritts_r_import(tmp_path):
    root = tmp_path / "LibriTTS_R"
    chapter = root / "train-clean-100" / "84" / "121123"
    write_tone(chapter / "84_121123_000007_000001.wav", 0.6, sr=24000)
    (chapter / "84_121123_000007_000001.normalized.txt").write_text("Twenty one pilots.", encoding="utf-8")
    (chapter / "84_121123_000007_000001.original.txt").write_text("21 pilots.", encoding="utf-8")
    write_tone(chapter / "84_121123_000008_000000.wav", 0.4, sr=24000)
    (chapter / "84_121123_000008_000000.original.txt").write_text("Only the original.", encoding="utf-8")
    write_tone(chapter / "84_121123_000009_000000.wav", 0.4, sr=24000)  # no text at all
    _broken(chapter / "84_121123_000010_000000.wav")
    (chapter / "84_121123_000010_000000.normalized.txt").write_text("Broken.", encoding="utf-8")
    dev = root / "dev-clean" / "1272" / "128104"
    write_tone(dev / "1272_128104_000001_000000.wav", 0.3, sr=24000)
    (dev / "1272_128104_000001_000000.normalized.txt").write_text("Dev set.", encoding="utf-8")

    out = tmp_path / "libritts.jsonl"
    result = libritts_r.import_libritts_r(root, out)
    rows = {r.id: r for r in result.rows}
    assert sorted(rows) == ["libritts_1272_128104_000001_000000", "libritts_84_121123_000007_000001",
                            "libritts_84_121123_000008_000000"]
    first = rows["libritts_84_121123_000007_000001"]
    assert first.text == "Twenty one pilots." and first.speaker == "libritts_84" and first.language == "en"
    assert first.extra == {"subset": "train-clean-100", "chapter": "121123"}
    assert first.duration == pytest.approx(0.6, abs=1e-3)
    assert rows["libritts_84_121123_000008_000000"].text == "Only the original."
    rejects = _rejects(out)
    assert rejects["84_121123_000009_000000.wav"].startswith("no transcript")
    assert rejects["84_121123_000010_000000.wav"].startswith("unreadable audio")

    only_train = libritts_r.import_libritts_r(root, None, subsets=["train-clean-100"], workers=1)
    assert {r.extra["subset"] for r in only_train.rows} == {"train-clean-100"}
    assert all(Path(r.audio).is_absolute() for r in only_train.rows)
    # pointing at one subset folder works too
    assert len(libritts_r.import_libritts_r(root / "dev-clean", None, workers=1).rows) == 1


CV_HEADER = ("client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender"
             "\taccents\tvariant\tlocale\tsegment")


def _cv_locale(root: Path, locale: str, clips: list[tuple[str, str, str]], tsv: str = "validated.tsv",
               write_audio=True):
    folder = root / locale
    lines = [CV_HEADER]
    for client, clip, sentence in clips:
        lines.append(f"{client}\t{clip}\t{clip}x\t{sentence}\t\t2\t0\ttwenties\tfemale_feminine\t\t\t{locale}\t")
        if write_audio:
            write_tone(folder / "clips" / clip, 0.5, sr=48000)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / tsv).write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_common_voice_import(tmp_path):
    root = tmp_path / "cv-corpus"
    client = "a" * 40 + "b" * 88
    _cv_locale(root, "de", [(client, "common_voice_de_1.mp3", 'Er sagte: "Hallo" und ging.'),
                            ("c" * 128, "common_voice_de_2.mp3", "Guten Morgen.")])
    (root / "de" / "clips" / "common_voice_de_2.mp3").unlink()  # listed but missing
    _cv_locale(root, "zh-CN", [("d" * 128, "common_voice_zh-CN_7.mp3", "你好。")])
    _cv_locale(root, "zh-HK", [("e" * 128, "common_voice_zh-HK_9.mp3", "你好。")])
    _cv_locale(root, "pt", [("f" * 128, "common_voice_pt_3.mp3", "Bom dia.")])

    out = root / "cv.jsonl"
    result = common_voice.import_common_voice(root, out)
    rows = {r.id: r for r in read_manifest(out)}
    assert sorted(rows) == ["common_voice_de_1", "common_voice_pt_3", "common_voice_zh-CN_7"]
    de = rows["common_voice_de_1"]
    assert de.text == 'Er sagte: "Hallo" und ging.'  # quotes survive: the tsv is not CSV-quoted
    assert de.speaker == "cv_de_" + "a" * 12 and de.language == "de"
    assert de.extra == {"age": "twenties", "gender": "female_feminine"}
    assert de.duration == pytest.approx(0.5, abs=0.03)
    assert rows["common_voice_zh-CN_7"].language == "zh" and rows["common_voice_pt_3"].language == "pt"
    rejects = _rejects(out)
    assert rejects["common_voice_de_2.mp3"].startswith("missing audio")
    assert rejects["zh-HK"].startswith("unsupported locale")
    assert len(result.rejects) == 2

    # reading train + dev of one locale folder: a clip in both is imported once
    _cv_locale(root, "de", [(client, "common_voice_de_1.mp3", "Eins.")], tsv="train.tsv", write_audio=False)
    _cv_locale(root, "de", [(client, "common_voice_de_1.mp3", "Eins.")], tsv="dev.tsv", write_audio=False)
    args = [str(root / "de"), str(tmp_path / "de.jsonl"), "--splits", "train,dev", "--workers", "1"]
    assert common_voice.main(args) == 0
    assert [r.text for r in read_manifest(tmp_path / "de.jsonl")] == ["Eins."]


def test_mls_import(tmp_path):
    root = tmp_path / "mls"
    german = root / "mls_german" / "train"
    (german).mkdir(parents=True)
    (german / "transcripts.txt").write_text(
        "1844_1208_000001\tdas ist der erste satz\n"
        "1844_1208_000002\tder zweite satz\n"
        "1844_1208_000003\tohne audio\n"
        "not-an-id\tkaputte zeile\n", encoding="utf-8")
    write_tone(german / "audio" / "1844" / "1208" / "1844_1208_000001.flac", 0.5)
    write_tone(german / "audio" / "1844" / "1208" / "1844_1208_000002.flac", 0.7)
    portuguese = root / "mls_portuguese_opus" / "dev"
    portuguese.mkdir(parents=True)
    (portuguese / "transcripts.txt").write_text("12_34_000005\tbom dia a todos\n", encoding="utf-8")
    write_tone(portuguese / "audio" / "12" / "34" / "12_34_000005.opus", 0.5, sr=48000)
    dutch = root / "mls_dutch" / "test"
    dutch.mkdir(parents=True)
    (dutch / "transcripts.txt").write_text("1_2_3\tgoedemorgen\n", encoding="utf-8")

    out = root / "mls.jsonl"
    result = mls.import_mls(root, out)
    rows = {r.id: r for r in read_manifest(out)}
    assert sorted(rows) == ["mls_de_1844_1208_000001", "mls_de_1844_1208_000002", "mls_pt_12_34_000005"]
    first = rows["mls_de_1844_1208_000001"]
    assert (first.text, first.language, first.speaker) == ("das ist der erste satz", "de", "mls_de_1844")
    assert first.extra == {"split": "train", "book": "1208"}
    assert rows["mls_de_1844_1208_000002"].duration == pytest.approx(0.7, abs=1e-3)
    assert rows["mls_pt_12_34_000005"].duration == pytest.approx(0.5, abs=0.03)
    assert rows["mls_pt_12_34_000005"].audio.endswith(".opus")
    rejects = _rejects(out)
    assert rejects["1844_1208_000003.flac"].startswith("missing audio")
    assert rejects["transcripts.txt:4"].startswith("bad line")
    assert rejects["mls_dutch"].startswith("unsupported language")
    assert len(result.rejects) == 3
    assert [r.id for r in mls.import_mls(root / "mls_portuguese_opus", None, workers=1).rows] == ["mls_pt_12_34_000005"]
    assert mls.import_mls(root, None, splits=["test"], workers=1).rows == []


def _emilia_pair(folder: Path, utt_id: str, language: str, speaker: str, text: str, audio=True, **extra) -> Path:
    meta = {"id": utt_id, "wav": f"{utt_id.rsplit('_', 1)[0]}/mp3/{utt_id}.mp3", "text": text,
            "duration": 99.0, "speaker": speaker, "language": language, **extra}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{utt_id}.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    if audio:
        write_tone(folder / f"{utt_id}.mp3", 0.5, sr=24000)
    return folder / f"{utt_id}.json"


def test_emilia_import(tmp_path):
    root = tmp_path / "Emilia"
    _emilia_pair(root / "ZH" / "ZH-B000000", "ZH_B000000_S000001_W000000", "zh", "ZH_B000000_S000001", " 你好，世界。 ",
                 dnsmos=3.4)
    _emilia_pair(root / "DE" / "DE-B000000", "DE_B000000_S000002_W000003", "de", "DE_B000000_S000002", "Guten Tag.")
    _emilia_pair(root / "DE" / "DE-B000000", "DE_B000000_S000002_W000004", "de", "DE_B000000_S000002", "Ohne Ton.",
                 audio=False)
    _emilia_pair(root / "XX", "XX_B000000_S000000_W000000", "xx", "XX_B000000_S000000", "unknown")
    (root / "DE" / "DE-B000000" / "DE_bad.json").write_text("{not json", encoding="utf-8")

    out = tmp_path / "emilia.jsonl"
    result = emilia.import_emilia(root, out)
    rows = {r.id: r for r in result.rows}
    assert sorted(rows) == ["emilia_DE_B000000_S000002_W000003", "emilia_ZH_B000000_S000001_W000000"]
    zh = rows["emilia_ZH_B000000_S000001_W000000"]
    assert (zh.text, zh.language, zh.speaker) == ("你好，世界。", "zh", "emilia_ZH_B000000_S000001")
    assert zh.extra == {"dnsmos": 3.4}
    assert zh.duration == pytest.approx(0.5, abs=0.03)  # measured, not the json's 99 s
    assert zh.audio == "Emilia/ZH/ZH-B000000/ZH_B000000_S000001_W000000.mp3"  # the mp3 next to the json
    rejects = _rejects(out)
    assert rejects["DE_B000000_S000002_W000004.mp3"].startswith("missing audio")
    assert rejects["XX_B000000_S000000_W000000.json"].startswith("unsupported language")
    assert rejects["DE_bad.json"].startswith("bad json")
    assert emilia.main([str(root), str(tmp_path / "de.jsonl"), "--languages", "german", "--workers", "1"]) == 0
    assert [r.language for r in read_manifest(tmp_path / "de.jsonl")] == ["de"]
