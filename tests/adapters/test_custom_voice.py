"""Custom voices end to end on CPU: named speaker rows from mean x-vectors, full and LoRA fine-tunes (the full one
keeps cloning examples, the LoRA one is killed and resumed), and exports that qwen-tts loads and speaks with by
speaker name (greedy output equal to qtts's)."""

import subprocess
from copy import deepcopy

import numpy as np
import pytest
import torch

from qtts.adapters.speakers import FIRST_SPEAKER_ROW, mean_xvectors, speaker_rows
from qtts.adapters.trained_rows import TrainedRows, unhooked
from qtts.audio.io import load_audio
from qtts.cli import main
from qtts.data.extract_codes import open_codes
from qtts.data.mixture import Source, mix_sources
from qtts.inference import Synthesizer
from qtts.models.random_release import tiny_codec_config, write_random_release
from qtts.models.talker import TTSModel, tiny
from qtts.models.talker.config import SPEAKER_IDS, released_0_6b
from qtts.runs import open_trained
from qtts.tasks.talker_eval import evaluate_talker
from qtts.text.tokenizer import load_text_tokenizer
from tests.conftest import REPO, subprocess_env
from tests.training.test_train_script import TRAIN, only_run, step_losses

GREEDY = dict(do_sample=False, subtalker_dosample=False)


def test_rows_avoid_every_used_id():
    config = released_0_6b("custom_voice").talker_config
    rows = speaker_rows(config, ["Alice", "bob", "serena", "alice"])
    assert rows["serena"] == SPEAKER_IDS["serena"]  # an existing speaker keeps its row
    assert set(rows) == {"alice", "bob", "serena"}
    used = set(config.special_codec_ids().values())
    assert rows["alice"] >= FIRST_SPEAKER_ROW and rows["alice"] not in used and rows["bob"] not in used
    assert rows["alice"] != rows["bob"]
    with pytest.raises(ValueError, match="no free codec-embedding row"):
        speaker_rows(config, [f"s{i}" for i in range(200)])


def test_trained_rows_train_alone_on_a_frozen_table():
    """Only the rows train (weight decay and all), the table's forward gives them for their ids, and ``unhooked``
    folds them into the table and lifts the hook (a copy taken then has none)."""
    torch.manual_seed(0)
    table = torch.nn.Embedding(10, 4).requires_grad_(False)
    before = table.weight.detach().clone()
    rows = TrainedRows(table, [7, 3])
    optimizer = torch.optim.AdamW(rows.parameters(), lr=0.1, weight_decay=0.1)
    table(torch.arange(10)).pow(2).sum().backward()
    optimizer.step()
    assert torch.equal(table.weight, before) and rows.rows.tolist() == [3, 7]
    out = table(torch.tensor([[3, 0, 7]]))
    torch.testing.assert_close(out[0, [0, 2]], rows.weight.detach())
    torch.testing.assert_close(out[0, 1], before[0])
    with unhooked([rows]):
        copy = deepcopy(table)
        assert torch.equal(table(torch.arange(10)), table.weight)  # no hook
    assert torch.equal(copy.weight[[3, 7]], rows.weight.detach()) and torch.equal(copy.weight[0], before[0])
    assert torch.equal(copy(torch.arange(10)), copy.weight)
    torch.testing.assert_close(table(torch.tensor([3]))[0], rows.weight.detach()[0])  # hooked again
    with pytest.raises(ValueError, match="10-row table"):
        TrainedRows(table, [10])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base")
    return write_random_release(folder, tiny("base", predictor_hidden=32), tiny_codec_config(), seed=2, eos_scale=0)


def test_fine_tune_custom_voices_and_export_for_qwen_tts(base, talker_codes, tmp_path):
    qwen_tts = pytest.importorskip("qwen_tts")
    rows = open_codes(talker_codes)
    speakers = sorted({str(s).lower() for s in rows["speaker"]})
    assert len(speakers) >= 2

    # 1. a row per speaker, from its mean x-vector (float32)
    added = tmp_path / "with_speakers"
    assert main(["speakers", "add", str(base), str(talker_codes), str(added), "--max-clips", "3"]) == 0
    model = TTSModel.from_pretrained(added)
    spk_id = model.config.talker_config.spk_id
    assert sorted(spk_id) == speakers and min(spk_id.values()) >= FIRST_SPEAKER_ROW
    first = speakers[0]
    clips = [load_audio(r["audio"], 24_000)[0][0] for r in rows if str(r["speaker"]).lower() == first][:3]
    expected = mean_xvectors(TTSModel.from_pretrained(base).speaker_encoder, {first: clips})[first]
    torch.testing.assert_close(model.talker.model.codec_embedding.weight[spk_id[first]], expected)

    # 2. fine-tune: speaker rows in the slot, a third of the examples keep the x-vector (cloning) layout; two
    # voices are held out of training, to check that cloning voices the fine-tune never saw survives it
    held_out = [s for s in speakers if s.endswith("spk2")]
    assert len(held_out) == 2
    codes = f"[{{path: {talker_codes}, exclude_speakers: [{','.join(held_out)}]}}]"
    args = fine_tune_args(codes, added, tmp_path, 30) + ["data.clone_prob=0.3"]
    result = subprocess.run(args, env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = only_run(tmp_path, "talker_demo")
    loss = list(step_losses(run).values())
    assert sum(loss[-5:]) / 5 < 0.8 * sum(loss[:5]) / 5, loss
    unseen = mix_sources([Source(str(talker_codes), speakers=held_out)])
    assert sorted({str(s).lower() for s in unseen["speaker"]}) == held_out
    tok = load_text_tokenizer()
    cloning = {name: evaluate_talker(open_trained(folder).model, unseen, tok, by="speaker", layout="clone")
               for name, folder in (("before", added), ("after", run))}
    for speaker in held_out:  # cloning an unseen voice: no worse than before the fine-tune
        assert cloning["after"][speaker]["loss"] < cloning["before"][speaker]["loss"], cloning

    # 3. export as a CustomVoice folder; qwen-tts speaks each name, and greedy equals qtts
    export = tmp_path / "custom_voice"
    assert main(["export", str(run), str(export), "--model-type", "custom_voice",
                 "--codec", str(base / "speech_tokenizer")]) == 0
    theirs = qwen_tts.Qwen3TTSModel.from_pretrained(str(export))
    assert sorted(theirs.get_supported_speakers()) == speakers
    ours = Synthesizer.from_pretrained(export)
    assert ours.model_type == "custom_voice" and ours.model.speaker_encoder is None
    for name in speakers[:2]:
        expected, _ = theirs.generate_custom_voice("Hello there.", name, max_new_tokens=9, **GREEDY)
        got = ours.custom_voice("Hello there.", name, max_new_tokens=8, **GREEDY)
        np.testing.assert_allclose(expected[0], got.numpy(), atol=1e-5, rtol=0)
    rows = [ours.model.talker.model.codec_embedding.weight[ours.model.config.talker_config.spk_id[n]] for n in speakers]
    assert not torch.allclose(rows[0], rows[1])  # each name selects its own trained row


def fine_tune_args(codes, model, run_root, steps: int, name: str = "talker_demo") -> list[str]:
    return TRAIN + [
        "experiment=talker_demo", f"experiment_name={name}", f"data.codes={codes}", f"run_root={run_root}",
        f"+task.init_from={model}", f"data.speakers_from={model}", "trainer.accelerator=cpu",
        f"trainer.max_steps={steps}", "trainer.log_every_n_steps=1", "trainer.check_val_every_n_epoch=1000",
        "trainer.enable_progress_bar=false", "data.num_workers=0", "data.max_tokens_per_batch=600",
        "data.val_fraction=0.0", "checkpoint.every_n_steps=1000", "task.warmup_steps=3",
    ]


def interrupted_run_speaks_with_its_trained_rows(run, saved: dict, base) -> None:
    """An interrupted LoRA run opens from its checkpoint with the speaker rows it trained (not the rows it started
    from) and the adapters merged, and speaks by name (the rows were dropped before)."""
    start = TTSModel.from_pretrained(base)
    rows, trained = saved["state_dict"]["trained_rows.codec_embedding.rows"], \
        saved["state_dict"]["trained_rows.codec_embedding.weight"]
    for source in (run / "checkpoints" / "last.ckpt", run):  # a run without export/: its newest checkpoint
        synth = Synthesizer.from_pretrained(source)
        table = synth.model.talker.model.codec_embedding.weight
        torch.testing.assert_close(table[rows], trained)
        assert not torch.allclose(table[rows], start.talker.model.codec_embedding.weight[rows])
        assert not torch.equal(synth.model.talker.model.layers[0].self_attn.q_proj.weight,
                               start.talker.model.layers[0].self_attn.q_proj.weight)  # LoRA merged in
        name = synth.speakers[0]
        assert len(synth.custom_voice("Hello.", name, max_new_tokens=3, **GREEDY)) == 3 * 1920


def test_lora_two_speakers_resume_merge_and_export(base, talker_codes, tmp_path):
    """LoRA (attention + MLP + code predictor) with the speaker rows trained; killed at step 6 and resumed, the run
    repeats the uninterrupted one's losses; its adapter merged or not gives the same logits; the custom-voice
    export speaks both names in qwen-tts."""
    qwen_tts = pytest.importorskip("qwen_tts")
    added = tmp_path / "with_speakers"
    assert main(["speakers", "add", str(base), str(talker_codes), str(added), "--max-clips", "2"]) == 0
    # LoRA dropout on (0.1): its masks come from the global RNG, which the checkpoint restores and data loading no
    # longer draws from; exact equality below is the proof that adapters, speaker rows, optimizer, schedule, data
    # order and dropout masks all come back
    lora = ["+task/lora=r16", "task.lora.targets=[attention,mlp,predictor]", "task.lora.r=4", "task.lora.alpha=8",
            "task.lora.dropout=0.1", "task.train_speaker_rows=true", "task.lr=5e-3", "data.xvector=false"]
    steps, env = 14, subprocess_env() | {"PYTHONPATH": str(REPO)}

    def train(name, extra=()):
        args = fine_tune_args(talker_codes, added, tmp_path, steps, name) + lora + list(extra)
        return subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)

    reference = train("straight")
    assert reference.returncode == 0, reference.stdout[-3000:] + reference.stderr[-3000:]
    killed = train("killed", ["+callbacks.kill._target_=tests.helpers.signals.SigtermDuringStep",
                              "+callbacks.kill.step=5"])
    run = only_run(tmp_path, "killed")
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 6, killed.stdout[-2000:] + killed.stderr[-2000:]
    weights = [k for k, v in saved["state_dict"].items() if v.is_floating_point() and v.dim() == 2]
    assert weights and all("lora_" in k or k.endswith("codec_embedding.weight") for k in weights)  # no frozen copies
    interrupted_run_speaks_with_its_trained_rows(run, saved, added)
    resumed = train("killed", ["resume=auto"])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    straight, continued = step_losses(only_run(tmp_path, "straight")), step_losses(run)
    assert sorted(continued) == sorted(straight) == list(range(steps))
    for s in continued:
        assert continued[s] == pytest.approx(straight[s], rel=1e-4, abs=1e-5), (s, continued, straight)
    first, last = sum(straight[s] for s in range(3)) / 3, sum(straight[s] for s in range(steps - 3, steps)) / 3
    assert last < 0.9 * first, straight

    # the adapter (a peft folder) on the base-with-speakers model = the merged export
    adapter = run / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    merged = TTSModel.from_pretrained(run / "export")
    synth = Synthesizer.from_pretrained(added)
    x = torch.randn(2, 9, merged.config.talker_config.hidden_size)
    with torch.no_grad():
        plain = synth.model.talker(x).logits
        synth.load_adapter(adapter, "voices")
        unmerged = synth.model.talker(x).logits
        synth.set_adapter(None)
        torch.testing.assert_close(synth.model.talker(x).logits, plain)
        synth.set_adapter("voices")
        torch.testing.assert_close(merged.talker(x).logits[..., :2048], unmerged[..., :2048], atol=1e-4, rtol=1e-4)
        assert not torch.allclose(unmerged, plain, atol=1e-3)
        opened = open_trained(adapter)  # the adapter folder alone opens as the run's model, on the base it names
        assert opened.init_from == str(added.resolve())
        torch.testing.assert_close(opened.model.talker(x).logits, merged.talker(x).logits, atol=1e-4, rtol=1e-4)

    export = tmp_path / "custom_voice"
    assert main(["export", str(run), str(export), "--model-type", "custom_voice"]) == 0
    theirs = qwen_tts.Qwen3TTSModel.from_pretrained(str(export))
    speakers = sorted(theirs.get_supported_speakers())
    assert len(speakers) >= 2
    for name in speakers[:2]:
        wavs, sr = theirs.generate_custom_voice("Hello there.", name, max_new_tokens=5, **GREEDY)
        assert sr == 24_000 and len(wavs[0]) == 4 * 1920
