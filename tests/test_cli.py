"""The `qtts` command line on a small real corpus: exit codes, files written, summary printed."""

from __future__ import annotations

import json

from qtts.cli import main


def test_validate_build_summary(tiny_corpus, tmp_path, capsys):
    manifest = tiny_corpus.parent / "validated" / "clean.jsonl"
    assert main(["data", "validate", str(manifest), str(tmp_path / "v"), "--workers", "1"]) == 0
    assert len((tmp_path / "v" / "clean.jsonl").read_text().splitlines()) == 18
    assert main(["data", "build", str(tmp_path / "v" / "clean.jsonl"), str(tmp_path / "corpus")]) == 0
    capsys.readouterr()
    assert main(["data", "summary", str(tmp_path / "corpus"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["utterances"] == 18
    assert {k: v["speakers"] for k, v in summary["languages"].items()} == {"de": 3, "en": 3}
    from datasets import load_from_disk

    row = load_from_disk(str(tmp_path / "corpus"))[0]
    assert row["text_ids"] and 77091 not in row["text_ids"]  # content ids only, no ChatML role


def test_validate_exits_nonzero_when_nothing_is_usable(tmp_path, capsys):
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "a", "audio": "missing.wav", "text": "t",
                                                  "language": "en", "speaker": "s"}) + "\n")
    assert main(["data", "validate", str(tmp_path / "m.jsonl"), str(tmp_path / "out"), "--workers", "1"]) == 1
    assert "no usable row" in capsys.readouterr().err


def test_validate_registers_a_new_language(tiny_corpus, tmp_path, capsys):
    row = json.loads((tiny_corpus.parent / "validated" / "clean.jsonl").read_text().splitlines()[0])
    row["language"] = "xqz"
    row["audio"] = str((tiny_corpus.parent / "validated" / row["audio"]).resolve()) \
        if not row["audio"].startswith("/") else row["audio"]
    (tmp_path / "m.jsonl").write_text(json.dumps(row) + "\n")
    assert main(["data", "validate", str(tmp_path / "m.jsonl"), str(tmp_path / "a"), "--workers", "1"]) == 1
    assert "xqz" in (tmp_path / "a" / "rejects.jsonl").read_text()
    assert main(["data", "validate", str(tmp_path / "m.jsonl"), str(tmp_path / "b"), "--workers", "1",
                 "--language", "xqz:testish"]) == 0
    assert json.loads((tmp_path / "b" / "clean.jsonl").read_text())["language"] == "xqz"
    assert main(["data", "validate", str(tmp_path / "m.jsonl"), str(tmp_path / "c"), "--language", "xqy"]) == 2



def _defaults(func) -> dict:
    import inspect

    return {n: p.default for n, p in inspect.signature(func).parameters.items() if p.default is not p.empty}


def test_flags_default_to_the_library(monkeypatch, tmp_path):
    """Each command given no optional flag calls its library function with the library's defaults, so a default
    changed in the library changes the command (no default is written twice)."""
    import functools

    from qtts import demo, inference
    from qtts.adapters import speakers
    from qtts.data import corpus, validate
    from qtts.data import extract_codes as extract
    from qtts.inference import long_form
    from qtts.tasks import talker_eval
    from qtts.text import tokenizer

    calls = {}

    def fake(module, name, result):
        """Replace ``module.name`` by a recorder (with its signature, which the command reads its defaults from);
        the real function's keyword defaults."""
        real = getattr(module, name)

        @functools.wraps(real)
        def record(*args, **kwargs):
            calls[name] = (args, kwargs)
            return result
        monkeypatch.setattr(module, name, record)
        return _defaults(real)

    def passed_defaults(name, defaults, but=()):
        """The keywords the command passed to ``name`` that have a library default, checked equal to it."""
        kwargs = {n: v for n, v in calls[name][1].items() if n in defaults and n not in but}
        assert kwargs == {n: defaults[n] for n in kwargs}, name
        return set(kwargs)

    fake(validate, "validate_manifest", validate.ValidationReport(clean=1))
    assert main(["data", "validate", "M", str(tmp_path / "v")]) == 0
    assert calls["validate_manifest"][0][2] == validate.ValidationConfig()

    fake(extract, "extract_codes", {"rows": 1, "frames": 1, "rejected": 0})
    assert main(["data", "extract-codes", "M", "CODEC", str(tmp_path / "x")]) == 0
    assert calls["extract_codes"][0][3] == extract.ExtractConfig()

    monkeypatch.setattr(tokenizer, "load_text_tokenizer", lambda folder: None)
    defaults = fake(corpus, "build_corpus", [])
    assert main(["data", "build", "M", str(tmp_path / "b")]) == 0
    assert passed_defaults("build_corpus", defaults, but=("encode_text",)) == {"rows_per_shard"}

    defaults = fake(speakers, "add_speakers_from_corpus", {"alice": 3000})
    assert main(["speakers", "add", "BASE", "CORPUS", str(tmp_path / "s")]) == 0
    assert passed_defaults("add_speakers_from_corpus", defaults) == {"speakers", "codec", "start", "max_clips"}

    defaults = fake(talker_eval, "evaluate_talker_on_codes", ({}, "clone"))
    assert main(["eval-talker", "MODEL", "CODES"]) == 0
    assert passed_defaults("evaluate_talker_on_codes", defaults) == {"by", "layout", "languages", "max_rows"}

    from qtts.eval import run as eval_run

    common = {"asr", "language", "speaker_embedder", "mos", "batch_size", "device", "progress"}
    report = {"kind": "asr", "settings": {}, "systems": {}}
    defaults = fake(eval_run, "evaluate_asr", report)
    assert main(["eval", "asr", "SET", "--out", str(tmp_path / "ea")]) == 0
    assert passed_defaults("evaluate_asr", defaults) == common | {"audio_dir"}
    defaults = fake(eval_run, "evaluate_tts", report)
    assert main(["eval", "tts", "MODEL", "SET", "--out", str(tmp_path / "et")]) == 0
    assert passed_defaults("evaluate_tts", defaults) == common | {"codec", "voice", "text_layout", "seed",
                                                                  "max_new_tokens", "greedy"}
    defaults = fake(eval_run, "evaluate_codec", report)
    assert main(["eval", "codec", "CODEC", "SET", "--out", str(tmp_path / "ec")]) == 0
    assert passed_defaults("evaluate_codec", defaults) == common | {"metrics"}

    from qtts.eval import pairs

    defaults = fake(pairs, "mine_pairs", {"prompts": 1, "pairs": 1})
    assert main(["mine-pairs", "MODEL", "SET", "--out", str(tmp_path / "mp")]) == 0
    assert calls["mine_pairs"][0] == ("MODEL", "SET", str(tmp_path / "mp"))
    assert passed_defaults("mine_pairs", defaults) == set(defaults)  # rewards: None, the library's RewardConfig()
    assert calls["mine_pairs"][1]["rewards"] is None

    defaults = fake(demo, "run_demo", 0)
    assert main(["demo"]) == 0
    assert passed_defaults("run_demo", defaults) == set(defaults)

    class Synth:
        sample_rate = 24000

        @classmethod
        def from_pretrained(cls, model, **kwargs):
            calls["from_pretrained"] = ((model,), kwargs)
            return cls()

        def check_voice(self, **kwargs):
            pass
    real = inference.Synthesizer.from_pretrained
    monkeypatch.setattr(inference, "Synthesizer", Synth)
    defaults = fake(long_form, "synthesize_to_files", (1, 1.0))
    assert main(["synth", "MODEL", "--text", "Hi.", "--speaker", "ryan", "--out", str(tmp_path / "o.wav")]) == 0
    assert passed_defaults("synthesize_to_files", defaults, but=("progress",)) == {"batch_size", "max_chars",
                                                                                    "pause"}
    assert passed_defaults("from_pretrained", _defaults(real), but=("dtype",)) >= {"device"}
    from qtts.cli import build_parser

    args = build_parser().parse_args(["synth", "MODEL", "--text", "Hi.", "--out", "o.wav"])
    assert args.progress is defaults["progress"]  # passed as progress and a terminal


def test_library_flags_parse_to_the_config(capsys):
    """The generated flags: types (``X | None`` too), choices from a ``Literal``, ``--flag/--no-flag`` for a bool,
    and ``--allow-empty-text`` / ``--no-progress`` as before; ``--help`` shows the library's defaults."""
    import pytest

    from qtts.cli import _config, build_parser
    from qtts.data.extract_codes import ExtractConfig
    from qtts.data.validate import ValidationConfig

    parser = build_parser()
    args = parser.parse_args(["data", "extract-codes", "M", "C", "O", "--max-duration", "5", "--dtype", "bfloat16",
                              "--alone", "--no-progress", "--device", "cpu", "--rows-per-shard", "7"])
    assert _config(ExtractConfig, args) == ExtractConfig(max_duration=5.0, dtype="bfloat16", alone=True,
                                                         progress=False, device="cpu", rows_per_shard=7)
    args = parser.parse_args(["data", "validate", "M", "O", "--allow-empty-text", "--min-duration", "1"])
    assert _config(ValidationConfig, args) == ValidationConfig(require_text=False, min_duration=1.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "extract-codes", "M", "C", "O", "--dtype", "float16"])
    with pytest.raises(SystemExit):
        main(["data", "validate", "--help"])
    assert f"shortest clip, seconds (default: {ValidationConfig().min_duration})" in capsys.readouterr().out

def test_a_command_imports_only_its_library_module():
    """The library-bound options are added when their command runs: parsing ``qtts data summary`` imports neither
    the code extractor nor the synthesizer."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import sys; from qtts.cli import build_parser; build_parser().parse_args(['data', 'summary', 'C']); "
            "print(sorted(m for m in ('qtts.data.extract_codes', 'qtts.inference.long_form', 'qtts.tasks.talker_eval',"
            " 'qtts.data.validate', 'qtts.eval.run') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_codec_decode_windowed_flag(tmp_path):
    """``qtts codec decode`` is exact by default (equal to streaming); ``--windowed`` gives qwen-tts's 300-frame
    windows, which differ past 300 frames."""
    import numpy as np
    import soundfile as sf
    import torch

    from qtts.models.codec import SpeechTokenizer
    from qtts.models.random_release import tiny_codec_config
    from qtts.models.random_weights import randomize_codec

    codec = SpeechTokenizer(tiny_codec_config())
    randomize_codec(codec, seed=3)
    codec.save_pretrained(tmp_path / "codec")
    codes = torch.randint(0, 2048, (320, 16), generator=torch.Generator().manual_seed(0))
    np.save(tmp_path / "long.npy", codes.numpy())
    for flag, windowed in (([], False), (["--windowed"], True)):
        out = tmp_path / ("windowed" if windowed else "exact")
        assert main(["codec", "decode", "--model", str(tmp_path / "codec"), "--out", str(out), *flag,
                     str(tmp_path / "long.npy")]) == 0
        wav, _ = sf.read(out / "long.wav", dtype="float32")
        expected = codec.decode([codes], windowed=windowed)[0].numpy()
        np.testing.assert_allclose(wav, expected, atol=1e-4)  # the wav file stores 16-bit or float samples
    exact, _ = sf.read(tmp_path / "exact" / "long.wav", dtype="float32")
    windowed, _ = sf.read(tmp_path / "windowed" / "long.wav", dtype="float32")
    assert np.abs(exact[310 * 1920:] - windowed[310 * 1920:]).max() > 1e-4
