"""``qtts synth`` end to end on tiny random models (CPU): file naming, lengths, resume, the three voices, errors.

The models are written with ``eos_scale=0``: EOS never wins, so every sentence gives exactly ``--max-new-tokens``
frames (1920 samples each at 24 kHz) and the output lengths are known in advance.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

from qtts.cli import main

FRAMES = 4  # --max-new-tokens: frames per sentence
HOP = 1920
RATE = 24000
FAST = ["--max-new-tokens", str(FRAMES), "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from qtts.models.random_release import tiny_codec_config, write_random_release
    from qtts.models.talker import tiny

    root = tmp_path_factory.mktemp("synth_models")
    return {kind: write_random_release(root / kind, tiny(kind, predictor_hidden=32), tiny_codec_config(), eos_scale=0)
            for kind in ("custom_voice", "base", "voice_design")}


def _read(path):
    wav, rate = sf.read(str(path), dtype="float32")
    return wav, rate


def test_custom_voice_text_two_sentences(models, tmp_path, capsys):
    out = tmp_path / "hello.wav"
    assert main(["synth", str(models["custom_voice"]), "--text", "Hello there. How are you today?",
                 "--speaker", "Ryan", "--language", "english", "--pause", "0.25", "--out", str(out), *FAST]) == 0
    wav, rate = _read(out)
    assert rate == RATE
    assert len(wav) == 2 * FRAMES * HOP + round(0.25 * RATE)  # two sentences and one pause
    silence = wav[FRAMES * HOP: FRAMES * HOP + round(0.25 * RATE)]
    assert np.all(silence == 0)
    assert "wrote 1 files" in capsys.readouterr().out

    folder = tmp_path / "folder"  # an --out without .wav is a folder
    assert main(["synth", str(models["custom_voice"]), "--text", "One sentence only.", "--speaker", "ryan",
                 "--greedy", "--out", str(folder), *FAST]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["0000.wav"]
    assert len(_read(folder / "0000.wav")[0]) == FRAMES * HOP


def test_text_file_batches_manifest_and_resume(models, tmp_path, capsys):
    lines = tmp_path / "lines.txt"
    lines.write_text("First line. It has two sentences.\n\n  \nintro\tThe named one.\nThird line.\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["synth", str(models["custom_voice"]), "--text-file", str(lines), "--speaker", "aiden",
            "--batch-size", "2", "--pause", "0.1", "--out", str(out), *FAST]
    assert main(argv) == 0
    assert "wrote 3 files" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["0000.wav", "0002.wav", "intro.wav", "manifest.jsonl"]
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(r["id"], r["text"], r["audio"]) for r in rows] == [
        ("0000", "First line. It has two sentences.", "0000.wav"),
        ("intro", "The named one.", "intro.wav"),
        ("0002", "Third line.", "0002.wav"),
    ]
    frames = [2 * FRAMES * HOP + round(0.1 * RATE), FRAMES * HOP, FRAMES * HOP]
    for row, n in zip(rows, frames):
        assert len(_read(out / row["audio"])[0]) == n
        assert math.isclose(row["duration"], n / RATE, abs_tol=1e-3)

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")}
    assert main(argv) == 0  # resume: everything exists already
    printed = capsys.readouterr().out
    assert "skipped 3 of 3" in printed and "wrote 0 files" in printed
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")} == mtimes
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 3

    (out / "intro.wav").unlink()  # a killed job: only the missing file is made again
    assert main(argv) == 0
    assert "skipped 2 of 3" in capsys.readouterr().out
    assert (out / "intro.wav").is_file()


def test_text_file_rejects_bad_ids(models, tmp_path, capsys):
    for bad in ("../up\tEscaping.", ".hidden\tHidden."):
        lines = tmp_path / "bad.txt"
        lines.write_text(f"Fine.\n{bad}\n", encoding="utf-8")
        with pytest.raises(SystemExit) as e:
            main(["synth", str(models["custom_voice"]), "--text-file", str(lines), "--speaker", "aiden",
                  "--out", str(tmp_path / "o"), *FAST])
        assert e.value.code == 2
        assert "bad id" in capsys.readouterr().err


def test_voice_clone_prompt_reuse(models, tmp_path, capsys):
    rate = 16000
    t = np.arange(int(1.5 * rate)) / rate
    noise = np.random.default_rng(0).normal(0, 0.02, len(t))
    ref = tmp_path / "ref.wav"
    sf.write(str(ref), (0.3 * np.sin(2 * np.pi * 220 * t) + noise).astype(np.float32), rate)
    prompt = tmp_path / "voice.safetensors"
    text = "A cloned voice. It stays the same."
    first, second = tmp_path / "first.wav", tmp_path / "second.wav"
    assert main(["synth", str(models["base"]), "--text", text, "--ref-audio", str(ref), "--ref-text", "A reference.",
                 "--save-prompt", str(prompt), "--greedy", "--out", str(first), *FAST]) == 0
    assert prompt.is_file()
    assert main(["synth", str(models["base"]), "--text", text, "--prompt", str(prompt), "--greedy",
                 "--out", str(second), *FAST]) == 0
    a, b = _read(first)[0], _read(second)[0]
    assert len(a) == 2 * FRAMES * HOP + round(0.25 * RATE)
    np.testing.assert_array_equal(a, b)


def test_voice_design(models, tmp_path):
    out = tmp_path / "design"
    assert main(["synth", str(models["voice_design"]), "--text", "Designed voice.", "--instruct",
                 "A calm, low voice.", "--seed", "3", "--out", str(out), *FAST]) == 0
    assert len(_read(out / "0000.wav")[0]) == FRAMES * HOP


def test_unknown_speaker_is_a_one_line_error(models, tmp_path, capsys):
    assert main(["synth", str(models["custom_voice"]), "--text", "Hi.", "--speaker", "nobody_here",
                 "--out", str(tmp_path / "x.wav"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "nobody_here" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.wav").exists()


def test_unknown_language_is_a_one_line_error(models, tmp_path, capsys):
    assert main(["synth", str(models["custom_voice"]), "--text", "Hi.", "--speaker", "ryan", "--language",
                 "klingon", "--out", str(tmp_path / "x.wav"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "klingon" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra, message", [
    (["--ref-audio", "REF"], "--ref-text"),
    (["--ref-audio", "REF", "--speaker", "ryan", "--x-vector-only"], "--speaker"),
    (["--ref-text", "words"], "--ref-audio"),
    (["--save-prompt", "p.safetensors", "--speaker", "ryan"], "--save-prompt"),
    ([], "choose a voice"),
])
def test_inconsistent_voice_options(models, tmp_path, capsys, extra, message):
    ref = tmp_path / "ref.wav"
    sf.write(str(ref), np.zeros(1600, dtype=np.float32), 16000)
    extra = [str(ref) if x == "REF" else x for x in extra]
    with pytest.raises(SystemExit) as e:
        main(["synth", str(models["base"]), "--text", "Hi.", "--out", str(tmp_path / "x.wav"), *extra, *FAST])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_named_speaker_of_a_base_folder(models, tmp_path, capsys):
    """A Base folder that has named speakers (``qtts speakers add``, a custom-voice fine-tune's run and export)
    speaks by name through the CLI as through ``Synthesizer.custom_voice``; it was refused for its model type."""
    import shutil

    folder = tmp_path / "base_with_alice"
    shutil.copytree(models["base"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["talker_config"] |= {"spk_id": {"alice": 3000}, "spk_is_dialect": {"alice": False}}
    (folder / "config.json").write_text(json.dumps(config))
    out = tmp_path / "alice.wav"
    assert main(["synth", str(folder), "--speaker", "alice", "--text", "Hello there.", "--out", str(out),
                 *FAST]) == 0
    assert len(_read(out)[0]) == FRAMES * HOP
    other = tmp_path / "other.wav"  # not `out`: an existing output is skipped without loading the model
    assert main(["synth", str(folder), "--speaker", "bob", "--text", "Hi.", "--out", str(other), *FAST]) == 2
    assert "speaker 'bob' is not one of this model's: ['alice']" in capsys.readouterr().err
    assert main(["synth", str(folder), "--instruct", "A low voice.", "--text", "Hi.", "--out", str(other),
                 *FAST]) == 2
    assert "needs a VoiceDesign model; this one is 'base'" in capsys.readouterr().err
