"""A new language on a trained model: its codec row, new text tokens with sub-token-average rows, a grown table,
and a folder that qtts and transformers' tokenizer (as qwen-tts loads it) both read."""

import pytest
import torch

from qtts.adapters.added_rows import apply_added_rows, save_added_rows
from qtts.adapters.language import add_language, extend_vocabulary
from qtts.cli import main
from qtts.inference import Request, Synthesizer
from qtts.models.random_release import tiny_codec_config, write_random_release
from qtts.models.random_weights import randomize_tts
from qtts.models.talker import TTSModel, tiny
from qtts.text.tokenizer import load_text_tokenizer

WORDS = ["Chuchichäschtli", "Grüezi", "Uuszit"]


def model() -> TTSModel:
    m = TTSModel(tiny("base"))
    randomize_tts(m, 4)
    return m


def test_language_row_is_free_and_starts_at_the_language_mean():
    m = model()
    languages = dict(m.config.talker_config.codec_language_id)
    used = set(m.config.talker_config.special_codec_ids().values())
    row = add_language(m, "Swissgerman")
    assert row >= 2048 and row not in used
    table = m.talker.model.codec_embedding.weight
    torch.testing.assert_close(table[row], table[list(languages.values())].mean(0))
    assert m.config.talker_config.codec_language_id["swissgerman"] == row
    with pytest.raises(ValueError, match="already has codec row"):
        add_language(m, "swissgerman")


def test_new_tokens_take_their_sub_token_mean_and_the_table_grows():
    m, tok = model(), load_text_tokenizer()
    old_rows = m.talker.model.text_embedding.weight.detach().clone()
    extended = extend_vocabulary(m, tok, WORDS)
    table = m.talker.model.text_embedding.weight
    for word in WORDS:
        (new_id,) = extended.encode(word)  # one token now
        assert new_id >= tok.vocab_size
        torch.testing.assert_close(table[new_id], old_rows[tok.encode(word)].mean(0))
    assert extended.encode("Hello") == tok.encode("Hello")
    assert table.shape[0] == old_rows.shape[0]  # the released table's padding rows were enough
    many = [f"neuwort{i}" for i in range(400)]
    bigger = extend_vocabulary(m, extended, many)
    grown = m.talker.model.text_embedding.weight
    assert grown.shape[0] > old_rows.shape[0] and grown.shape[0] % 64 == 0
    assert m.config.talker_config.text_vocab_size == grown.shape[0]
    torch.testing.assert_close(grown[: old_rows.shape[0] - 300], old_rows[: old_rows.shape[0] - 300])
    assert len(bigger.encode("neuwort399")) == 1


def test_folder_with_a_new_language_loads_and_speaks_it(tmp_path):
    base = write_random_release(tmp_path / "base", tiny("base", predictor_hidden=32), tiny_codec_config(), seed=1,
                                eos_scale=0)
    (tmp_path / "tokens.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    out = tmp_path / "with_language"
    assert main(["languages", "add", str(base), str(out), "--name", "swissgerman", "--code", "gsw",
                 "--tokens-file", str(tmp_path / "tokens.txt")]) == 0
    tok = load_text_tokenizer(out)
    assert len(tok.encode("Grüezi")) == 1
    from transformers import AutoTokenizer  # how qwen-tts's processor reads the folder's tokenizer

    hf = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    assert hf.encode("Grüezi Chuchichäschtli", add_special_tokens=False) == tok.encode("Grüezi Chuchichäschtli")
    synth = Synthesizer.from_pretrained(out)
    assert "swissgerman" in synth.languages
    codes = synth.generate_codes([Request("Grüezi mitenand.", language="swissgerman", prompt=None, speaker=None)],
                                 max_new_tokens=3, do_sample=False, subtalker_dosample=False)
    assert codes[0].shape == (3, 16)


def test_added_rows_grow_a_smaller_table_and_keep_its_rows(tmp_path):
    """An adapter's added rows (a language row, 400 tokens that grew the text table) onto the base it came from:
    the base's rows load as they are, the table grows to the adapter's size, names and new rows arrive."""
    trained, tok = model(), load_text_tokenizer()
    row = add_language(trained, "swissgerman")
    many = [f"neuwort{i}" for i in range(400)]
    extended = extend_vocabulary(trained, tok, many)
    new_ids = [extended.token_to_id(w) for w in many]
    with torch.no_grad():
        trained.talker.model.codec_embedding.weight[row] += 1.0  # as if trained
    save_added_rows(trained, tmp_path, {"codec_embedding": [row], "text_embedding": new_ids})
    base = model()
    old_text = base.talker.model.text_embedding.weight.detach().clone()
    old_codec = base.talker.model.codec_embedding.weight.detach().clone()
    apply_added_rows(base, tmp_path)
    text, codec = base.talker.model.text_embedding.weight, base.talker.model.codec_embedding.weight
    assert text.shape == trained.talker.model.text_embedding.weight.shape and text.shape[0] > old_text.shape[0]
    assert base.config.talker_config.text_vocab_size == text.shape[0]
    torch.testing.assert_close(text[new_ids], trained.talker.model.text_embedding.weight[new_ids])
    untouched = [i for i in range(old_text.shape[0]) if i not in set(new_ids)]
    torch.testing.assert_close(text[untouched], old_text[untouched])
    torch.testing.assert_close(codec[row], trained.talker.model.codec_embedding.weight[row])
    assert (codec[:row] == old_codec[:row]).all() and (codec[row + 1:] == old_codec[row + 1:]).all()
    assert base.config.talker_config.codec_language_id["swissgerman"] == row
    other = model()
    add_language(other, "romansh", row=row)  # the row means something else there
    with pytest.raises(ValueError, match="used by the model for other ids"):
        apply_added_rows(other, tmp_path)
