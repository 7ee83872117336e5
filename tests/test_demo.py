"""`make demo` at its smallest: the whole chain from the synthetic corpus to a LoRA custom voice speaking the ten
languages, then a second run that reuses every training, and a third with a longer codec training that redoes what
is built on the codec."""

import pytest

from data_prep.synthetic import LANGUAGES
from qtts.audio.io import audio_info
from qtts.demo import run_demo
from tests.conftest import subprocess_env


@pytest.mark.slow  # ~1 min on an idle 2-core machine
def test_demo_ends_with_a_custom_voice_in_ten_languages(tmp_path, monkeypatch):
    for key in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "QTTS_RUN_DIR",
                "QTTS_RESUME_CKPT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", subprocess_env()["OMP_NUM_THREADS"])
    size = dict(per_speaker=2, train_steps=0, codec_steps=4, talker_steps=4, voice_steps=3, max_new_tokens=4,
                eval_sentences=2)
    assert run_demo(tmp_path, **size) == 0

    wavs = tmp_path / "custom_voice"
    for lang in LANGUAGES:
        info = audio_info(wavs / f"{lang}.wav")
        assert info.sample_rate == 24_000 and 0 < info.duration <= 4 * 0.08 + 1e-6, (lang, info)
    runs = tmp_path / "runs"
    (voice_run,) = (runs / "custom_voice").iterdir()
    assert (voice_run / "adapter" / "adapter_config.json").is_file()
    assert (voice_run / "adapter" / "adapter_model.safetensors").is_file()
    (talker_run,) = (runs / "talker_demo").iterdir()
    assert (talker_run / "export" / "speech_tokenizer" / "config.json").is_file()  # a complete released folder
    assert (voice_run / "export" / "speech_tokenizer" / "config.json").is_file()

    # it ends with the evaluation table: the espeak-ng floor, the codec's reconstructions, the custom voice
    table = (tmp_path / "eval" / "summary.md").read_text().splitlines()
    assert [row.split(" | ")[0] for row in table[2:]] == [
        "| espeak-ng originals (floor)", "| codec reconstructions", "| custom voice 'en_spk0' (talker + LoRA, sampled)"]
    assert all(row.split(" | ")[1] == "2" for row in table[2:])
    results = tmp_path / "eval" / "codec" / "results.jsonl"
    assert len(results.read_text().splitlines()) == 4  # 2 reconstructions + 2 originals

    # a second run trains nothing again
    before = sorted(p.relative_to(runs) for p in runs.glob("*/*"))
    stamp = (wavs / "en.wav").stat().st_mtime_ns
    results_stamp = results.stat().st_mtime_ns
    assert run_demo(tmp_path, **size) == 0
    assert sorted(p.relative_to(runs) for p in runs.glob("*/*")) == before
    assert (wavs / "en.wav").stat().st_mtime_ns == stamp
    assert results.stat().st_mtime_ns == results_stamp  # the evaluation resumed: nothing left to score

    # two more codec steps: the codec run continues, and the codes, talker, voice and sentences built on it are redone
    (codec_run,) = (runs / "codec_demo").iterdir()
    assert run_demo(tmp_path, **(size | {"codec_steps": 6})) == 0
    assert list((runs / "codec_demo").iterdir()) == [codec_run]
    (new_talker,) = (runs / "talker_demo").iterdir()
    (new_voice,) = (runs / "custom_voice").iterdir()
    assert (new_talker / "export").is_dir() and (new_voice / "adapter").is_dir()
    assert (new_talker, new_voice) != (talker_run, voice_run)
    assert (wavs / "en.wav").stat().st_mtime_ns > stamp

    # the adapter check is a check: an adapter that no longer matches the merged export fails the demo
    import torch
    from safetensors.torch import load_file, save_file

    weights = new_voice / "adapter" / "adapter_model.safetensors"
    tensors = load_file(weights)
    save_file({k: v + torch.randn_like(v) if "lora_B" in k else v for k, v in tensors.items()}, weights)
    assert run_demo(tmp_path, **(size | {"codec_steps": 6})) == 1
