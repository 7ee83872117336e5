"""Dual-track sequence builder: hand-written golden tables for every layout, parity of the prefill
embeddings with qwen-tts's ``generate``, and packing / collate.

Golden tables are rows ``(text id | None, codec id | "F" frame | "X" x-vector | None, label | None)``.
Text "a b" is the fake content ids [11, 12]; frames are small explicit code blocks.
"""

from __future__ import annotations

import pytest
import torch

from qtts.data.batching import collate_prefill, collate_training, pack_sequences, plan_packs
from qtts.models.layers import attention_mask
from qtts.models.talker.config import TalkerConfig, language_row, released_0_6b
from qtts.models.talker.layout import (
    IGNORE_INDEX,
    build_from_strings,
    build_sequence,
    embed_dual_track,
    sequence_length,
)

# released ids, spelled out so the tables read like the facts sheet
IMS, AST, NL = 151644, 77091, 198
PAD, BOS, EOS = 151671, 151672, 151673  # tts_pad, tts_bos, tts_eos
CPAD, CBOS, CEOS = 2148, 2149, 2150
THINK, NOTHINK, TBOS, TEOS = 2154, 2155, 2156, 2157
EN, ZH, SICHUAN = 2050, 2055, 2062
X, F = "X", "F"
A, B = 11, 12  # text "a b"


def frames(*c0s: int, groups: int = 16) -> torch.Tensor:
    """Frames whose group g holds c0 + g (so every group is distinct and checkable)."""
    return torch.tensor([[c + g for g in range(groups)] for c in c0s])


ROLE = [(IMS, None, None), (AST, None, None), (NL, None, None)]
AUTO = [(PAD, NOTHINK, None), (PAD, TBOS, None), (PAD, TEOS, None)]


def english(codec_lang=EN):
    return [(PAD, THINK, None), (PAD, TBOS, None), (PAD, codec_lang, None), (PAD, TEOS, None)]


def check(seq, expected_rows, trailing=()):
    assert seq.table() == expected_rows
    assert seq.trailing_text_ids.tolist() == list(trailing)
    # exactly one codec-track kind per position at most
    kinds = seq.codec_mask.int() + seq.frame_mask.int() + seq.xvector_mask.int()
    assert int(kinds.max()) <= 1
    assert len(seq) == len(expected_rows)


# ------------------------------------------------------------------------------------------- #
# golden layouts


def test_non_streaming_auto_language():
    seq = build_sequence([A, B], language=None)
    check(seq, ROLE + AUTO + [
        (BOS, CPAD, None),
        (A, CPAD, None),
        (B, CPAD, None),
        (EOS, CPAD, None),
        (PAD, CBOS, None),
    ])
    assert (seq.labels == IGNORE_INDEX).all() and (seq.code_labels == IGNORE_INDEX).all()


def test_explicit_language():
    seq = build_sequence([A, B], language=EN)
    check(seq, ROLE + english() + [(BOS, CPAD, None), (A, CPAD, None), (B, CPAD, None), (EOS, CPAD, None),
                                   (PAD, CBOS, None)])
    talker = TalkerConfig()
    assert talker.language_row("english") == talker.language_row("en") == talker.language_row("EN") == EN
    assert talker.language_row("auto") is None and talker.language_row(None) is None


def test_xvector_slot():
    seq = build_sequence([A], language=None, xvector=True)
    check(seq, ROLE + AUTO + [(PAD, X, None), (BOS, CPAD, None), (A, CPAD, None), (EOS, CPAD, None), (PAD, CBOS, None)])
    assert seq.xvector_mask.nonzero().flatten().tolist() == [6]


def test_custom_voice_speaker():
    seq = build_sequence([A], language=ZH, speaker=3066)
    check(seq, ROLE + english(ZH) + [(PAD, 3066, None), (BOS, CPAD, None), (A, CPAD, None), (EOS, CPAD, None),
                                     (PAD, CBOS, None)])


@pytest.mark.parametrize("language, lang_id", [("auto", SICHUAN), ("chinese", SICHUAN), ("english", EN)])
def test_dialect_speaker(language, lang_id):
    """A dialect speaker (eric: sichuan_dialect) turns chinese and auto into its dialect, as qwen-tts does."""
    talker = released_0_6b("custom_voice").talker_config
    assert talker.language_row(language, "Eric") == lang_id
    assert talker.language_row(language, "serena") == (None if language == "auto" else talker.language_row(language))
    seq = build_sequence([A], language=talker.language_row(language, "eric"), speaker=2875)
    check(seq, ROLE + english(lang_id) + [(PAD, 2875, None), (BOS, CPAD, None), (A, CPAD, None), (EOS, CPAD, None),
                                          (PAD, CBOS, None)])
    assert talker.language_row(None, "dylan") == 2074


def test_instruct_prefix():
    instruct = [IMS, 872, NL, 31, 32, 151645, NL]  # "<|im_start|>user\n" + 2 tokens + "<|im_end|>\n"
    seq = build_sequence([A], language=None, instruct_ids=instruct)
    check(seq, [(i, None, None) for i in instruct] + ROLE + AUTO + [
        (BOS, CPAD, None), (A, CPAD, None), (EOS, CPAD, None), (PAD, CBOS, None),
    ])


def test_streaming_prefill_and_trailing_text():
    seq = build_sequence([A, B, 13], language=None, streaming=True)
    check(seq, ROLE + AUTO + [(BOS, CPAD, None), (A, CBOS, None)], trailing=[B, 13, EOS])


def test_icl_non_streaming():
    ref = frames(100, 200)
    seq = build_sequence([A, B], language=None, xvector=True, ref_text_ids=[21], ref_codes=ref)
    check(seq, ROLE + AUTO + [
        (PAD, X, None),
        (BOS, CPAD, None),
        (21, CPAD, None),
        (A, CPAD, None),
        (B, CPAD, None),
        (EOS, CPAD, None),
        (PAD, CBOS, None),
        (PAD, F, None),
        (PAD, F, None),
    ])
    assert seq.frame_codes[-2:].tolist() == ref.tolist()
    assert (seq.frame_codes[:-2] == 0).all()


def test_icl_streaming_text_longer_than_codes():
    ref = frames(100, 200)
    seq = build_sequence([A, B, 13], language=None, xvector=True, ref_text_ids=[21], ref_codes=ref, streaming=True)
    check(seq, ROLE + AUTO + [
        (PAD, X, None),
        (BOS, CPAD, None),
        (21, CBOS, None),
        (A, F, None),
        (B, F, None),
    ], trailing=[13, EOS])


def test_icl_streaming_text_shorter_than_codes():
    ref = frames(100, 200, 300, 400)
    seq = build_sequence([A], language=None, xvector=True, ref_text_ids=[21], ref_codes=ref, streaming=True)
    check(seq, ROLE + AUTO + [
        (PAD, X, None),
        (BOS, CPAD, None),
        (21, CBOS, None),
        (A, F, None),
        (EOS, F, None),
        (PAD, F, None),
        (PAD, F, None),
    ])
    assert seq.frame_codes[-4:].tolist() == ref.tolist()


def test_training_example_equals_official_sft_table():
    """facts §3 table: non-streaming, language auto, x-vector slot at position 6; labels written
    here already shifted: the row that predicts a code carries it."""
    tgt = frames(100, 200, 300)
    seq = build_sequence([A, B], language=None, xvector=True, target_codes=tgt)
    check(seq, [
        (IMS, None, None),  # 0-2 role, codec masked
        (AST, None, None),
        (NL, None, None),
        (PAD, NOTHINK, None),  # 3-6 tts_pad over the think block and the x-vector
        (PAD, TBOS, None),
        (PAD, TEOS, None),
        (PAD, X, None),
        (BOS, CPAD, None),  # 7
        (A, CPAD, None),  # 8 .. text
        (B, CPAD, None),
        (EOS, CPAD, None),
        (PAD, CBOS, 100),  # codec_bos predicts c0 of frame 0
        (PAD, F, 200),  # frame 0 predicts frame 1
        (PAD, F, 300),
        (PAD, F, CEOS),  # last frame predicts codec_eos
        (PAD, CEOS, None),  # codec_eos input: nothing to predict
    ])
    # masks as the official collate builds them
    assert seq.text_mask.tolist() == [True] * 16
    assert (seq.codec_mask | seq.frame_mask).tolist() == [False] * 3 + [True] * 3 + [False] + [True] * 9
    assert seq.frame_mask.nonzero().flatten().tolist() == [12, 13, 14]
    assert seq.frame_codes[12:15].tolist() == tgt.tolist()
    # residual groups: with the row that predicts the frame, unshifted
    assert seq.code_labels[11:14].tolist() == tgt[:, 1:].tolist()
    assert (seq.code_labels[:11] == IGNORE_INDEX).all() and (seq.code_labels[14:] == IGNORE_INDEX).all()
    # equivalently: the official per-position labels shifted exactly once
    official = torch.full((16,), IGNORE_INDEX)
    official[12:15] = tgt[:, 0]
    official[15] = CEOS
    assert seq.labels[:-1].tolist() == official[1:].tolist()
    # the training prefix is the inference prefill
    prefill = build_sequence([A, B], language=None, xvector=True)
    for name in ("text_ids", "text_mask", "codec_ids", "codec_mask", "frame_mask", "xvector_mask"):
        assert torch.equal(getattr(seq, name)[: len(prefill)], getattr(prefill, name)), name


def test_training_example_in_context():
    ref, tgt = frames(100), frames(200, 300)
    seq = build_sequence([A], language=EN, xvector=True, ref_text_ids=[21], ref_codes=ref, target_codes=tgt)
    check(seq, ROLE + english() + [
        (PAD, X, None),
        (BOS, CPAD, None),
        (21, CPAD, None),
        (A, CPAD, None),
        (EOS, CPAD, None),
        (PAD, CBOS, None),  # reference frames are context, not targets
        (PAD, F, 200),  # the last reference frame predicts the first target frame
        (PAD, F, 300),
        (PAD, F, CEOS),
        (PAD, CEOS, None),
    ])
    assert seq.code_labels[13:15].tolist() == tgt[:, 1:].tolist()


def test_training_example_streaming():
    tgt = frames(100, 200, 300, 400)
    seq = build_sequence([A, B], language=None, speaker=3000, target_codes=tgt, streaming=True)
    check(seq, ROLE + AUTO + [
        (PAD, 3000, None),
        (BOS, CPAD, None),
        (A, CBOS, 100),  # the prefill of the streaming layout ...
        (B, F, 200),  # ... then one text token per frame, as the trailing text at inference
        (EOS, F, 300),
        (PAD, F, 400),
        (PAD, F, CEOS),
        (PAD, CEOS, None),
    ])
    with pytest.raises(ValueError, match="too short"):
        build_sequence([A, B, 13, 14, 15], target_codes=frames(1, 2), streaming=True)


def test_sampled_codes_that_ended_before_their_text_was_read():
    """A rollout's codes (streaming): each frame carries the text generation gave it, the rest is never read."""
    seq = build_sequence([A, B, 13, 14, 15], language=None, target_codes=frames(100, 200), streaming=True,
                         allow_unread_text=True)
    check(seq, ROLE + AUTO + [
        (BOS, CPAD, None),
        (A, CBOS, 100),
        (B, F, 200),  # frame 0 with trailing text 0
        (13, F, CEOS),  # frame 1 with trailing text 1, then EOS
        (14, CEOS, None),
    ], trailing=[15, EOS])
    prefill = build_sequence([A, B, 13, 14, 15], language=None, streaming=True)
    assert prefill.trailing_text_ids.tolist()[:2] == [B, 13]  # what generation fed frames 0 and 1


def test_build_from_strings_uses_the_templates():
    from qtts.text.templates import instruct_ids, ref_text_ids, target_ids
    from qtts.text.tokenizer import load_text_tokenizer

    tok = load_text_tokenizer()
    seq = build_from_strings(tok, "Hello there.", instruct="Speak slowly.", ref_text="Hi.", language=EN,
                             xvector=True, ref_codes=frames(5))
    expected = build_sequence(target_ids(tok, "Hello there.").content, language=EN, xvector=True,
                              instruct_ids=list(instruct_ids(tok, "Speak slowly.").ids),
                              ref_text_ids=ref_text_ids(tok, "Hi.").content, ref_codes=frames(5))
    assert seq.table() == expected.table()


@pytest.mark.parametrize("kw", [
    dict(),
    dict(language=EN, xvector=True),
    dict(speaker=3000, streaming=True),
    dict(instruct_ids=[1, 2, 3], target_codes=frames(1, 2, 3, 4, 5, 6)),
    dict(ref_text_ids=[5, 6], ref_codes=frames(1, 2, 3), xvector=True),
    dict(ref_text_ids=[5], ref_codes=frames(1, 2, 3), streaming=True, target_codes=frames(4, 5)),
])
def test_sequence_length_matches(kw):
    seq = build_sequence([A, B], **kw)
    n = sequence_length(
        2, n_target_frames=len(kw.get("target_codes", ())), explicit_language="language" in kw,
        speaker_slot=bool(kw.get("xvector") or kw.get("speaker")), n_instruct=len(kw.get("instruct_ids", ())),
        n_ref_text=len(kw.get("ref_text_ids", ())), n_ref_frames=len(kw.get("ref_codes", ())),
        streaming=kw.get("streaming", False),
    )
    assert n == len(seq)


def test_custom_special_ids():
    from qtts.text.special_ids import CodecSpecialIds, TextSpecialIds

    text = TextSpecialIds(im_start=1, assistant=2, newline=3, tts_pad=4, tts_bos=5, tts_eos=6)
    codec = CodecSpecialIds(pad=7, bos=8, eos=9, think=10, nothink=11, think_bos=12, think_eos=13)
    seq = build_sequence([A], target_codes=frames(100), text_special=text, codec_special=codec)
    assert seq.table() == [(1, None, None), (2, None, None), (3, None, None), (4, 11, None), (4, 12, None),
                           (4, 13, None), (5, 7, None), (A, 7, None), (6, 7, None), (4, 8, 100), (4, F, 9),
                           (4, 9, None)]


def test_input_errors():
    with pytest.raises(ValueError, match="empty"):
        build_sequence([])
    with pytest.raises(ValueError, match="one speaker slot"):
        build_sequence([A], speaker=3000, xvector=True)
    with pytest.raises(ValueError, match="both"):
        build_sequence([A], ref_text_ids=[1])
    with pytest.raises(ValueError, match="code groups"):
        build_sequence([A], ref_text_ids=[1], ref_codes=frames(1), target_codes=frames(1, groups=8))
    with pytest.raises(TypeError, match="codec row"):
        build_sequence([A], language="english")
    with pytest.raises(ValueError, match="language 'klingon' is not one of this model's"):
        TalkerConfig().language_row("klingon")
    with pytest.raises(ValueError, match="language 'ja' is not one of this model's"):
        TalkerConfig(codec_language_id={"english": EN}).language_row("ja")


# ------------------------------------------------------------------------------------------- #
# batching


def test_collate_training_right_pads():
    s1 = build_sequence([A], target_codes=frames(1, 2))
    s2 = build_sequence([A, B, 13], target_codes=frames(1, 2, 3))
    batch = collate_training([s1, s2], pad_to_multiple_of=8)
    n1, n2 = len(s1), len(s2)
    assert n2 == 16 and batch.text_ids.shape == (2, 16) and batch.frame_codes.shape == (2, 16, 16)
    assert batch.code_labels.shape == (2, 16, 15)
    assert batch.attention_mask[0].tolist() == [True] * n1 + [False] * (16 - n1)
    assert batch.position_ids[1, :n2].tolist() == list(range(n2))
    assert batch.document_ids[0].tolist() == [0] * n1 + [-1] * (16 - n1)
    assert torch.equal(batch.labels[0, :n1], s1.labels)
    assert (batch.labels[0, n1:] == IGNORE_INDEX).all() and (batch.code_labels[0, n1:] == IGNORE_INDEX).all()
    for m in (batch.text_mask, batch.codec_mask, batch.frame_mask, batch.xvector_mask):
        assert not m[0, n1:].any()


def test_packing_restarts_positions():
    s1 = build_sequence([A], target_codes=frames(1, 2), xvector=True)
    s2 = build_sequence([A, B], target_codes=frames(3), xvector=True)
    s3 = build_sequence([B], target_codes=frames(4, 5, 6), xvector=True)
    batch = pack_sequences([[s1, s2], [s3]])
    n1, n2, n3 = len(s1), len(s2), len(s3)
    assert batch.text_ids.shape[1] == n1 + n2
    assert batch.position_ids[0].tolist() == list(range(n1)) + list(range(n2))
    assert batch.document_ids[0].tolist() == [0] * n1 + [1] * n2
    assert batch.document_ids[1].tolist() == [0] * n3 + [-1] * (n1 + n2 - n3)
    assert torch.equal(batch.labels[0], torch.cat([s1.labels, s2.labels]))
    # x-vector slots in row-major order = the order of the sequences
    assert batch.xvector_mask.nonzero().tolist() == [[0, 6], [0, n1 + 6], [1, 6]]
    causal = torch.ones(n1 + n2, n1 + n2, dtype=torch.bool).tril()
    mask = attention_mask(document_ids=batch.document_ids)[:, 0] & causal  # what the talker's attention uses
    assert mask[0, n1, n1 - 1].item() is False  # no attention across utterances
    assert mask[0, n1 + 1, n1].item() is True and mask[0, n1, n1 + 1].item() is False
    assert not mask[1, :n3, n3:].any()  # real positions never see padding
    with pytest.raises(ValueError, match="max_length"):
        pack_sequences([[s1, s2]], max_length=n1 + n2 - 1)


def test_plan_packs():
    packs = plan_packs([5, 3, 8, 2, 6], max_length=10)
    assert sorted(i for p in packs for i in p) == [0, 1, 2, 3, 4]
    assert all(sum([5, 3, 8, 2, 6][i] for i in p) <= 10 for p in packs)
    assert len(packs) == 3
    with pytest.raises(ValueError):
        plan_packs([11], 10)


def test_collate_prefill_left_pads():
    s1 = build_sequence([A], streaming=True)
    s2 = build_sequence([A, B, 13], streaming=True, speaker=3000)
    batch = collate_prefill([s1, s2])
    n1, n2 = len(s1), len(s2)
    assert batch.text_ids.shape == (2, n2)
    assert batch.attention_mask[0].tolist() == [False] * (n2 - n1) + [True] * n1
    assert batch.position_ids[0].tolist() == [0] * (n2 - n1) + list(range(n1))
    assert torch.equal(batch.text_ids[0, n2 - n1:], s1.text_ids)
    assert batch.trailing_text_ids.tolist() == [[EOS, PAD, PAD], [B, 13, EOS]]
    assert batch.trailing_lengths.tolist() == [1, 3]


# ------------------------------------------------------------------------------------------- #
# parity with qwen-tts's generate


@pytest.fixture(scope="module")
def official():
    modeling = pytest.importorskip("qwen_tts.core.models.modeling_qwen3_tts")
    configuration = pytest.importorskip("qwen_tts.core.models.configuration_qwen3_tts")
    talker = dict(
        vocab_size=3072, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, text_hidden_size=24, text_vocab_size=151936, num_code_groups=16,
        rope_scaling={"interleaved": True, "mrope_section": [2, 3, 3], "rope_type": "default", "type": "default"},
        codec_eos_token_id=CEOS, codec_think_id=THINK, codec_nothink_id=NOTHINK, codec_think_bos_id=TBOS,
        codec_think_eos_id=TEOS, codec_pad_id=CPAD, codec_bos_id=CBOS,
        codec_language_id={"english": EN, "chinese": ZH, "sichuan_dialect": SICHUAN},
        spk_id={"serena": 3066, "eric": 2875}, spk_is_dialect={"serena": False, "eric": "sichuan_dialect"},
        code_predictor_config=dict(vocab_size=2048, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, head_dim=16, num_code_groups=16),
    )
    config = configuration.Qwen3TTSConfig(talker_config=talker, tts_model_type="custom_voice", tts_model_size="0b6")
    torch.manual_seed(0)
    model = modeling.Qwen3TTSForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.talker.parameters():  # O(1) activations, so 1e-5 is a tight bound
            p.normal_(std=p.shape[-1] ** -0.5 if p.dim() > 1 else 0.1)
    return model


class _Stop(Exception):
    pass


def capture(model, **kwargs):
    """Run qwen-tts's generate up to the talker call; return (inputs_embeds, attention_mask, trailing)."""
    got = {}

    def fake_generate(**kw):
        got.update(kw)
        raise _Stop

    model.talker.generate = fake_generate
    try:
        with pytest.raises(_Stop):
            model.generate(**kwargs)
    finally:
        del model.talker.generate
    return got["inputs_embeds"], got["attention_mask"], got["trailing_text_hidden"]


def ours_embeds(model, seqs, xvectors=None):
    talker = model.talker
    batch = collate_prefill(seqs)
    with torch.no_grad():
        emb = embed_dual_track(
            batch,
            text_embed=lambda ids: talker.text_projection(talker.model.text_embedding(ids)),
            codec_embed=talker.model.codec_embedding,
            residual_embeds=list(talker.code_predictor.model.codec_embedding),
            xvectors=xvectors,
        )
        trailing = talker.text_projection(talker.model.text_embedding(batch.trailing_text_ids))
    return emb, batch, trailing


def full_ids(content, stop=-5):
    """Official input ids of the target template around fake content ids."""
    return torch.tensor([[IMS, AST, NL, *content, 151645, NL, IMS, AST, NL]]) if stop == -5 else \
        torch.tensor([[IMS, AST, NL, *content, 151645, NL]])


CASES = {
    "custom_voice_non_streaming": dict(
        inputs=[dict(text=[A, B, 13], language="english", speaker="serena")], non_streaming=True),
    "dialect_and_instruct_batch": dict(
        inputs=[dict(text=[A], language="auto", speaker="eric", instruct=[IMS, 872, NL, 31, 151645, NL]),
                dict(text=[A, B, 13, 14], language="chinese", speaker="serena")], non_streaming=True),
    "streaming_batch": dict(
        inputs=[dict(text=[A, B, 13], language="auto", speaker="serena"),
                dict(text=[A], language="english", speaker="serena")], non_streaming=False),
    "voice_design": dict(
        inputs=[dict(text=[A, B], language="auto", speaker=None, instruct=[IMS, 872, NL, 31, 32, 151645, NL])],
        non_streaming=True),
    "xvector_only": dict(inputs=[dict(text=[A, B], language="english", xvec=True),
                                 dict(text=[B], language="auto", xvec=True)], non_streaming=False),
    "icl_non_streaming": dict(inputs=[dict(text=[A, B], language="english", xvec=True, ref_text=[21, 22], ref=3)],
                              non_streaming=True),
    "icl_streaming": dict(inputs=[dict(text=[A, B, 13, 14], language="auto", xvec=True, ref_text=[21], ref=2),
                                  dict(text=[A], language="english", xvec=True, ref_text=[21, 22], ref=5)],
                          non_streaming=False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_prefill_embeddings_match_qwen_tts(official, case):
    spec = CASES[case]
    gen = torch.Generator().manual_seed(1)
    items = spec["inputs"]
    H = official.config.talker_config.hidden_size
    xvecs = [torch.randn(H, generator=gen) if it.get("xvec") else None for it in items]
    refs = [torch.randint(0, 2048, (it["ref"], 16), generator=gen) if it.get("ref") else None for it in items]
    kwargs = dict(
        input_ids=[full_ids(it["text"]) for it in items],
        instruct_ids=[torch.tensor([it["instruct"]]) if it.get("instruct") else None for it in items],
        languages=[it["language"] for it in items],
        non_streaming_mode=spec["non_streaming"],
    )
    if any(it.get("xvec") for it in items):
        kwargs["voice_clone_prompt"] = dict(
            ref_spk_embedding=xvecs, ref_code=refs if any(r is not None for r in refs) else None,
            x_vector_only_mode=[it.get("ref") is None for it in items],
            icl_mode=[it.get("ref") is not None for it in items],
        )
        kwargs["ref_ids"] = [full_ids(it["ref_text"], stop=-2) if it.get("ref_text") else None for it in items]
    else:
        kwargs["speakers"] = [it.get("speaker") for it in items]
    expected, mask, trailing = capture(official, **kwargs)

    cfg = official.config.talker_config
    seqs = []
    for it, ref in zip(items, refs):
        spk = it.get("speaker")
        seqs.append(build_sequence(
            it["text"], language=language_row(cfg.codec_language_id, it["language"],
                                              cfg.spk_is_dialect[spk] if spk else None),
            speaker=cfg.spk_id[spk] if spk else None, xvector=bool(it.get("xvec")),
            instruct_ids=it.get("instruct"), ref_text_ids=it.get("ref_text"), ref_codes=ref,
            streaming=not spec["non_streaming"],
        ))
    slots = torch.stack([x for x in xvecs if x is not None]) if any(x is not None for x in xvecs) else None
    got, batch, got_trailing = ours_embeds(official, seqs, slots)
    assert got.shape == expected.shape
    assert got.abs().max() > 0.1  # not a vacuous comparison
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert torch.equal(batch.attention_mask.long(), mask)
    # trailing text: upstream pads with tts_pad and uses tts_pad beyond its end; compare over a common length
    k = max(got_trailing.shape[1], trailing.shape[1]) + 2
    pad = official.talker.text_projection(official.talker.model.text_embedding(torch.tensor([PAD]))).detach()

    def extend(t):
        return torch.cat([t.detach(), pad.expand(t.shape[0], k - t.shape[1], -1)], dim=1)

    torch.testing.assert_close(extend(got_trailing), extend(trailing), atol=1e-5, rtol=0)


def test_training_embeddings_follow_the_prefill(official):
    """A training example's embeddings start with the prefill's, and frame rows sum all 16 groups."""
    talker = official.talker
    tgt = frames(100, 200)
    seq = build_sequence([A, B], language=EN, speaker=3066, target_codes=tgt)
    pre = build_sequence([A, B], language=EN, speaker=3066)
    kw = dict(text_embed=lambda ids: talker.text_projection(talker.model.text_embedding(ids)),
              codec_embed=talker.model.codec_embedding,
              residual_embeds=list(talker.code_predictor.model.codec_embedding))
    with torch.no_grad():
        e_seq = embed_dual_track(collate_training([seq]), **kw)[0]
        e_pre = embed_dual_track(collate_training([pre]), **kw)[0]
        torch.testing.assert_close(e_seq[: len(pre)], e_pre)
        t = len(pre)  # first frame row
        frame = talker.model.codec_embedding(tgt[0, :1]) + sum(
            talker.code_predictor.model.codec_embedding[g - 1](tgt[0, g : g + 1]) for g in range(1, 16))
        text = talker.text_projection(talker.model.text_embedding(torch.tensor([PAD])))
        torch.testing.assert_close(e_seq[t], (frame + text)[0], atol=1e-5, rtol=0)


def test_xvectors_fill_their_slots_in_order(official):
    """Packed rows: x-vector j lands on the j-th slot (row-major) and receives gradients."""
    talker = official.talker
    s1, s2, s3 = (build_sequence([A], xvector=True, target_codes=frames(1)) for _ in range(3))
    batch = pack_sequences([[s1, s2], [s3]])
    xv = torch.randn(3, official.config.talker_config.hidden_size, requires_grad=True)
    kw = dict(text_embed=lambda ids: talker.text_projection(talker.model.text_embedding(ids)),
              codec_embed=talker.model.codec_embedding,
              residual_embeds=list(talker.code_predictor.model.codec_embedding))
    emb = embed_dual_track(batch, xvectors=xv, **kw)
    pad = talker.text_projection(talker.model.text_embedding(torch.tensor(PAD)))
    for j, (b, t) in enumerate(batch.xvector_mask.nonzero().tolist()):
        torch.testing.assert_close(emb[b, t], pad + xv[j], atol=1e-5, rtol=0)
    emb.sum().backward()
    assert torch.equal(xv.grad, torch.ones_like(xv))
    with pytest.raises(ValueError, match="3 x-vector slots but 2"):
        embed_dual_track(batch, xvectors=xv[:2], **kw)
