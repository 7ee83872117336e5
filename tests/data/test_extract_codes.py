"""`qtts data extract-codes`: codes equal encoding each clip, rejects, resume, CLI and two processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from qtts.audio.io import load_audio
from qtts.cli import main
from qtts.data.extract_codes import ExtractConfig, extract_codes, open_codes
from qtts.data.manifest import read_manifest
from qtts.models.codec.model import CodecConfig, SpeechTokenizer
from qtts.training.configs import CONFIG_DIR
from tests.conftest import REPO, subprocess_env
from tests.helpers.codec import randomize_encoder

FAST = dict(rows_per_shard=7, max_seconds_per_batch=30.0, num_workers=0, progress=False)
BAD = {"missing", "empty", "no-text"}


@pytest.fixture(scope="module")
def codec(tmp_path_factory) -> Path:
    """A random tokenizer with the tiny config (hop 128 samples, 4 quantizers) at 8 kHz to run faster (so
    the clips are resampled to the codec's rate, not a fixed 24 kHz), saved as a folder."""
    values = yaml.safe_load((CONFIG_DIR / "model" / "codec_tiny.yaml").read_text())
    values.pop("_target_")
    values["input_sample_rate"] = values["output_sample_rate"] = 8000
    values["encoder_config"].update(sampling_rate=8000, frame_rate=62.5, num_filters=4)
    model = SpeechTokenizer(CodecConfig.from_dict(values))
    randomize_encoder(model.encoder)
    folder = tmp_path_factory.mktemp("codec")
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def manifest(tiny_corpus, tmp_path_factory) -> Path:
    """The 18 clean clips plus a missing file, a 0-byte file and a row without its text field."""
    root = tmp_path_factory.mktemp("manifest")
    rows = (tiny_corpus.parent / "validated" / "clean.jsonl").read_text().splitlines()
    (root / "empty.wav").write_bytes(b"")
    bad = [
        {"id": "missing", "audio": str(root / "nope.wav"), "text": "t", "language": "en", "speaker": "s",
         "duration": 1.0},
        {"id": "empty", "audio": "empty.wav", "text": "t", "language": "en", "speaker": "s", "duration": 0.5},
        {"id": "no-text", "audio": "empty.wav", "language": "en", "speaker": "s"},
    ]
    lines = rows[:5] + [json.dumps(bad[0])] + rows[5:12] + [json.dumps(bad[1])] + rows[12:] + [json.dumps(bad[2])]
    (root / "m.jsonl").write_text("\n".join(lines) + "\n")
    (root / "small.jsonl").write_text("\n".join(rows[:3] + [json.dumps(bad[0])]) + "\n")
    return root / "m.jsonl"


@pytest.fixture(scope="module")
def extracted(manifest, codec, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("codes")
    info = extract_codes(manifest, codec, out, ExtractConfig(**FAST))
    assert info["rows"] == 18 and info["rejected"] == 3 and info["complete"], info
    return out


def reference(codec: Path, ds) -> tuple[SpeechTokenizer, list[torch.Tensor]]:
    model = SpeechTokenizer.from_pretrained(codec)
    return model, [load_audio(path, model.config.input_sample_rate)[0][0] for path in ds["audio"]]


def test_codes_match_encoding_each_clip(extracted, codec, manifest):
    ds = open_codes(extracted)
    assert len(ds) == 18
    expected_ids = [json.loads(line).get("id") for line in manifest.read_text().splitlines()]
    assert list(ds["id"]) == [i for i in expected_ids if i not in BAD]  # manifest order
    assert str(ds.data.column("codes").type.storage_type) == "list<item: list<item: int16>>"  # stored int16
    model, wavs = reference(codec, ds)
    hop = model.config.encode_downsample_rate
    ds = ds.with_format("torch")  # the formatter widens to int64
    for k, (row, wav) in enumerate(zip(ds, wavs)):
        codes = row["codes"]
        assert codes.shape == (row["num_frames"], 4)
        assert row["num_frames"] == -(-wav.numel() // hop)
        padded = torch.nn.functional.pad(wav, (0, -wav.numel() % hop))
        assert torch.equal(codes, model.encode([padded])[0]), row["id"]  # exact, whatever the batch
        if k < 3:
            alone = model.encode([wav])[0]
            assert torch.equal(codes[:-1], alone[:-1])  # unpadded: all but the last frame agree
    info = json.loads((extracted / "info.json").read_text())
    assert info["num_quantizers"] == 4 and info["frame_rate"] == 62.5 and info["sample_rate"] == 8000
    assert info["frames"] == int(sum(ds["num_frames"]))


def test_alone_is_bit_identical_to_encode(manifest, codec, tmp_path):
    out = tmp_path / "alone"
    extract_codes(manifest.with_name("small.jsonl"), codec, out, ExtractConfig(**FAST, alone=True))
    ds = open_codes(out).with_format("torch")
    assert len(ds) == 3
    model, wavs = reference(codec, ds)
    for row, wav in zip(ds, wavs):
        assert torch.equal(row["codes"], model.encode([wav])[0])


def test_rejects_name_the_broken_rows(extracted):
    rejects = [json.loads(line) for line in (extracted / "rejects.jsonl").read_text().splitlines()]
    reasons = {r["id"]: r["reason"] for r in rejects}
    assert set(reasons) == BAD
    assert "file not found" in reasons["missing"] and "empty file" in reasons["empty"]
    assert reasons["no-text"].startswith("schema:") and "text" in reasons["no-text"]


def test_rerun_skips_finished_shards_and_redoes_a_deleted_one(extracted, manifest, codec, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(extracted, out)
    shards = sorted((out / "shards").iterdir())
    assert [s.name for s in shards] == ["shard-00000", "shard-00001", "shard-00002"]
    before = open_codes(out).with_format("numpy")[:]
    stamps = {s.name: s.stat().st_mtime_ns for s in shards}

    calls = []
    original = SpeechTokenizer.encode
    monkeypatch.setattr(SpeechTokenizer, "encode", lambda self, wavs: calls.append(len(wavs)) or original(self, wavs))
    extract_codes(manifest, codec, out, ExtractConfig(**FAST))
    assert calls == []
    shutil.rmtree(out / "shards" / "shard-00001")
    extract_codes(manifest, codec, out, ExtractConfig(**FAST))
    assert 0 < sum(calls) <= 7 and max(calls) > 1  # one shard, in batches of several clips
    assert {s.name: s.stat().st_mtime_ns for s in (out / "shards").iterdir() if s.name != "shard-00001"} == \
        {k: v for k, v in stamps.items() if k != "shard-00001"}
    after = open_codes(out).with_format("numpy")[:]
    assert after["id"].tolist() == before["id"].tolist()
    assert all(np.array_equal(a, b) for a, b in zip(after["codes"], before["codes"]))
    assert len((out / "rejects.jsonl").read_text().splitlines()) == 3  # not duplicated by the reruns

    with pytest.raises(ValueError, match="another job"):
        extract_codes(manifest, codec, out, ExtractConfig(**{**FAST, "rows_per_shard": 5}))


def test_cli(manifest, codec, tmp_path, capsys):
    out = tmp_path / "cli"
    small = manifest.with_name("small.jsonl")
    assert main(["data", "extract-codes", str(small), str(codec), str(out), "--rows-per-shard", "50",
                 "--num-workers", "1", "--max-seconds-per-batch", "6", "--no-progress"]) == 0
    assert "3 rows" in capsys.readouterr().out
    assert list(open_codes(out)["id"]) == [json.loads(line)["id"] for line in small.read_text().splitlines()[:3]]


def test_two_processes(manifest, codec, extracted, tmp_path):
    """`torch.distributed.run` with 2 CPU processes: shards split between them, the union is complete."""
    out = tmp_path / "ddp"
    env = {**subprocess_env(), "PYTHONPATH": str(REPO), "ACCELERATE_USE_CPU": "true"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "qtts.cli", "data", "extract-codes", str(manifest), str(codec), str(out),
           "--rows-per-shard", "7", "--max-seconds-per-batch", "30", "--num-workers", "0", "--no-progress",
           "--device", "cpu"]
    run = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    ds, ref = open_codes(out).with_format("numpy")[:], open_codes(extracted).with_format("numpy")[:]
    assert ds["id"].tolist() == ref["id"].tolist() and len(set(ds["id"].tolist())) == 18
    assert all(np.array_equal(a, b) for a, b in zip(ds["codes"], ref["codes"]))
    assert len((out / "rejects.jsonl").read_text().splitlines()) == 3
    assert os.path.exists(out / "info.json")


def test_a_failing_batch_is_retried_clip_by_clip(manifest, codec, tmp_path, monkeypatch):
    """An encoder error (out of memory, say) costs only the clip that still fails alone."""
    original = SpeechTokenizer.encode
    rows = read_manifest(manifest.with_name("small.jsonl"))[:3]
    longest = max(load_audio(row.audio, 8000)[0].numel() for row in rows)

    def encode(self, wavs):
        if len(wavs) > 1 or wavs[0].numel() >= longest:
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(self, wavs)

    monkeypatch.setattr(SpeechTokenizer, "encode", encode)
    info = extract_codes(manifest.with_name("small.jsonl"), codec, tmp_path / "out", ExtractConfig(**FAST))
    assert info["rows"] == 2 and info["rejected"] == 2
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert any(r.startswith("encode: RuntimeError: CUDA out of memory") for r in reasons)
