"""Stage 1 of the 25 Hz tokenizer without a trainer: the CTC head (loss, greedy decoding, folder), the task's
checks of its settings, one training step's bookkeeping, and transcribed batches from the corpus data module."""

from __future__ import annotations

import math

import pytest
import torch

from qtts.models.tokenizer_25hz import Tokenizer25HzConfig
from qtts.models.tokenizer_25hz.asr_head import CTCHead, character_vocabulary, load_asr_head
from qtts.tasks.tokenizer_25hz import Tokenizer25HzASRTask
from qtts.training.config import ConfigError, validate_config
from qtts.training.datamodules import TranscribedAudioDataModule
from tests.training.test_config import composed

VOCAB = list(" abc")


def head_emitting(frames: list[int]) -> tuple[CTCHead, torch.Tensor]:
    """A head whose best class at frame t is ``frames[t]`` (hidden = one-hot frames, proj = identity·10)."""
    head = CTCHead(len(VOCAB) + 1, VOCAB)
    with torch.no_grad():
        head.proj.weight.copy_(10 * torch.eye(len(VOCAB) + 1))
        head.proj.bias.zero_()
    hidden = torch.nn.functional.one_hot(torch.tensor(frames), len(VOCAB) + 1).float()[None]
    return head, hidden


def test_greedy_decoding_merges_repeats_and_drops_blanks():
    # ids: blank 0, ' ' 1, a 2, b 3, c 4 → "a a  b" frames: a a blank a ' ' b b c (then padding past the length)
    head, hidden = head_emitting([2, 2, 0, 2, 1, 3, 3, 4, 4, 2])
    assert head.transcribe(hidden, torch.tensor([9])) == ["aa bc"]
    assert head.transcribe(hidden, torch.tensor([3])) == ["a"]


def test_ctc_loss_prefers_the_right_transcript_and_tolerates_impossible_ones():
    head, hidden = head_emitting([2, 0, 3, 0, 4, 0])
    with torch.no_grad():
        good = head.loss(hidden, torch.tensor([6]), ["ABC"])  # case does not matter
        bad = head.loss(hidden, torch.tensor([6]), ["cab"])
        assert float(good) < 0.1 < float(bad)
        assert float(head.loss(hidden, torch.tensor([2]), ["abc"])) == 0.0  # 3 characters cannot fit 2 frames


def test_head_vocabulary_and_errors_are_named(tmp_path):
    assert character_vocabulary(["Ab c", "ba!"]) == [" ", "!", "a", "b", "c"]
    head = CTCHead(8, VOCAB)
    with pytest.raises(ValueError, match=r"\['z'\]"):
        head.encode_text("a z")
    with pytest.raises(ValueError, match="single characters"):
        CTCHead(8, ["ab"])
    with pytest.raises(ValueError, match="twice"):
        CTCHead(8, ["a", "a"])
    head.save_pretrained(tmp_path / "asr_head")
    again = load_asr_head(tmp_path)  # the tokenizer folder holding asr_head/
    x = torch.randn(2, 5, 8)
    assert again.vocabulary == VOCAB and torch.equal(again.log_probs(x), head.log_probs(x))
    (tmp_path / "asr_head" / "config.json").write_text('{"type": "lm"}')
    with pytest.raises(ValueError, match=r"asr_head/config.json: type must be 'ctc'"):
        load_asr_head(tmp_path / "asr_head")


@pytest.mark.parametrize("kwargs, named", [
    ({"commitment_weight": -1.0}, "task.commitment_weight"),
    ({"head": "lm"}, "task.head"),
    ({"vq": {"decay": 1.5}}, "vq.decay"),
    ({"vocabulary": None}, "task.vocabulary"),
    ({"model": None}, "init_from"),
    ({"lr": 0.0}, "task.lr"),
    ({"init_from": "/no/such/folder"}, "/no/such/folder"),
])
def test_bad_task_values_are_named(kwargs, named):
    args = {"model": Tokenizer25HzConfig.tiny(), "vocabulary": VOCAB} | kwargs
    with pytest.raises((ValueError, FileNotFoundError), match=named):
        Tokenizer25HzASRTask(**args)


@pytest.mark.parametrize("override, named", [
    ("task.head=lm", "task.head"),
    ("task.commitment_weight=much", "task.commitment_weight"),
    ("+task.vq_decay=0.9", "task.vq_decay"),
    ("model.encoder_config.audio_vq_layers=7", "audio_vq_layers"),
    ("+data.crop_seconds=2.0", "data.crop_seconds"),
])
def test_bad_config_values_are_named(override, named):
    cfg = composed("experiment=tokenizer25_stage1_demo", override)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        validate_config(cfg, {"task": {"model", "vocabulary"}})


def test_a_training_step_learns_the_codebook_and_logs_the_losses():
    task = Tokenizer25HzASRTask(Tokenizer25HzConfig.tiny(), VOCAB)
    book = task.encoder.tokenizer.audio_quantizer.codebook
    assert not bool(book.initialized.item())  # from scratch: k-means on the first batch
    assert not any(p.requires_grad for p in task.tokenizer.decoder.parameters())
    logged = {}
    task.log = lambda name, value, **_: logged.__setitem__(name, value)
    task.log_dict = lambda values, **_: logged.update(values)
    wav = torch.randn(2, 16000) * 0.1
    batch = {"ids": ["x", "y"], "wav": wav, "lengths": torch.tensor([16000, 9000]), "texts": ["ab c", "ca"],
             "language_codes": ["en", "en"]}
    loss = task.training_step(batch, 0)
    assert bool(book.initialized.item())
    expected = logged["train/ctc"] + 0.25 * logged["train/commitment"]
    assert math.isclose(float(loss), float(expected), rel_tol=1e-6)
    assert float(logged["train/vq_perplexity"]) > 1.0 and 0 < float(logged["train/vq_usage"]) <= 1
    loss.backward()
    assert task.encoder.tokenizer.conv1.weight.grad.abs().sum() > 0  # the gradient passes the VQ (straight through)
    assert task.head.proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="no transcripts"):
        task.training_step({k: v for k, v in batch.items() if k != "texts"}, 0)


def test_transcribed_batches_are_whole_16khz_utterances_with_texts(tiny_corpus):
    data = TranscribedAudioDataModule(str(tiny_corpus), num_workers=0, max_seconds_per_batch=30.0)
    vocabulary = data.task_inputs()["vocabulary"]
    assert "a" in vocabulary and "A" not in vocabulary and len(vocabulary) == len(set(vocabulary))
    batch = next(iter(data.train_dataloader()))
    rows = {r["id"]: r for r in data.train_set.rows}
    for i, item in enumerate(batch["ids"]):
        assert batch["texts"][i] == rows[item]["text"] and batch["language_codes"][i] == rows[item]["language"]
        assert abs(int(batch["lengths"][i]) - rows[item]["duration"] * 16000) < 16000 * 0.01  # whole, at 16 kHz


def test_init_from_an_export_continues_the_tokenizer_and_its_head(tmp_path):
    task = Tokenizer25HzASRTask(Tokenizer25HzConfig.tiny(), VOCAB)
    with torch.no_grad():
        task.head.proj.weight.normal_()
    task.export(tmp_path / "export")
    again = Tokenizer25HzASRTask(init_from=str(tmp_path / "export"), vocabulary=["a", "b"])  # a subset is fine
    assert again.head.vocabulary == VOCAB and torch.equal(again.head.proj.weight, task.head.proj.weight)
    for key, value in task.tokenizer.state_dict().items():
        assert torch.equal(again.tokenizer.state_dict()[key], value), key
    assert again.tokenizer.training and not any(p.requires_grad for p in again.tokenizer.decoder.parameters())
    with pytest.raises(ValueError, match=r"asr_head cannot write the data's character\(s\) \['z'\]"):
        Tokenizer25HzASRTask(init_from=str(tmp_path / "export"), vocabulary=["a", "z"])


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A random 1-layer Qwen2 causal LM as wide as the tiny tokenizer's output (24), saved without a tokenizer (the
    head then uses the built-in Qwen2 BPE)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.Qwen2Config(vocab_size=151936, hidden_size=24, intermediate_size=48, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, head_dim=12,
                                      tie_word_embeddings=True, eos_token_id=151643)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_lm")
    transformers.Qwen2ForCausalLM(config).save_pretrained(folder)
    return folder


def test_causal_lm_head_learns_a_transcript_and_round_trips(tiny_lm, tmp_path):
    torch.manual_seed(0)
    task = Tokenizer25HzASRTask(Tokenizer25HzConfig.tiny(), head="causal_lm", lm=str(tiny_lm), max_new_tokens=8)
    assert task.hparams.vocabulary is None
    task.log = task.log_dict = lambda *a, **k: None
    batch = {"ids": ["x"], "wav": torch.randn(1, 16000) * 0.1, "lengths": torch.tensor([16000]),
             "texts": ["hello world"], "language_codes": ["en"]}
    opt = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(30):
        loss = task.training_step(batch, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses
    task.eval()
    with torch.no_grad():
        out = task.forward_batch(batch)
        assert task.head.transcribe(out.hidden, out.lengths) == ["hello world"]  # greedy generation, EOS stops it
        task.export(tmp_path / "export")
        again = load_asr_head(tmp_path / "export")
        assert again.transcribe(out.hidden, out.lengths) == ["hello world"]
    with pytest.raises(ValueError, match="task.lm"):
        Tokenizer25HzASRTask(Tokenizer25HzConfig.tiny(), head="causal_lm")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        Tokenizer25HzASRTask(Tokenizer25HzConfig.tiny(), head="causal_lm", lm=str(tmp_path))
    wide = Tokenizer25HzConfig.tiny().to_dict()
    wide["encoder_config"]["output_dim"] = 32
    with pytest.raises(ValueError, match="output_dim 32 must equal the ASR head's input width 24"):
        Tokenizer25HzASRTask(wide, head="causal_lm", lm=str(tiny_lm))
    with pytest.raises(ValueError, match="holds a 'causal_lm' head"):
        Tokenizer25HzASRTask(init_from=str(tmp_path / "export"), vocabulary=VOCAB)
