"""Loading tokenizers from folders: the written folder is a real Qwen2 tokenizer for transformers,
released-style folders (no tokenizer.json) load offline, incomplete ones fail clearly."""

import shutil
import socket

import pytest
from tokenizers import Tokenizer, models
from transformers import AutoTokenizer

from qtts.text.special_ids import RELEASED_TEXT_IDS
from qtts.text.tokenizer import IncompleteTokenizerFolder, TextTokenizer, load_text_tokenizer
from tests.text.samples import MULTILINGUAL

SAMPLES = MULTILINGUAL + ["<|im_start|>assistant\nhi<|im_end|>\n<tts_pad><tts_text_bos><tts_text_eod>"]


@pytest.fixture
def released_layout(model_folder, tmp_path):
    """What the released checkpoints ship: vocab.json, merges.txt, tokenizer_config.json."""
    dst = tmp_path / "released"
    shutil.copytree(model_folder, dst)
    (dst / "tokenizer.json").unlink()
    return dst


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_builtin_tokenizer(tok):
    assert tok.special_ids == RELEASED_TEXT_IDS
    assert tok.vocab_size == 151676


def test_written_folder_loads_in_transformers(tok, model_folder, no_network):
    assert sorted(p.name for p in model_folder.iterdir()) == [
        "merges.txt", "tokenizer.json", "tokenizer_config.json", "vocab.json"]
    hf = AutoTokenizer.from_pretrained(model_folder, local_files_only=True)
    assert type(hf).__name__ == "Qwen2TokenizerFast"
    assert [hf(s)["input_ids"] for s in SAMPLES] == tok.encode_batch(SAMPLES)
    assert len(hf) == tok.vocab_size and hf.convert_tokens_to_ids("<tts_text_eod>") == 151673
    assert hf.pad_token == "<|endoftext|>" and hf.bos_token is None


def test_released_layout_loads_offline_like_transformers_reads_it(tok, released_layout, no_network):
    ours = load_text_tokenizer(released_layout)
    assert ours.folder == released_layout
    assert ours.encode_batch(SAMPLES) == tok.encode_batch(SAMPLES)
    assert ours.special_ids == RELEASED_TEXT_IDS
    slow = AutoTokenizer.from_pretrained(released_layout, local_files_only=True, use_fast=False)  # pure Python BPE
    assert type(slow).__name__ == "Qwen2Tokenizer"
    assert [slow(s)["input_ids"] for s in SAMPLES] == tok.encode_batch(SAMPLES)


def test_folder_with_tokenizer_json_loads_it(tok, model_folder):
    ours = load_text_tokenizer(model_folder)
    assert ours.encode_batch(SAMPLES) == tok.encode_batch(SAMPLES)
    assert ours.decode(ours.encode(SAMPLES[0])) == SAMPLES[0]


@pytest.mark.parametrize("missing", ["vocab.json", "merges.txt", "tokenizer_config.json"])
def test_incomplete_folder_names_folder_and_file(released_layout, missing):
    (released_layout / missing).unlink()
    with pytest.raises(IncompleteTokenizerFolder, match=missing) as err:
        load_text_tokenizer(released_layout)
    assert str(released_layout) in str(err.value)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_text_tokenizer(tmp_path / "nowhere")


def test_special_ids_name_a_missing_token(tmp_path):
    plain = TextTokenizer(Tokenizer(models.BPE(vocab={"a": 0}, merges=[])), tmp_path)
    with pytest.raises(KeyError, match=r"<\|im_start\|>"):
        _ = plain.special_ids
