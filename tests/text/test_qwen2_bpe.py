"""The converted tokenizer equals tiktoken over the same ranks, and its cache is safe to share."""

import random
import threading
import time
import unicodedata

import pytest
import tiktoken
from tokenizers import Tokenizer, models

from qtts.text import qwen2_bpe
from qtts.text.qwen2_bpe import ADDED_TOKENS, FIRST_ADDED_ID, SPLIT_PATTERN, byte_alphabet, derive_merges, load_ranks
from tests.text.samples import MULTILINGUAL


@pytest.fixture(scope="module")
def ranks():
    return load_ranks()


@pytest.fixture(scope="module")
def oracle(ranks):
    return tiktoken.Encoding("qwen2", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens={})


def test_ranks_and_merges_have_the_released_shape(ranks, tok):
    assert len(ranks) == FIRST_ADDED_ID == 151643
    merges = (tok.folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[:5] == ["#version: 0.2", "Ġ Ġ", "ĠĠ ĠĠ", "i n", "Ġ t"]  # as in the released merges.txt
    assert len(merges) == 1 + 151643 - 256  # one merge per multi-byte token


def test_byte_alphabet_is_a_bijection_onto_visible_characters():
    alphabet = byte_alphabet()
    assert len(set(alphabet)) == 256
    assert alphabet[ord("A")] == "A" and alphabet[ord(" ")] == "Ġ" and alphabet[ord("\n")] == "Ċ"
    assert not any(c.isspace() for c in alphabet)


def test_merges_follow_bpe_not_any_split():
    # BPE over "abc" merges ab (rank 3) before bc (rank 4), so "abc" is made as ab + c, not a + bc
    ranks = {b"a": 0, b"b": 1, b"c": 2, b"ab": 3, b"bc": 4, b"abc": 5}
    assert derive_merges(ranks) == [(b"a", b"b"), (b"b", b"c"), (b"ab", b"c")]
    with pytest.raises(ValueError, match="not reachable"):
        derive_merges({b"a": 0, b"b": 1, b"c": 2, b"abc": 3})


def test_every_vocabulary_token_is_reached_by_the_merges(tok):
    """Run the BPE model alone (no split) on each token's own bytes: it must give that token."""
    model_only = Tokenizer(models.BPE.from_file(str(tok.folder / "vocab.json"), str(tok.folder / "merges.txt")))
    vocab = model_only.get_vocab()
    encoded = model_only.encode_batch(list(vocab), add_special_tokens=False)
    wrong = [(token, e.ids) for (token, token_id), e in zip(vocab.items(), encoded) if e.ids != [token_id]]
    assert not wrong, wrong[:5]


@pytest.mark.parametrize("text", MULTILINGUAL)
def test_encodes_like_tiktoken(tok, oracle, text):
    assert tok.encode(text) == oracle.encode_ordinary(text)


def test_encodes_like_tiktoken_on_random_vocabulary_soup(tok, oracle, ranks):
    """Strings glued from random vocabulary pieces hit merge orders no hand-written sample does."""
    rng = random.Random(0)
    pieces = [t.decode("utf-8") for t in ranks if _is_utf8(t)]
    texts = [unicodedata.normalize("NFC", "".join(rng.choices(pieces, k=rng.randint(1, 24)))) for _ in range(3000)]
    assert tok.encode_batch(texts) == oracle.encode_ordinary_batch(texts)


def _is_utf8(token: bytes) -> bool:
    try:
        token.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_normalizes_to_nfc_first(tok, oracle):
    decomposed = "Cafe\u0301 the\u0301"
    assert tok.encode(decomposed) == oracle.encode_ordinary(unicodedata.normalize("NFC", decomposed))


@pytest.mark.parametrize("text", MULTILINGUAL)
def test_decode_round_trips(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_special_tokens_have_the_released_ids_and_are_never_split(tok):
    for offset, content in enumerate(ADDED_TOKENS):
        assert tok.token_to_id(content) == FIRST_ADDED_ID + offset
        assert tok.encode(f"x{content}y") == [tok.encode("x")[0], FIRST_ADDED_ID + offset, tok.encode("y")[0]]
    assert tok.encode("<tts_pad><tts_pad><|im_end|>") == [151671, 151671, 151645]
    assert tok.decode([151644, 77091, 198]) == "<|im_start|>assistant\n"
    assert tok.decode(tok.encode("<tts_pad>a<think>"), skip_special_tokens=True) == "a<think>"  # Qwen3 flags
    assert tok.vocab_size == 151643 + 33


def test_single_token_words(tok):
    assert tok.encode("assistant") == [77091]
    assert tok.encode("user") == [872]
    assert tok.encode("\n") == [198]
    assert tok.encode("Hello world") == [9707, 1879]  # the example in transformers' Qwen2 docs


def test_cache_is_reused(tok):
    stamp = (tok.folder / "tokenizer.json").stat().st_mtime_ns
    assert qwen2_bpe.builtin_tokenizer_dir() == tok.folder
    assert (tok.folder / "tokenizer.json").stat().st_mtime_ns == stamp


@pytest.fixture
def fake_build(tmp_path, monkeypatch):
    """An empty cache and a fast stand-in conversion (the cache logic does not care what is written)."""
    monkeypatch.setenv("QTTS_CACHE", str(tmp_path))
    builds = []
    monkeypatch.setattr(qwen2_bpe, "build_tokenizer", lambda: builds.append(1))

    def write(_, dst):
        dst.mkdir()
        time.sleep(0.05)  # widen the race window
        for name in qwen2_bpe.FILES:
            (dst / name).write_text("x")

    monkeypatch.setattr(qwen2_bpe, "write_official_files", write)
    return tmp_path / "tokenizers", builds


def test_damaged_cache_is_rebuilt(fake_build):
    root, builds = fake_build
    folder = qwen2_bpe.builtin_tokenizer_dir()
    (folder / "merges.txt").unlink()
    assert qwen2_bpe.builtin_tokenizer_dir() == folder
    assert all((folder / f).is_file() for f in qwen2_bpe.FILES) and len(builds) == 2
    assert sorted(p.name for p in root.iterdir()) == [".qwen2-bpe.lock", "qwen2-bpe"]  # no temp folders


def test_concurrent_builds_all_see_a_complete_folder(fake_build):
    root, builds = fake_build
    seen, errors = [], []

    def build():
        try:
            folder = qwen2_bpe.builtin_tokenizer_dir()
            seen.append(all((folder / f).is_file() for f in qwen2_bpe.FILES))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and seen == [True] * 4
    assert sorted(p.name for p in root.iterdir()) == [".qwen2-bpe.lock", "qwen2-bpe"]
    assert len(builds) == 1  # the others waited and reused it
