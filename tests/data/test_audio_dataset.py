import json
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch

from qtts.data.audio_dataset import AudioCorpus, collate_audio
from qtts.training.datamodules import AudioDataModule

SR = 24_000
SPEAKERS = {"ann": "en", "bob": "en", "carl": "de"}


def ramp(n: int) -> np.ndarray:
    """Sample k holds k / 2**16: exact in float32, so a loaded window tells where it came from."""
    return (np.arange(n) / 2**16).astype(np.float32)


def first_sample(wav: torch.Tensor) -> int:
    return round(wav[0].item() * 2**16)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """24 ramp wavs of 0.4–1.55 s, three speakers, two languages; ``span`` holds [0.2, 0.5) of a 1 s file."""
    root = tmp_path_factory.mktemp("audio_corpus")
    rows = []
    for k in range(24):
        speaker = list(SPEAKERS)[k % 3]
        seconds = 0.4 + 0.05 * k
        sf.write(root / f"u{k:02d}.wav", ramp(int(seconds * SR)), SR, subtype="FLOAT")
        rows.append({"id": f"u{k:02d}", "audio": str(root / f"u{k:02d}.wav"), "text": "x",
                     "language": SPEAKERS[speaker], "speaker": speaker, "duration": seconds})
    sf.write(root / "long.wav", ramp(SR), SR, subtype="FLOAT")
    span = {"id": "span", "audio": str(root / "long.wav"), "text": "x", "language": "de", "speaker": "carl",
            "duration": 0.3, "start": 0.2, "end": 0.5}
    manifest = root / "clean.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    reversed_manifest = root / "reversed.jsonl"
    reversed_manifest.write_text("".join(json.dumps(r) + "\n" for r in rows[::-1]))
    return SimpleNamespace(rows=rows, span=span, manifest=manifest, reversed=reversed_manifest)


def test_crops_have_the_length_and_come_from_the_seed(corpus):
    ds = AudioCorpus(corpus.rows, crop_seconds=0.3)
    assert ds.speakers == ["ann", "bob", "carl"] and ds.languages == ["de", "en"]
    for index in (3, 17, 23):
        crops = {seed: ds[(index, seed)]["wav"] for seed in (1, 2, 3)}
        for crop in crops.values():
            assert crop.shape == (int(0.3 * SR),)
            start = first_sample(crop)
            assert 0 <= start <= (corpus.rows[index]["duration"] - 0.3) * SR + 1
            torch.testing.assert_close(crop, torch.from_numpy(ramp(start + crop.numel())[start:]))
        assert torch.equal(ds[(index, 2)]["wav"], crops[2])  # same (index, seed): same crop
        assert len({first_sample(c) for c in crops.values()}) == 3  # different seeds: different crops
    assert torch.equal(ds[5]["wav"], ds[5]["wav"])  # a bare index gets a fixed seed of its own


def test_items_carry_labels_and_short_items_come_whole(corpus):
    ds = AudioCorpus(corpus.rows, crop_seconds=1.0)
    item = ds[(1, 0)]  # 0.45 s < 1 s crop
    assert item["id"] == "u01" and item["wav"].shape == (int(0.45 * SR),)
    assert (item["speaker"], item["language"]) == (1, 1)  # bob, en
    whole = AudioCorpus(corpus.rows, crop_seconds=None)[(20, 0)]
    assert whole["wav"].shape == (int(1.4 * SR),)
    other = AudioCorpus(corpus.rows[:1], speakers=["x"], languages=["en"])[0]
    assert (other["speaker"], other["language"]) == (-1, 0)  # speaker not in the given list


def test_start_end_rows_load_only_their_span(corpus):
    whole = AudioCorpus([corpus.span])[(0, 0)]["wav"]
    torch.testing.assert_close(whole, torch.from_numpy(ramp(SR)[int(0.2 * SR):int(0.5 * SR)]))
    for seed in range(5):
        crop = AudioCorpus([corpus.span], crop_seconds=0.1)[(0, seed)]["wav"]
        start = first_sample(crop)
        assert crop.numel() == int(0.1 * SR)
        assert int(0.2 * SR) <= start and start + crop.numel() <= int(0.5 * SR) + 1


def test_collate_pads_and_reports_lengths():
    items = [{"id": "a", "wav": torch.ones(3), "speaker": 2, "language": 0},
             {"id": "b", "wav": torch.full((5,), -1.0), "speaker": 0, "language": 1}]
    batch = collate_audio(items)
    assert batch["ids"] == ["a", "b"]
    assert batch["lengths"].tolist() == [3, 5]
    assert batch["wav"].tolist() == [[1, 1, 1, 0, 0], [-1, -1, -1, -1, -1]]
    assert batch["speaker"].tolist() == [2, 0] and batch["language"].tolist() == [0, 1]


def datamodule(corpus, **kw) -> AudioDataModule:
    kw = {"val_fraction": 0.25, "crop_seconds": 0.5, "max_seconds_per_batch": 1.5, "num_workers": 0, "seed": 3,
          **kw}
    return AudioDataModule(str(kw.pop("manifest", corpus.manifest)), **kw)


def val_ids(dm) -> list[str]:
    dm.setup()
    return sorted(dm.val_set.rows["id"])


def test_split_is_stable_disjoint_and_ignores_row_order(corpus):
    a, b = datamodule(corpus), datamodule(corpus)
    val = val_ids(a)
    assert val == val_ids(b) == val_ids(datamodule(corpus, manifest=corpus.reversed))
    assert 2 <= len(val) <= 10
    train = set(a.train_set.rows["id"])
    assert not train & set(val) and train | set(val) == {r["id"] for r in corpus.rows}
    assert set(val_ids(datamodule(corpus, val_fraction=0.5))) > set(val)  # a larger fraction keeps the old val ids
    assert datamodule(corpus, val_fraction=0.0).val_dataloader() == []
    with pytest.raises(ValueError, match="val_fraction"):
        datamodule(corpus, val_fraction=1.0)


def test_task_inputs_count_speakers_and_languages(corpus):
    assert datamodule(corpus).task_inputs() == {"num_speakers": 3, "num_languages": 2}


def loader_ids(loader) -> list[list[str]]:
    return [batch["ids"] for batch in loader]


def test_train_loader_batches_respect_the_budget(corpus):
    dm = datamodule(corpus)
    batches = list(dm.train_dataloader())
    assert sorted(i for b in batches for i in b["ids"]) == sorted(dm.train_set.rows["id"])
    for batch in batches:
        assert batch["lengths"].max() <= int(0.5 * SR)  # crops; the two shortest files (0.40, 0.45 s) whole
        assert batch["wav"].shape == (len(batch["ids"]), batch["lengths"].max())
        assert batch["wav"].numel() <= 1.5 * SR  # padded audio within max_seconds_per_batch
    assert sum(len(b["ids"]) for b in batches) > len(batches)  # batches hold more than one item


def test_state_dict_resumes_mid_epoch(corpus):
    dm = datamodule(corpus)
    assert dm.state_dict() == {}  # no trainer attached
    progress = SimpleNamespace(current=SimpleNamespace(ready=2))
    dm.trainer = SimpleNamespace(current_epoch=1, fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(
        batch_progress=progress)))
    state = dm.state_dict()
    assert state == {"epoch": 1, "batches_done": 2}

    reference = dm.train_dataloader()
    _set_sampler_epoch(reference, 1)
    epoch1 = loader_ids(reference)
    assert len(epoch1) >= 4

    resumed = datamodule(corpus)
    resumed.load_state_dict(state)
    loader = resumed.train_dataloader()
    assert len(loader) == len(epoch1)  # the loop counts the skipped batches as done
    _set_sampler_epoch(loader, 1)  # Lightning's epoch start on the resumed epoch keeps the skip
    assert loader_ids(loader) == epoch1[2:]
    assert loader_ids(loader) == epoch1  # the skip applied once
    _set_sampler_epoch(loader, 2)
    assert loader_ids(loader) != epoch1
    # val loaders and later train loaders are unaffected by the resume state
    assert loader_ids(resumed.val_dataloader()) == loader_ids(dm.val_dataloader())
    assert len(loader_ids(resumed.train_dataloader())) == len(epoch1)


def test_resume_from_an_epoch_end_checkpoint_starts_the_next_epoch_whole(corpus):
    resumed = datamodule(corpus)
    resumed.load_state_dict({"epoch": 0, "batches_done": 999})
    loader = resumed.train_dataloader()
    _set_sampler_epoch(loader, 1)
    reference = datamodule(corpus).train_dataloader()
    _set_sampler_epoch(reference, 1)
    assert loader_ids(loader) == loader_ids(reference)


def test_loudness_normalisation_levels_every_clip(tmp_path):
    from qtts.audio.loudness import measure_loudness

    rows = []
    for k, amplitude in enumerate([0.05, 0.5]):
        t = np.arange(SR) / SR
        sf.write(tmp_path / f"t{k}.wav", amplitude * np.sin(2 * np.pi * 300 * t), SR, subtype="FLOAT")
        rows.append({"id": f"t{k}", "audio": str(tmp_path / f"t{k}.wav"), "text": "x", "language": "en",
                     "speaker": "s", "duration": 1.0})
    plain = AudioCorpus(rows)
    levelled = AudioCorpus(rows, loudness_lufs=-20.0)
    assert measure_loudness(plain[1]["wav"], 24000) - measure_loudness(plain[0]["wav"], 24000) > 19
    for i in range(2):
        assert measure_loudness(levelled[i]["wav"], 24000) == pytest.approx(-20.0, abs=0.05)
