"""ASR heads on the 25 Hz tokenizer's encoder output, for stage 1 of its training (ASR with the VQ inside the
encoder, ``reference/tokenizer-25hz.md`` §3): the transcript loss is what makes the codes semantic.

``ASRHead`` is the contract a head fulfils (a loss over transcripts, a transcription, a folder); ``CTCHead`` is the
default: a linear layer over the encoder's 25 Hz embeddings (``EncoderOutput.hidden``, its ``audio_bos``/``audio_eos``
rows included, where CTC learns to emit blanks) to a character vocabulary plus the CTC blank, decoded greedily.
It needs no language model, so it trains on a CPU. ``CausalLMHead`` is the paper's setting (Qwen2-Audio style): a
causal LM from a local transformers folder reads the embeddings, then the transcript's tokens, and learns to predict
the transcript and EOS; the encoder's ``proj`` must output the LM's hidden size (``output_dim``). The head is not
part of the released tokenizer folder: it is saved in ``asr_head/`` inside it (``config.json`` with its ``type``,
and the weights), so stage 2 resumes it.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from qtts.models.checkpoint import CONFIG_NAME, check_weights, load_weights, read_json, save_weights, write_json
from qtts.text.tokenizer import has_tokenizer, load_text_tokenizer

HEAD_FOLDER = "asr_head"  # inside an exported tokenizer folder
LM_FOLDER = "lm"  # inside asr_head/ of a causal-LM head: the LM's save_pretrained folder and its tokenizer.json
BLANK = 0  # the CTC blank's id; characters take ids 1..len(vocabulary)


def normalize_transcript(text: str) -> str:
    """What the character head reads and writes: the transcript lower-cased (case carries nothing a speech
    tokenizer can hear; the Seed-TTS-eval scorer lower-cases too)."""
    return text.lower()


def character_vocabulary(texts: list[str]) -> list[str]:
    """The sorted characters of ``texts`` after ``normalize_transcript``: a character head's vocabulary."""
    return sorted(set("".join(normalize_transcript(t) for t in texts)))


class ASRHead(nn.Module, abc.ABC):
    """What the ASR task trains on top of the encoder: ``hidden`` (B, T, output_dim) with ``lengths`` (B,) rows
    valid per item → a loss against transcripts, or transcripts."""

    @abc.abstractmethod
    def loss(self, hidden: torch.Tensor, lengths: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """The 0-d training loss of the batch."""

    @abc.abstractmethod
    def transcribe(self, hidden: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """One transcript per item."""

    @abc.abstractmethod
    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write the head to ``folder`` (``config.json`` last)."""


class CTCHead(ASRHead):
    """``proj``: a linear layer output_dim → 1 + len(vocabulary) (blank first), trained with CTC and decoded
    greedily (best class per frame, repeats merged, blanks dropped)."""

    TYPE = "ctc"

    def __init__(self, input_dim: int, vocabulary: list[str]):
        super().__init__()
        if not vocabulary or any(not isinstance(c, str) or len(c) != 1 for c in vocabulary):
            raise ValueError(f"vocabulary must be a non-empty list of single characters, got {vocabulary!r}")
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError(f"vocabulary lists a character twice: {vocabulary!r}")
        self.input_dim = input_dim
        self.vocabulary = list(vocabulary)
        self._ids = {c: i + 1 for i, c in enumerate(self.vocabulary)}
        self.proj = nn.Linear(input_dim, len(vocabulary) + 1)

    def encode_text(self, text: str) -> list[int]:
        """A transcript → character ids (1-based); a character outside the vocabulary is an error naming it."""
        normal = normalize_transcript(text)
        unknown = sorted({c for c in normal if c not in self._ids})
        if unknown:
            raise ValueError(f"transcript {text!r} has character(s) {unknown} outside the head's vocabulary")
        return [self._ids[c] for c in normal]

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, output_dim) → (B, T, 1 + vocabulary) log-probabilities, in float32."""
        return F.log_softmax(self.proj(hidden).float(), dim=-1)

    def loss(self, hidden: torch.Tensor, lengths: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """CTC (mean over items of the loss per target character); an item whose transcript cannot fit its frames
        (more characters and repeats than frames) contributes 0 rather than infinity."""
        if len(texts) != len(hidden):
            raise ValueError(f"{len(texts)} transcripts for a batch of {len(hidden)}")
        targets = [torch.tensor(self.encode_text(t), dtype=torch.long) for t in texts]
        target_lengths = torch.tensor([len(t) for t in targets])
        if bool((target_lengths == 0).any()):
            raise ValueError(f"empty transcript(s) in the batch: {[t for t in texts if not normalize_transcript(t)]}")
        log_probs = self.log_probs(hidden).transpose(0, 1)  # (T, B, C)
        return F.ctc_loss(log_probs, torch.cat(targets).to(hidden.device), lengths.to(hidden.device),
                          target_lengths.to(hidden.device), blank=BLANK, reduction="mean", zero_infinity=True)

    def transcribe(self, hidden: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        best = self.log_probs(hidden).argmax(dim=-1).cpu()
        texts = []
        for ids, n in zip(best, lengths.tolist()):
            ids = torch.unique_consecutive(ids[:n]).tolist()
            texts.append("".join(self.vocabulary[i - 1] for i in ids if i != BLANK))
        return texts

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_weights(folder, self.state_dict())
        write_json(folder / CONFIG_NAME, {"type": self.TYPE, "input_dim": self.input_dim,
                                          "vocabulary": self.vocabulary})


class CausalLMHead(ASRHead):
    """A causal LM (a local transformers folder; its tokenizer, or the built-in Qwen2 BPE when the folder has none)
    over ``[audio embeddings; transcript tokens; EOS]``: the loss is its next-token cross-entropy on the transcript
    and EOS (the audio rows are context, not targets); transcription is greedy generation after the audio rows,
    up to ``max_new_tokens``. The LM trains with the encoder."""

    TYPE = "causal_lm"

    def __init__(self, folder: str | os.PathLike, max_new_tokens: int = 128):
        super().__init__()
        path = Path(folder)
        if not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"ASR LM folder {path} has no {CONFIG_NAME} (expected a transformers causal LM "
                                    "saved with save_pretrained)")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be ≥ 1, got {max_new_tokens}")
        from transformers import AutoConfig, AutoModelForCausalLM  # slow import: only for this head

        config = AutoConfig.from_pretrained(path, local_files_only=True)
        try:
            self.lm = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise ValueError(f"ASR LM folder {path}: cannot load a causal LM from it ({e})") from e
        self.tokenizer = load_text_tokenizer(path if has_tokenizer(path) else None)
        eos = config.eos_token_id
        eos = eos[0] if isinstance(eos, (list, tuple)) else eos
        if eos is None:
            eos = self.tokenizer.token_to_id("<|endoftext|>")
        if eos is None:
            raise ValueError(f"ASR LM folder {path}: its config names no eos_token_id and the tokenizer has no "
                             "<|endoftext|>")
        self.eos_id = int(eos)
        self.input_dim = int(config.hidden_size)
        self.max_new_tokens = max_new_tokens

    def loss(self, hidden: torch.Tensor, lengths: torch.Tensor, texts: list[str]) -> torch.Tensor:
        if len(texts) != len(hidden):
            raise ValueError(f"{len(texts)} transcripts for a batch of {len(hidden)}")
        embed = self.lm.get_input_embeddings()
        rows, targets = [], []
        for h, n, text in zip(hidden, lengths.tolist(), texts):
            ids = torch.tensor(self.tokenizer.encode(text) + [self.eos_id], device=h.device)
            rows.append(torch.cat([h[:n].to(embed.weight.dtype), embed(ids)]))
            targets.append(torch.cat([torch.full((n,), -100, device=h.device), ids]))
        longest = max(len(r) for r in rows)
        x = torch.stack([F.pad(r, (0, 0, 0, longest - len(r))) for r in rows])
        labels = torch.stack([F.pad(t, (0, longest - len(t)), value=-100) for t in targets])
        mask = torch.stack([torch.arange(longest, device=x.device) < len(r) for r in rows]).long()
        return self.lm(inputs_embeds=x, attention_mask=mask, labels=labels).loss

    @torch.no_grad()
    def transcribe(self, hidden: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        texts = []
        dtype = self.lm.get_input_embeddings().weight.dtype
        for h, n in zip(hidden, lengths.tolist()):
            x = h[None, :n].to(dtype)
            ids = self.lm.generate(inputs_embeds=x, attention_mask=torch.ones(1, n, dtype=torch.long, device=x.device),
                                   max_new_tokens=self.max_new_tokens, do_sample=False, eos_token_id=self.eos_id,
                                   pad_token_id=self.eos_id)[0].tolist()
            if self.eos_id in ids:
                ids = ids[: ids.index(self.eos_id)]
            texts.append(self.tokenizer.decode(ids, skip_special_tokens=True))
        return texts

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        (folder / LM_FOLDER).mkdir(parents=True, exist_ok=True)
        self.lm.save_pretrained(folder / LM_FOLDER)
        self.tokenizer.backend.save(str(folder / LM_FOLDER / "tokenizer.json"))
        write_json(folder / CONFIG_NAME, {"type": self.TYPE, "max_new_tokens": self.max_new_tokens})


def load_asr_head(folder: str | os.PathLike) -> ASRHead:
    """An ``asr_head/`` folder (or the tokenizer folder holding one) → its head, every weight checked."""
    folder = Path(folder)
    if (folder / HEAD_FOLDER / CONFIG_NAME).is_file():
        folder = folder / HEAD_FOLDER
    config_path = folder / CONFIG_NAME
    config = read_json(config_path)
    if config.get("type") == CausalLMHead.TYPE:
        return CausalLMHead(folder / LM_FOLDER, int(config.get("max_new_tokens", 128)))
    if config.get("type") != CTCHead.TYPE:
        raise ValueError(f"{config_path}: type must be {CTCHead.TYPE!r} or {CausalLMHead.TYPE!r} (an ASR head "
                         f"folder), got {config.get('type')!r}")
    try:
        head = CTCHead(int(config["input_dim"]), list(config["vocabulary"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{config_path}: {e}") from e
    weights, path = load_weights(folder)
    check_weights(head.state_dict(), weights, path)
    head.load_state_dict(weights, strict=True)
    return head
