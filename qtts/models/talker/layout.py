"""Dual-track sequences: the one builder of every input layout of the released Qwen3-TTS talker.

Training examples and inference prefills come out of the same function (``build_sequence``), so
the two cannot drift apart. A sequence is a set of equal-length per-position tensors; the model
turns it into input embeddings with ``embed_dual_track``:

``x[t] = text_mask[t]·T(text_ids[t])                       T = text_projection ∘ text_embedding
       + codec_mask[t]·C(codec_ids[t])                       C = talker codec embedding
       + frame_mask[t]·(C(c0) + Σ_g E_g(c_g))                a full 16-group audio frame
       + xvector_mask[t]·xvector``                           the Base models' speaker vector

At most one of ``codec_mask``, ``frame_mask`` and ``xvector_mask`` is set at a position; positions
with none of them are text-only (instruct and role tokens).

Layout (positions, in order), as the released ``generate`` and fine-tuning build it:

1. instruct ids (text only; VoiceDesign, CustomVoice 1.7B);
2. role ``<|im_start|> assistant \\n`` (text only);
3. prefix: codec ``think block ⧺ [speaker slot] ⧺ codec_pad`` with text ``tts_pad … tts_bos``
   (``tts_bos`` sits on ``codec_pad``). Think block: ``nothink, think_bos, think_eos`` for language
   "auto", ``think, think_bos, lang, think_eos`` otherwise; a dialect speaker turns chinese/auto
   into its dialect's language id (``TalkerConfig.language_row``). The slot is an x-vector (Base) or
   the codec row of a speaker (CustomVoice), or absent;
4. the two streams, text ``S_t = ref_text ⧺ text ⧺ [tts_eos]`` and codec
   ``S_c = [codec_bos] ⧺ ref frames ⧺ target frames ⧺ [codec_eos]`` (targets and eos only in
   training examples):

   - non-streaming: ``S_t`` over ``codec_pad``, then ``S_c`` over ``tts_pad``;
   - streaming: the streams side by side, ``S_t`` padded with ``tts_pad``; text that does not fit
     is ``trailing_text_ids``: at generation step k (input = frame k) the text track is
     ``trailing_text_ids[k]``, then ``tts_pad`` forever.

Label convention (no further shift anywhere): ``labels[t]`` is the group-0 token that the hidden
state at position ``t`` must predict, so ``loss = CE(logits[t], labels[t])`` over positions with
``labels != -100``. In a training example, the position before target frame j (the codec_bos
position, or the last reference frame for in-context examples) carries ``c0`` of frame 0, target
frame j carries ``c0`` of frame j+1, the last target frame carries ``codec_eos``; the codec_eos
input position itself (kept so the layout equals the official SFT table row by row) carries -100.
``code_labels[t]`` (groups 1..15) belongs to the same frame as ``labels[t]``: the code predictor's
input for that frame is ``[hidden[t], C(labels[t]), E_1(code_labels[t, 0]), …]`` and head k is
trained on ``code_labels[t, k]`` unshifted. Rows whose ``labels`` is ``codec_eos`` or -100 have
``code_labels`` -100.

Batching (right padding, packing, left-padded prefills) is ``qtts.data.batching``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from qtts.text.special_ids import RELEASED_CODEC_IDS, RELEASED_TEXT_IDS, CodecSpecialIds, TextSpecialIds

IGNORE_INDEX = -100
NUM_CODE_GROUPS = 16


# --------------------------------------------------------------------------------------------- #
# one sequence


@dataclass
class DualTrackSequence:
    """One utterance's talker input; every tensor has the sequence length T as first dimension,
    except ``trailing_text_ids`` (K,), the text track of generation steps (inference, streaming)."""

    text_ids: Tensor  # (T,) long, 0 where text_mask is False
    text_mask: Tensor  # (T,) bool
    codec_ids: Tensor  # (T,) long, special codec ids (pad/bos/eos/think/lang/speaker row); 0 elsewhere
    codec_mask: Tensor  # (T,) bool
    frame_codes: Tensor  # (T, G) long, a full audio frame; 0 elsewhere
    frame_mask: Tensor  # (T,) bool
    xvector_mask: Tensor  # (T,) bool, the speaker-encoder slot
    labels: Tensor  # (T,) long, group-0 token predicted by the hidden state at t, -100 where none
    code_labels: Tensor  # (T, G-1) long, groups 1..G-1 of the frame whose c0 is labels[t]
    trailing_text_ids: Tensor  # (K,) long

    def __len__(self) -> int:
        return int(self.text_ids.shape[0])

    @property
    def num_code_groups(self) -> int:
        return int(self.frame_codes.shape[1])

    def table(self) -> list[tuple]:
        """Rows ``(text_id|None, codec_id|'F'|'X'|None, label|None)``: a readable view for tests and debugging."""
        rows = []
        for t in range(len(self)):
            text = int(self.text_ids[t]) if self.text_mask[t] else None
            if self.codec_mask[t]:
                codec = int(self.codec_ids[t])
            elif self.frame_mask[t]:
                codec = "F"
            elif self.xvector_mask[t]:
                codec = "X"
            else:
                codec = None
            label = int(self.labels[t]) if self.labels[t] != IGNORE_INDEX else None
            rows.append((text, codec, label))
        return rows


class _Rows:
    """Accumulates segments of positions; ``finish`` concatenates them."""

    def __init__(self, groups: int):
        self.g = groups
        self.parts: dict[str, list[Tensor]] = {
            f.name: [] for f in fields(DualTrackSequence) if f.name != "trailing_text_ids"
        }

    def add(self, n: int, *, text=None, codec=None, frames: Tensor | None = None, xvector: bool = False) -> None:
        if n == 0:
            return
        z = torch.zeros(n, dtype=torch.long)
        f = torch.zeros(n, dtype=torch.bool)
        p = self.parts
        p["text_ids"].append(z if text is None else torch.as_tensor(text, dtype=torch.long).expand(n))
        p["text_mask"].append(f if text is None else ~f)
        p["codec_ids"].append(z if codec is None else torch.as_tensor(codec, dtype=torch.long).expand(n))
        p["codec_mask"].append(f if codec is None else ~f)
        p["frame_codes"].append(torch.zeros(n, self.g, dtype=torch.long) if frames is None else frames)
        p["frame_mask"].append(f if frames is None else ~f)
        p["xvector_mask"].append(~f if xvector else f)
        p["labels"].append(torch.full((n,), IGNORE_INDEX, dtype=torch.long))
        p["code_labels"].append(torch.full((n, self.g - 1), IGNORE_INDEX, dtype=torch.long))

    def __len__(self) -> int:
        return sum(int(x.shape[0]) for x in self.parts["text_ids"])

    def finish(self, trailing: Sequence[int]) -> DualTrackSequence:
        cat = {k: torch.cat(v) for k, v in self.parts.items()}
        return DualTrackSequence(**cat, trailing_text_ids=torch.as_tensor(list(trailing), dtype=torch.long))


def _codes(codes, name: str, groups: int | None) -> Tensor:
    codes = torch.as_tensor(codes, dtype=torch.long)
    if codes.dim() != 2 or codes.shape[0] == 0:
        raise ValueError(f"{name} must have shape (frames >= 1, groups), got {tuple(codes.shape)}")
    if groups is not None and codes.shape[1] != groups:
        raise ValueError(f"{name} has {codes.shape[1]} code groups, expected {groups}")
    return codes


def build_sequence(
    text_ids: Sequence[int],
    *,
    language: int | None = None,
    speaker: int | None = None,
    xvector: bool = False,
    instruct_ids: Sequence[int] | None = None,
    ref_text_ids: Sequence[int] | None = None,
    ref_codes: Tensor | None = None,
    target_codes: Tensor | None = None,
    streaming: bool = False,
    role_ids: Sequence[int] | None = None,
    text_special: TextSpecialIds = RELEASED_TEXT_IDS,
    codec_special: CodecSpecialIds = RELEASED_CODEC_IDS,
    allow_unread_text: bool = False,
) -> DualTrackSequence:
    """Build one talker input sequence (see the module docstring for the layout and labels).

    text_ids: content ids of the text to speak (``target_ids(tok, text).content``), non-empty.
    language: the codec row of the language (``TalkerConfig.language_row``: names, codes and a dialect speaker's
        dialect resolve there); None is "auto".
    speaker: codec row of a CustomVoice speaker (``spk_id``).
    xvector: reserve the Base models' x-vector slot (the model writes the vector there).
    instruct_ids: the whole instruct template ids (``instruct_ids(tok, s).ids``), text-only positions.
    ref_text_ids, ref_codes (R, G): in-context cloning (both or neither).
    target_codes (C, G): make a training example (frames + codec_eos, with labels).
    streaming: the streaming text layout instead of the non-streaming one.
    role_ids: the role tokens (``target_ids(tok, text).role``), default ``<|im_start|> assistant \\n``.
    allow_unread_text: streaming with ``target_codes``: text that does not fit over the frames is cut (the codes
        of a sampled utterance that ended before generation read all its text: each frame gets the text track
        generation gave it) instead of refused (a training example whose audio is too short for its text).
    """
    tid, cid = text_special, codec_special
    text_ids = [int(i) for i in text_ids]
    if not text_ids:
        raise ValueError("text_ids is empty: there is nothing to speak")
    if speaker is not None and xvector:
        raise ValueError("a sequence has one speaker slot: give speaker or xvector, not both")
    if (ref_text_ids is None) != (ref_codes is None):
        raise ValueError("in-context cloning needs both ref_text_ids and ref_codes")
    ref = _codes(ref_codes, "ref_codes", None) if ref_codes is not None else None
    groups = ref.shape[1] if ref is not None else None
    target = _codes(target_codes, "target_codes", groups) if target_codes is not None else None
    groups = groups or (target.shape[1] if target is not None else NUM_CODE_GROUPS)

    rows = _Rows(groups)
    if instruct_ids is not None:
        rows.add(len(instruct_ids), text=list(instruct_ids))
    role = [tid.im_start, tid.assistant, tid.newline] if role_ids is None else [int(i) for i in role_ids]
    rows.add(len(role), text=role)

    # prefix: think block, speaker slot, codec_pad; text tts_pad ... tts_bos
    if language is not None and (isinstance(language, bool) or not isinstance(language, int)):
        raise TypeError(f"language must be a codec row (int) or None, got {language!r} "
                        "(TalkerConfig.language_row resolves names)")
    think = [cid.nothink, cid.think_bos, cid.think_eos] if language is None else \
        [cid.think, cid.think_bos, int(language), cid.think_eos]
    rows.add(len(think), text=tid.tts_pad, codec=think)
    if xvector:
        rows.add(1, text=tid.tts_pad, xvector=True)
    elif speaker is not None:
        rows.add(1, text=tid.tts_pad, codec=int(speaker))
    rows.add(1, text=tid.tts_bos, codec=cid.pad)

    # the two streams
    text_stream = ([int(i) for i in ref_text_ids] if ref is not None else []) + text_ids + [tid.tts_eos]
    # codec stream as (kind, value): "id" a special codec id, "frames" a block of frames
    codec_stream: list[tuple[str, object]] = [("id", cid.bos)]
    if ref is not None:
        codec_stream += [("frames", ref)]
    if target is not None:
        codec_stream += [("frames", target), ("id", cid.eos)]
    n_codec = sum(1 if k == "id" else v.shape[0] for k, v in codec_stream)

    if not streaming:
        rows.add(len(text_stream), text=text_stream, codec=cid.pad)
        text_over_codec = [tid.tts_pad] * n_codec
        trailing: list[int] = []
    else:
        fits = n_codec - (1 if target is not None else 0)  # training: all text before the codec_eos input
        if target is not None and len(text_stream) > fits and not allow_unread_text:
            raise ValueError(
                f"streaming training example: {len(text_stream)} text positions (with tts_eos) do not fit in "
                f"{fits} codec positions; the audio is too short for its text"
            )
        text_over_codec = (text_stream + [tid.tts_pad] * n_codec)[:n_codec]
        trailing = text_stream[n_codec:]
    start = len(rows)
    i = 0
    for kind, value in codec_stream:
        n = 1 if kind == "id" else value.shape[0]
        if kind == "id":
            rows.add(1, text=text_over_codec[i], codec=value)
        else:
            rows.add(n, text=torch.tensor(text_over_codec[i : i + n]), frames=value)
        i += n
    seq = rows.finish(trailing)

    if target is not None:
        first = start + n_codec - 1 - target.shape[0]  # position of the first target frame
        c = target.shape[0]
        seq.labels[first - 1 : first - 1 + c] = target[:, 0]
        seq.labels[first - 1 + c] = cid.eos
        seq.code_labels[first - 1 : first - 1 + c] = target[:, 1:]
    return seq


def sequence_length(
    n_text: int,
    *,
    n_target_frames: int = 0,
    explicit_language: bool = False,
    speaker_slot: bool = False,
    n_instruct: int = 0,
    n_ref_text: int = 0,
    n_ref_frames: int = 0,
    streaming: bool = False,
    n_role: int = 3,
) -> int:
    """Length of ``build_sequence``'s output without building it (for duration buckets and packing)."""
    prefix = (4 if explicit_language else 3) + int(speaker_slot) + 1
    n_codec = 1 + n_ref_frames + (n_target_frames + 1 if n_target_frames else 0)
    body = n_codec if streaming else (n_ref_text + n_text + 1) + n_codec
    return n_instruct + n_role + prefix + body


def build_from_strings(tokenizer, text: str, *, instruct: str | None = None, ref_text: str | None = None,
                       **kwargs) -> DualTrackSequence:
    """``build_sequence`` from strings, tokenized with the released ChatML templates."""
    from qtts.text.templates import instruct_ids, ref_text_ids, target_ids

    target = target_ids(tokenizer, text)
    return build_sequence(
        target.content,
        role_ids=target.role,
        instruct_ids=None if instruct is None else list(instruct_ids(tokenizer, instruct).ids),
        ref_text_ids=None if ref_text is None else ref_text_ids(tokenizer, ref_text).content,
        **kwargs,
    )


# --------------------------------------------------------------------------------------------- #
# embeddings


def embed_dual_track(
    seq: DualTrackSequence,
    *,
    text_embed: Callable[[Tensor], Tensor],
    codec_embed: Callable[[Tensor], Tensor],
    residual_embeds: Sequence[Callable[[Tensor], Tensor]],
    xvectors: Tensor | None = None,
) -> Tensor:
    """Input embeddings (..., T, H) of a sequence or batch.

    ``seq`` may also be a collated batch (``qtts.data.batching.DualTrackBatch``, same fields with a
    leading batch dimension); it is not named in the annotation because models/ does not import data/.

    text_embed: ids -> H (text_projection ∘ text_embedding); codec_embed: the talker codec
    embedding (group 0 and special ids); residual_embeds[g-1]: the embedding of code group g.
    xvectors (S, H): one vector per x-vector slot, in row-major order of ``xvector_mask``.
    """
    text = text_embed(seq.text_ids) * seq.text_mask.unsqueeze(-1)
    c0 = torch.where(seq.frame_mask, seq.frame_codes[..., 0], seq.codec_ids)
    out = text + codec_embed(c0) * (seq.codec_mask | seq.frame_mask).unsqueeze(-1)
    fm = seq.frame_mask.unsqueeze(-1)
    for g, emb in enumerate(residual_embeds, start=1):
        out = out + emb(seq.frame_codes[..., g]) * fm
    n_slots = int(seq.xvector_mask.sum())
    if n_slots:
        if xvectors is None or xvectors.shape[0] != n_slots:
            got = None if xvectors is None else xvectors.shape[0]
            raise ValueError(f"{n_slots} x-vector slots but {got} x-vectors")
        slots = seq.xvector_mask.unsqueeze(-1).expand_as(out)
        out = out + torch.zeros_like(out).masked_scatter(slots, xvectors.to(out.dtype))
    return out
