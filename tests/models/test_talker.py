import copy
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from qtts.models.layers import document_positions
from qtts.models.random_weights import randomize_tts
from qtts.models.talker import TTSConfig, TTSModel, released_0_6b, released_1_7b, tiny
from qtts.models.talker.speaker_encoder import SpeakerEncoderConfig

modeling = pytest.importorskip("qwen_tts.core.models.modeling_qwen3_tts")
configuration = pytest.importorskip("qwen_tts.core.models.configuration_qwen3_tts")

CASES = {  # talker width 64 throughout
    "base_equal_width": dict(tts_model_type="base", predictor_hidden=64),  # no small_to_mtp_projection
    "base_projected": dict(tts_model_type="base", predictor_hidden=32),  # small_to_mtp_projection 64 → 32
    "custom_voice": dict(tts_model_type="custom_voice", predictor_hidden=32),  # no speaker encoder, spk_id
}
TOL = 1e-4


def official(config: TTSConfig):
    return modeling.Qwen3TTSForConditionalGeneration(configuration.Qwen3TTSConfig(**config.to_dict())).eval()


@pytest.fixture(params=list(CASES), scope="module")
def pair(request, tmp_path_factory):
    """(qwen-tts model, ours loaded strictly from the folder qwen-tts saved, that folder)."""
    ref = official(tiny(**CASES[request.param]))
    randomize_tts(ref)
    folder = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(folder)
    return ref, TTSModel.from_pretrained(folder), folder


def embeds(batch: int, length: int, width: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, length, width, generator=torch.Generator().manual_seed(seed))


def test_talker_matches_qwen_tts(pair):
    ref, ours, _ = pair
    x = embeds(3, 11)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, :4] = 0  # left padding, as qwen-tts batches prompts
    mask[2, :10] = 0  # a single real position
    with torch.no_grad():
        for m in (None, mask):
            expected = ref.talker(inputs_embeds=x, attention_mask=m, use_cache=False, output_hidden_states=True)
            got = ours.talker(x, attention_mask=m)
            valid = torch.ones(3, 11, dtype=torch.bool) if m is None else m.bool()
            assert torch.isfinite(got.hidden).all() and torch.isfinite(got.logits).all()  # padded rows too
            assert got.logits.shape == (3, 11, 3072)
            assert (got.hidden - expected.hidden_states[0][-1])[valid].abs().max() <= TOL
            assert (got.logits - expected.logits)[valid].abs().max() <= TOL


def test_incremental_decoding_matches_qwen_tts(pair):
    """Prefill a left-padded batch, then one position at a time with a KV cache, as qwen-tts generates."""
    ref, ours, _ = pair
    x = embeds(2, 9, seed=2)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[0, :3] = 0
    with torch.no_grad():
        expected = ref.talker(inputs_embeds=x[:, :6], attention_mask=mask[:, :6], use_cache=True)
        past, cache = expected.past_key_values, ours.talker.new_cache()
        got = ours.talker(x[:, :6], attention_mask=mask[:, :6], cache=cache)
        assert (got.logits - expected.logits)[mask[:, :6].bool()].abs().max() <= TOL
        for t in range(6, 9):
            step = ref.talker.model(inputs_embeds=x[:, t:t + 1], attention_mask=mask[:, :t + 1], past_key_values=past,
                                    position_ids=(mask[:, :t + 1].cumsum(-1) - 1)[:, -1:], use_cache=True)
            got = ours.talker(x[:, t:t + 1], attention_mask=mask[:, :t + 1], cache=cache)
            assert (got.hidden - step.last_hidden_state).abs().max() <= TOL
        full = ours.talker(x, attention_mask=mask)
        assert (full.hidden[:, -1:] - got.hidden).abs().max() <= TOL


def reference_predictor_logits(ref, hidden: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Groups 1..15 as qwen-tts's generate computes them: prefill ``[h, E0(c0)]`` (head 0 on the last position),
    then one code per step through the KV cache (step g embeds c_g with table g-1 and applies head g)."""
    predictor = ref.talker.code_predictor
    first = torch.cat([hidden[:, None], ref.talker.get_input_embeddings()(codes[:, :1])], dim=1)
    out = predictor(inputs_embeds=first, use_cache=True)
    logits, past = [out.logits[:, -1]], out.past_key_values
    for g in range(1, codes.shape[1] - 1):
        out = predictor(input_ids=codes[:, g:g + 1], past_key_values=past, generation_steps=g, use_cache=True)
        logits.append(out.logits[:, -1])
        past = out.past_key_values
    return torch.stack(logits, dim=1)


def test_code_predictor_matches_qwen_tts(pair):
    ref, ours, _ = pair
    gen = torch.Generator().manual_seed(3)
    hidden, codes = torch.randn(7, 64, generator=gen), torch.randint(0, 2048, (7, 16), generator=gen)
    with torch.no_grad():
        got = ours.talker.predictor_logits(hidden, codes)  # all 7 frames and 15 groups in one pass
        assert got.shape == (7, 15, 2048)
        assert torch.equal(ours.talker.predictor_logits(hidden.view(7, 1, 64), codes.view(7, 1, 16))[:, 0], got)
        assert (got - reference_predictor_logits(ref, hidden, codes)).abs().max() <= TOL
        finetune, _ = ref.talker.forward_sub_talker_finetune(codes, hidden)  # the official training path
        assert (got - finetune).abs().max() <= TOL
        # head k-1 at position k reads c_0..c_{k-1} only: changing c_k leaves groups ≤ k unchanged
        changed = codes.clone()
        changed[:, 5] = (changed[:, 5] + 1) % 2048
        other = ours.talker.predictor_logits(hidden, changed)
        assert torch.equal(other[:, :5], got[:, :5]) and not torch.allclose(other[:, 5:], got[:, 5:])


def test_greedy_codes_match_qwen_tts(pair):
    ref, ours, _ = pair
    gen = torch.Generator().manual_seed(4)
    hidden, first = torch.randn(3, 64, generator=gen), torch.randint(0, 2048, (3,), generator=gen)
    with torch.no_grad():
        codes = ours.talker.predict_codes(hidden, first)
        inputs = torch.cat([hidden[:, None], ref.talker.get_input_embeddings()(first[:, None])], dim=1)
        expected = ref.talker.code_predictor.generate(inputs_embeds=inputs, max_new_tokens=15, do_sample=False)
        assert torch.equal(codes[:, 1:], expected[:, -15:]) and torch.equal(codes[:, 0], first)
        assert torch.equal(ours.talker.predictor_logits(hidden, codes).argmax(-1), codes[:, 1:])


def test_embeddings_match_qwen_tts(pair):
    ref, ours, _ = pair
    gen = torch.Generator().manual_seed(5)
    text = torch.tensor([[151644, 77091, 198, 9707, 151671, 151672, 151673]])
    codes = torch.randint(0, 2048, (2, 5, 16), generator=gen)
    with torch.no_grad():
        expected_text = ref.talker.text_projection(ref.talker.get_text_embeddings()(text))
        assert (ours.talker.embed_text(text) - expected_text).abs().max() <= TOL
        tables = ref.talker.code_predictor.get_input_embeddings()
        expected = ref.talker.get_input_embeddings()(codes[..., 0])
        expected = expected + sum(tables[g - 1](codes[..., g]) for g in range(1, 16))
        assert (ours.talker.embed_frame(codes) - expected).abs().max() <= TOL
        bos = ref.talker.get_input_embeddings().weight[2149:2150]
        assert torch.equal(ours.talker.embed_codec(torch.tensor([2149])), bos)


def test_speaker_encoder_and_model_type(pair):
    ref, ours, _ = pair
    if ours.config.tts_model_type != "base":
        assert ours.speaker_encoder is None and ref.speaker_encoder is None
        assert ours.config.talker_config.spk_id["ryan"] == 3061
        assert not any(k.startswith("speaker_encoder.") for k in ours.state_dict())
        return
    mels = torch.randn(2, 80, 128, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert (ours.speaker_encoder(mels) - ref.speaker_encoder(mels)).abs().max() <= TOL


def test_config_round_trips_the_file_qwen_tts_wrote(pair, tmp_path):
    _, ours, folder = pair
    written = json.loads((folder / "config.json").read_text())
    assert TTSConfig.from_dict(written).to_dict() == written  # HF's extra keys (architectures, dtype, …) kept
    ours.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == written


def test_config_keeps_unknown_keys_and_reads_omitted_keys_as_qwen_tts():
    released = released_1_7b("custom_voice").to_dict()
    released["assistant_token_id"] = 77091
    released["architectures"] = ["Qwen3TTSForConditionalGeneration"]
    released["talker_config"]["position_id_per_seconds"] = 13
    released["talker_config"]["spk_id"]["serena"] = [3066]  # some exports write lists
    released["talker_config"]["code_predictor_config"]["layer_types"] = ["full_attention"] * 5
    released["speaker_encoder_config"] = {"enc_dim": 2048, "sample_rate": 24000, "future_key": 1}
    config = TTSConfig.from_dict(released)
    assert config.to_dict() == released
    assert config.speaker_encoder_config.enc_channels == SpeakerEncoderConfig().enc_channels
    config.talker_config.code_predictor_config.num_hidden_layers = 6  # edits are written
    assert config.to_dict()["talker_config"]["code_predictor_config"]["num_hidden_layers"] == 6
    # keys a file omits mean what they mean to qwen-tts
    sparse_dict = {"talker_config": {"text_vocab_size": 151936, "vocab_size": 4224}}  # qwen-tts's ids go to 4205
    sparse = TTSConfig.from_dict(sparse_dict)
    reference = configuration.Qwen3TTSConfig(**sparse_dict)
    assert sparse.talker_config.num_hidden_layers == reference.talker_config.num_hidden_layers == 20
    assert sparse.talker_config.codec_bos_id == reference.talker_config.codec_bos_id == 4197
    assert sparse.talker_config.num_code_groups == reference.talker_config.num_code_groups == 32
    assert sparse.talker_config.head_dim == 1024 // 16
    assert sparse.tts_model_type is None and not sparse.has_speaker_encoder
    assert sparse.to_dict() == sparse_dict
    with pytest.raises(ValueError, match="talker_config.codec_bos_id"):
        TTSConfig.from_dict({**released, "talker_config": {**released["talker_config"], "codec_bos_id": 5000}})
    with pytest.raises(ValueError, match="enc_dim"):
        TTSConfig.from_dict({**released, "tts_model_type": "base", "speaker_encoder_config": {"enc_dim": 1024}})


def test_qwen_tts_loads_a_folder_we_wrote(tmp_path):
    ours = TTSModel(tiny("custom_voice", predictor_hidden=32)).eval()
    randomize_tts(ours, seed=7)
    ours.save_pretrained(tmp_path)
    ref = modeling.Qwen3TTSForConditionalGeneration(configuration.Qwen3TTSConfig.from_pretrained(tmp_path)).eval()
    ref.load_state_dict(load_file(str(tmp_path / "model.safetensors")), strict=True)
    x = embeds(2, 6)
    gen = torch.Generator().manual_seed(8)
    hidden, codes = torch.randn(4, 64, generator=gen), torch.randint(0, 2048, (4, 16), generator=gen)
    with torch.no_grad():
        assert (ours.talker(x).logits - ref.talker(inputs_embeds=x, use_cache=False).logits).abs().max() <= TOL
        expected, _ = ref.talker.forward_sub_talker_finetune(codes, hidden)
        assert (ours.talker.predictor_logits(hidden, codes) - expected).abs().max() <= TOL
    assert ref.get_supported_speakers() == ours.config.talker_config.spk_id.keys()


def test_strict_loading_names_file_and_keys(pair, tmp_path):
    _, ours, folder = pair
    weights = load_file(str(folder / "model.safetensors"))
    weights.pop("talker.codec_head.weight")
    weights["talker.extra.weight"] = torch.zeros(1)
    weights["talker.model.norm.weight"] = torch.ones(3)
    save_file(weights, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(ValueError) as error:
        TTSModel.from_pretrained(tmp_path)
    message = str(error.value)
    assert str(tmp_path / "model.safetensors") in message
    assert "missing talker.codec_head.weight" in message and "unexpected talker.extra.weight" in message
    assert "talker.model.norm.weight: shape (3,)" in message


def test_sharded_folder_loads(pair, tmp_path):
    _, ours, folder = pair
    weights = load_file(str(folder / "model.safetensors"))
    names = sorted(weights)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: weights[k] for k in keys}, str(tmp_path / shard))
    index = {"metadata": {}, "weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    loaded = TTSModel.from_pretrained(tmp_path)
    for k, v in ours.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


@pytest.mark.parametrize("preset, model_type", [(released_0_6b, "base"), (released_1_7b, "base"),
                                                (released_0_6b, "custom_voice"), (released_1_7b, "voice_design")])
def test_released_presets_have_the_released_keys(preset, model_type):
    config = preset(model_type)
    with torch.device("meta"):
        ref = official(config)
    expected = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in TTSModel.empty(config).state_dict().items()}
    assert got == expected
    width = config.talker_config.hidden_size
    assert got["talker.model.text_embedding.weight"] == (151936, 2048)
    assert got["talker.model.codec_embedding.weight"] == (3072, width)
    assert got["talker.code_predictor.model.codec_embedding.14.weight"] == (2048, width)
    assert got["talker.code_predictor.lm_head.14.weight"] == (2048, 1024)
    assert ("talker.code_predictor.small_to_mtp_projection.weight" in got) == (width == 2048)
    assert any(k.startswith("speaker_encoder.") for k in got) == (model_type == "base")
    assert len([k for k in got if k.startswith("talker.model.layers.") and k.endswith("q_norm.weight")]) == 28


def small_model(seed: int = 9) -> TTSModel:
    model = TTSModel(tiny("voice_design", predictor_hidden=32))
    randomize_tts(model, seed)
    return model


def test_document_positions_restart():
    documents = torch.tensor([[0, 0, 1, 1, 1, 2], [5, 5, 5, 5, 5, 5]])
    assert document_positions(documents).tolist() == [[0, 1, 0, 1, 2, 0], [0, 1, 2, 3, 4, 5]]


def test_packed_rows_equal_separate_documents():
    model = small_model().eval()
    a, b = embeds(1, 5, seed=10), embeds(1, 7, seed=11)
    packed = torch.cat([a, b, torch.zeros(1, 2, 64)], dim=1)  # two utterances, then 2 padding positions
    documents = torch.tensor([[0] * 5 + [1] * 7 + [2] * 2])
    padding = torch.tensor([[1] * 12 + [0] * 2])
    with torch.no_grad():
        out = model.talker(packed, attention_mask=padding, document_ids=documents)  # positions restart per document
        assert torch.isfinite(out.hidden).all()
        assert (out.hidden[:, :5] - model.talker(a).hidden).abs().max() <= 1e-5
        assert (out.hidden[:, 5:12] - model.talker(b).hidden).abs().max() <= 1e-5


def test_gradient_checkpointing_gives_the_same_gradients():
    model = small_model().train()
    x = embeds(2, 6, seed=12)
    gen = torch.Generator().manual_seed(13)
    hidden_codes = torch.randint(0, 2048, (5, 16), generator=gen)

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        model.zero_grad()
        model.talker.gradient_checkpointing = checkpointing
        out = model.talker(x, document_ids=torch.tensor([[0, 0, 0, 1, 1, 1], [0] * 6]))
        logits = model.talker.predictor_logits(out.hidden[0, :5], hidden_codes)
        (out.logits.logsumexp(-1).mean() + logits.logsumexp(-1).mean()).backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    plain, recomputed = grads(False), grads(True)
    assert plain.keys() == recomputed.keys() and "talker.code_predictor.model.layers.0.mlp.up_proj.weight" in plain
    for k in plain:
        torch.testing.assert_close(recomputed[k], plain[k], rtol=1e-5, atol=1e-6, msg=k)


def test_compiles_without_graph_breaks():
    model = small_model().eval()
    x = embeds(2, 6, seed=14)
    documents = torch.tensor([[0, 0, 0, 1, 1, 1], [0] * 6])
    block = model.talker.model.layers[0]
    positions = torch.arange(6).expand(2, 6)
    cos, sin = model.talker.model.rotary(positions)
    mask = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    torch._dynamo.reset()
    compiled_block = torch.compile(block, fullgraph=True, backend="eager")
    compiled_talker = torch.compile(model.talker, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled_block(x, cos, sin, None, mask), block(x, cos, sin, None, mask))
        torch.testing.assert_close(compiled_talker(x, document_ids=documents).logits,
                                   model.talker(x, document_ids=documents).logits)


def test_bfloat16():
    model = small_model()
    x = embeds(2, 6, seed=15)
    gen = torch.Generator().manual_seed(16)
    codes = torch.randint(0, 2048, (3, 16), generator=gen)
    low = copy.deepcopy(model).to(torch.bfloat16)
    assert low.talker.model.rotary.inv_freq.dtype == torch.float32  # rounded frequencies would shift far positions
    with torch.no_grad():
        full, half = model.talker(x), low.talker(x.bfloat16())
        assert half.logits.dtype == torch.bfloat16
        assert (half.hidden.float() - full.hidden).abs().max() < 0.25
        assert low.talker.predictor_logits(half.hidden[0, :3], codes).dtype == torch.bfloat16
