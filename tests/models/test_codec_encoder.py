import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from qtts.models.codec import CodecEncoder, CodecEncoderConfig

modeling = pytest.importorskip("qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2")
configuration = pytest.importorskip("qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2")
MimiConfig = pytest.importorskip("transformers").MimiConfig

# Every part of the released layout, narrow: two SEANet strides (4 then 2) with two dilated residual units
# each, GQA (8/8 released), RVQ projections (vq dim ≠ hidden), 8 levels of which 4 are kept, and a
# sliding window shorter than the inputs (ignored by qwen-tts, see test_sliding_window_is_ignored…).
TINY = dict(
    num_filters=4, upsampling_ratios=[2, 4], num_residual_layers=2, hidden_size=32, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=8, intermediate_size=64, codebook_size=64,
    codebook_dim=16, vector_quantization_hidden_dimension=16, num_quantizers=8, sliding_window=5,
    upsample_groups=32, frame_rate=1500.0,
)
HOP = 16  # 4 · 2 · the stride-2 downsample
KEEP = 4  # encoder_valid_num_quantizers of the tiny tokenizer
TINY_DECODER = dict(
    latent_dim=32, codebook_dim=16, codebook_size=64, decoder_dim=48, hidden_size=32, intermediate_size=64,
    head_dim=16, num_attention_heads=2, num_key_value_heads=2, num_hidden_layers=1, sliding_window=5,
    num_quantizers=KEEP, upsample_rates=[2, 2], upsampling_ratios=[2, 2],
)


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """O(1) activations everywhere so every path moves the codes: weights of unit gain, LayerScale and
    norms ~1, codewords ~N(0, 4) (the latents' scale) from positive cluster usage (a few rows below the 1e-5 clamp)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".scale") or "norm.weight" in name:
                value = 0.5 + torch.rand(p.shape, generator=gen)
            elif name.endswith("bias"):
                value = torch.randn(p.shape, generator=gen) * 0.1
            else:
                value = torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel())
            p.copy_(value)
        for name, buffer in model.named_buffers():
            if name.endswith("cluster_usage"):
                buffer.copy_(torch.rand(buffer.shape, generator=gen) * 2 + 0.1)
                buffer[:2] = 1e-7
            elif name.endswith("embed_sum"):
                usage = model.get_buffer(name.replace("embed_sum", "cluster_usage")).clamp(min=1e-5)
                buffer.copy_(torch.randn(buffer.shape, generator=gen) * 2 * usage[:, None])
            elif name.endswith("initialized"):
                buffer.fill_(1.0)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(qwen-tts tokenizer, ours loaded with strict=True from the ``encoder.*`` part of its safetensors)."""
    config = configuration.Qwen3TTSTokenizerV2Config(
        encoder_config=TINY, decoder_config=TINY_DECODER, encoder_valid_num_quantizers=KEEP,
        encode_downsample_rate=HOP, decode_upsample_rate=16,
    )
    ref = modeling.Qwen3TTSTokenizerV2Model(config).eval()
    randomize(ref.encoder)
    path = tmp_path_factory.mktemp("codec") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    weights = {k.removeprefix("encoder."): v for k, v in load_file(str(path)).items() if k.startswith("encoder.")}
    ours = CodecEncoder(CodecEncoderConfig(**TINY)).eval()
    ours.load_state_dict(weights, strict=True)
    return ref, ours


def reference_latent(mimi, wav: torch.Tensor) -> torch.Tensor:
    """What qwen-tts's Mimi encoder quantizes (the steps of ``MimiModel._encode_frame``)."""
    x = mimi.encoder(wav)
    x = mimi.encoder_transformer(x.transpose(1, 2)).last_hidden_state.transpose(1, 2)
    return mimi.downsample(x)


def waveforms(lengths, seed=1) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded batch (B, S) of noisy sines and its padding mask."""
    gen = torch.Generator().manual_seed(seed)
    wav = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        t = torch.arange(n) / n
        wav[i, :n] = 0.5 * torch.sin(2 * math.pi * (3 + 5 * i) * t) + 0.3 * torch.randn(n, generator=gen)
    mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
    return wav, mask.long()


@pytest.mark.parametrize("lengths", [[HOP * 40], [HOP * 37 + 5], [1], [HOP * 23 + 9, HOP * 50, HOP * 7 + 1]])
def test_codes_equal_qwen_tts(pair, lengths):
    ref, ours = pair
    wav, mask = waveforms(lengths)
    with torch.no_grad():
        expected = ref.encode(wav, padding_mask=mask).audio_codes
        codes = ours.encode(wav[:, None], num_quantizers=KEEP)
    assert codes.shape == (len(lengths), KEEP, math.ceil(max(lengths) / HOP)) and codes.dtype == torch.long
    for i, n in enumerate(lengths):
        item = codes[i, :, : ours.num_frames(n)]
        assert torch.equal(item.T, expected[i]), f"item {i} of {lengths}"
    if max(lengths) > HOP * 20:  # the codes really depend on the input: many codewords in use at every level
        assert all(len(codes[:, level].unique()) > 2 for level in range(KEEP))


def test_latent_matches_qwen_tts(pair):
    ref, ours = pair
    wav, _ = waveforms([HOP * 45 + 3, HOP * 45 + 3], seed=2)
    with torch.no_grad():
        expected = reference_latent(ref.encoder, wav[:, None])
        latent = ours.encode_latent(wav[:, None])
    assert latent.shape == expected.shape == (2, TINY["hidden_size"], 46)
    assert (latent - expected).abs().max() < 1e-5
    assert expected.std() > 0.1


def test_all_levels_match_mimi(pair):
    """All 8 levels (semantic + 7 acoustic), beyond the 4 the tokenizer keeps."""
    ref, ours = pair
    wav, _ = waveforms([HOP * 30 + 7], seed=3)
    with torch.no_grad():
        expected = ref.encoder.encode(wav[:, None], return_dict=True).audio_codes
        assert torch.equal(ours.encode(wav[:, None], num_quantizers=8), expected)
        assert torch.equal(ours.encode(wav[:, None], num_quantizers=1), expected[:, :1])


# What the released config does not use but Mimi allows: replicate padding in the SEANet convs, conv
# shortcuts, odd strides, no RVQ projections (vq dim = hidden), a non-default downsample kernel (6).
VARIANT = dict(
    TINY, upsampling_ratios=[3, 2], num_residual_layers=1, pad_mode="replicate", use_conv_shortcut=True,
    codebook_dim=32, vector_quantization_hidden_dimension=32, frame_rate=1300.0,
)


def test_variant_codes_equal_mimi():
    mimi = MimiConfig(**{k: v for k, v in VARIANT.items() if k != "frame_rate"}, frame_rate=VARIANT["frame_rate"])
    ref = modeling.Qwen3TTSTokenizerV2Encoder(mimi).eval()
    randomize(ref)
    ours = CodecEncoder(CodecEncoderConfig(**VARIANT)).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert ours.quantizer.semantic_residual_vector_quantizer.input_proj is None
    assert ours.downsample.conv.kernel_size == (6,) and ours.hop_length == 12
    wav, _ = waveforms([12 * 41 + 5, 12 * 41 + 5], seed=6)
    with torch.no_grad():
        expected = ref.encode(wav[:, None], return_dict=True).audio_codes
        assert torch.equal(ours.encode(wav[:, None], num_quantizers=8), expected)
        assert (ours.encode_latent(wav[:, None]) - reference_latent(ref, wav[:, None])).abs().max() < 1e-5


def test_sliding_window_is_ignored_by_qwen_tts(pair):
    """transformers 4.57.3 builds Mimi's mask with ``create_causal_mask`` (no window): qwen-tts attends to
    the whole past, which ours does by default; the windowed variant differs once inputs exceed the window."""
    ref, ours = pair
    windowed = CodecEncoder(ours.config, windowed_attention=True).eval()
    windowed.load_state_dict(ours.state_dict(), strict=True)
    wav, _ = waveforms([HOP * 30], seed=4)
    with torch.no_grad():
        expected = reference_latent(ref.encoder, wav[:, None])
        assert (ours.encode_latent(wav[:, None]) - expected).abs().max() < 1e-5
        assert (windowed.encode_latent(wav[:, None]) - expected).abs().max() > 1e-3


def test_released_layout_matches_qwen_tts():
    """Key set and shapes equal to qwen-tts's encoder built from the released encoder_config (meta device)."""
    released = CodecEncoderConfig()
    mimi = MimiConfig(**{k: v for k, v in released.to_dict().items() if k != "_frame_rate"}, frame_rate=12.5)
    with torch.device("meta"):
        ref = modeling.Qwen3TTSTokenizerV2Encoder(mimi)
        ours = CodecEncoder(released)
    expected = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
    assert expected["downsample.conv.weight"] == (512, 512, 4)
    assert expected["quantizer.acoustic_residual_vector_quantizer.layers.30.codebook.embed_sum"] == (2048, 256)
    assert released.hop_length == 1920 and ours.num_frames(24_000) == 13


def test_config_round_trip_and_errors():
    released = {**CodecEncoderConfig().to_dict(), "model_type": "mimi", "torch_dtype": "float32"}
    config = CodecEncoderConfig.from_dict(released)
    assert config.to_dict() == released and config.frame_rate == 12.5
    assert config.extra == {"model_type": "mimi", "torch_dtype": "float32"}
    assert CodecEncoderConfig.from_dict({"frame_rate": 10.0}).downsample_kernel_size == 4
    bad = [
        (dict(num_filters=0), "num_filters"),
        (dict(upsampling_ratios=[]), "upsampling_ratios"),
        (dict(num_attention_heads=6, num_key_value_heads=4), "num_key_value_heads"),
        (dict(codebook_dim=128), "codebook_dim"),
        (dict(num_semantic_quantizers=32), "num_semantic_quantizers"),
        (dict(pad_mode="reflect"), "pad_mode"),
        (dict(hidden_act="silu"), "hidden_act"),
        (dict(frame_rate=25.0), "frame_rate"),
        (dict(codebook_size=1000), "codebook_size"),
        (dict(use_causal_conv=False), "use_causal_conv"),
    ]
    for values, key in bad:
        with pytest.raises(ValueError, match=key):
            CodecEncoderConfig(**values)


def test_encode_rejects_bad_input(pair):
    _, ours = pair
    with pytest.raises(ValueError, match="wav must be"):
        ours.encode(torch.zeros(1, 100))
    with pytest.raises(ValueError, match="num_quantizers"):
        ours.encode(torch.zeros(1, 1, 100), num_quantizers=9)


@pytest.mark.parametrize("sizes", [[HOP * 40 + 5], [1] * 37 + [HOP * 3], [7, 100, 3, 250, 0, 64, 190], [HOP] * 20])
def test_streaming_equals_offline(pair, sizes):
    """Chunks of any size (empty, one sample, not hop multiples) give the offline codes, each frame as soon
    as its samples are in: after s samples, floor(s / hop) frames; the end completes the last one."""
    _, ours = pair
    wav, _ = waveforms([sum(sizes)] * 2, seed=5)
    wav = wav[:, None]
    with torch.no_grad():
        offline = ours.encode(wav, num_quantizers=KEEP)
        chunks = list(torch.split(wav, sizes, dim=-1))
        streamed = list(ours.encode_stream(chunks, num_quantizers=KEEP))
    assert len(streamed) == len(sizes) + 1
    received = 0
    for index, codes in enumerate(streamed[:-1]):
        received += codes.shape[-1]
        assert received == sum(sizes[: index + 1]) // HOP
    assert torch.equal(torch.cat(streamed, dim=-1), offline)
