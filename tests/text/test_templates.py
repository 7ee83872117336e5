"""ChatML ids equal what qwen-tts builds, and the special-id sets read and write config.json keys."""

import json
from dataclasses import fields

import pytest

from qtts.text.special_ids import RELEASED_CODEC_IDS, RELEASED_TEXT_IDS, CodecSpecialIds, TextSpecialIds
from qtts.text.templates import instruct_ids, ref_text_ids, target_ids
from tests.text.samples import MULTILINGUAL

ROLE = [151644, 77091, 198]  # <|im_start|> assistant \n


def test_target_layout(tok):
    chat = target_ids(tok, "Hello world")
    assert chat.role == ROLE
    assert chat.content == [9707, 1879]
    assert list(chat.ids[-5:]) == [151645, 198, 151644, 77091, 198]
    assert chat.role_and_content == ROLE + [9707, 1879]  # what the official fine-tuning keeps


def test_ref_and_instruct_layout(tok):
    ref = ref_text_ids(tok, "Hello world")
    assert ref.role == ROLE and ref.content == [9707, 1879] and list(ref.ids[-2:]) == [151645, 198]
    inst = instruct_ids(tok, "Speak softly.")
    assert inst.content == list(inst.ids) and inst.ids[:3] == (151644, 872, 198) and inst.ids[-2:] == (151645, 198)


@pytest.mark.parametrize("text", MULTILINGUAL)
def test_content_is_the_text_alone(tok, text):
    assert target_ids(tok, text).content == tok.encode(text)


def test_leading_newline_merges_into_the_role_as_upstream(tok):
    """Upstream tokenizes the whole template, so a text that starts with (blanks and) a newline
    changes the role tokens (\\n\\n is one token): slicing, not separate encoding, keeps us identical."""
    chat = target_ids(tok, "\nhello")
    assert chat.role == [151644, 77091, 271] and chat.content == tok.encode("hello")


def test_special_ids_match_the_tokenizer_and_the_facts(tok):
    assert tok.special_ids == RELEASED_TEXT_IDS
    assert RELEASED_TEXT_IDS == TextSpecialIds(151644, 151645, 77091, 198, 151671, 151672, 151673)
    assert RELEASED_CODEC_IDS == CodecSpecialIds(2148, 2149, 2150, 2154, 2155, 2156, 2157)


def test_special_ids_config_round_trip():
    for cls in (TextSpecialIds, CodecSpecialIds):
        assert {f.name for f in fields(cls)} == set(cls._keys)
    released_talker = {"codec_pad_id": 2148, "codec_bos_id": 2149, "codec_eos_token_id": 2150, "codec_think_id": 2154,
                       "codec_nothink_id": 2155, "codec_think_bos_id": 2156, "codec_think_eos_id": 2157}
    assert RELEASED_CODEC_IDS.to_config() == released_talker
    custom = CodecSpecialIds.from_config({**released_talker, "codec_eos_token_id": 4198, "vocab_size": 4096})
    assert custom.eos == 4198 and custom.pad == 2148
    top = {"im_start_token_id": 151644, "im_end_token_id": 151645, "tts_pad_token_id": 151671,
           "tts_bos_token_id": 151672, "tts_eos_token_id": 151673}  # no assistant_token_id: default kept
    assert TextSpecialIds.from_config(top) == RELEASED_TEXT_IDS
    with pytest.raises(AttributeError):
        RELEASED_CODEC_IDS.pad = 0


# --- parity with qwen-tts (its own template builders and its processor loading path) ---------------


@pytest.fixture(scope="module")
def upstream(model_folder, tmp_path_factory):
    """qwen-tts' model wrapper, holding only what its tokenization uses: the processor it loads
    with AutoProcessor from a checkpoint folder (here: our tokenizer files + a config.json)."""
    torch = pytest.importorskip("torch")
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSProcessor
    from qwen_tts.inference.qwen3_tts_model import Qwen3TTSModel
    from transformers import AutoConfig, AutoProcessor

    AutoConfig.register("qwen3_tts", Qwen3TTSConfig, exist_ok=True)
    AutoProcessor.register(Qwen3TTSConfig, Qwen3TTSProcessor, exist_ok=True)
    folder = tmp_path_factory.mktemp("checkpoint")
    for f in model_folder.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3_tts", "tts_model_type": "base"}))
    model = Qwen3TTSModel.__new__(Qwen3TTSModel)
    model.processor = AutoProcessor.from_pretrained(str(folder), fix_mistral_regex=True)  # as from_pretrained does
    model.device = torch.device("cpu")
    assert type(model.processor).__name__ == "Qwen3TTSProcessor"
    return model


def _upstream_ids(model, text):
    return tuple(model._tokenize_texts([text])[0][0].tolist())


@pytest.mark.parametrize("text", MULTILINGUAL)
def test_parity_with_qwen_tts(tok, upstream, text):
    assert target_ids(tok, text).ids == _upstream_ids(upstream, upstream._build_assistant_text(text))
    assert ref_text_ids(tok, text).ids == _upstream_ids(upstream, upstream._build_ref_text(text))
    assert instruct_ids(tok, text).ids == _upstream_ids(upstream, upstream._build_instruct_text(text))


def test_qwen_tts_swaps_the_split_regex_of_checkpoints(tok, upstream):
    """Known divergence, kept visible: qwen-tts loads the processor with ``fix_mistral_regex=True``,
    and transformers 4.57.3 then replaces the Qwen2 split regex by Mistral's for any folder whose
    config.json lacks ``transformers_version`` <= 4.57.2. That regex splits at case changes and
    inside camel-case words, so those tokenize differently from the Qwen2 tokenizer."""
    for text in ("iPhone", "JavaScript", "GitHub", "用iPad看YouTube"):
        assert target_ids(tok, text).ids != _upstream_ids(upstream, upstream._build_assistant_text(text))
