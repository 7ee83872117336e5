import copy
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from qtts.models.codec import CodecDecoder, CodecDecoderConfig
from qtts.models.layers import CausalConv1d, CausalConvTranspose1d
from qtts.models.streaming import Stream

modeling = pytest.importorskip("qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2")
configuration = pytest.importorskip("qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2")

# Every part of the released layout, narrow: GQA off (16/16 released), sliding window 5 < sequence length,
# two 50 Hz upsamplers, two upsampling blocks with both an even and an odd rate.
TINY = dict(
    latent_dim=32, codebook_dim=16, codebook_size=64, decoder_dim=48, hidden_size=32, intermediate_size=64,
    head_dim=16, num_attention_heads=2, num_key_value_heads=2, num_hidden_layers=2, sliding_window=5,
    upsample_rates=[2, 3], upsampling_ratios=[2, 2],
)
# Grouped KV heads, another window and odd rates: what the released config does not use but the code allows.
GQA = dict(TINY, num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=3,
           upsample_rates=[3, 2], upsampling_ratios=[2])
FRAMES = 23  # several windows long


def randomize(model: torch.nn.Module, seed: int = 0, gain: float = 0.7) -> None:
    """O(1) activations everywhere, so every path changes the waveform: weights of gain 0.7 (1.0 clamps
    90 % of samples), LayerScale/gamma/norms ~1, SnakeBeta log-α/β ~N(0, 0.5), codewords ~N(0, 1) from
    positive cluster usage, a few rows below the 1e-5 clamp."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("cluster_usage"):
                value = torch.rand(p.shape, generator=gen) * 2 + 0.1
                value[:3] = 1e-7  # below the clamp
            elif name.endswith("embedding_sum"):  # codewords ~N(0, 1) once divided by the clamped usage
                usage = model.get_parameter(name.replace("embedding_sum", "cluster_usage")).clamp(min=1e-5)
                value = torch.randn(p.shape, generator=gen) * usage[:, None]
            elif name.endswith((".alpha", ".beta")):
                value = torch.randn(p.shape, generator=gen) * 0.5
            elif name.endswith((".scale", "gamma")) or "norm" in name:
                value = 0.5 + torch.rand(p.shape, generator=gen)
            elif name.endswith("bias"):
                value = torch.randn(p.shape, generator=gen) * 0.1
            else:
                value = torch.randn(p.shape, generator=gen) * gain / math.sqrt(p[0].numel())
            p.copy_(value)
    cluster_usage = model.state_dict()["quantizer.rvq_first.vq.layers.0._codebook.cluster_usage"]
    assert cluster_usage.min() < 1e-5 < cluster_usage.max()


def make_pair(tmp_path_factory, config: dict):
    """(qwen-tts decoder, ours loaded from its safetensors with strict=True)."""
    ref = modeling.Qwen3TTSTokenizerV2Decoder(configuration.Qwen3TTSTokenizerV2DecoderConfig(**config)).eval()
    randomize(ref)
    path = tmp_path_factory.mktemp("codec") / "decoder.safetensors"
    save_file(ref.state_dict(), str(path))
    ours = CodecDecoder(CodecDecoderConfig(**config)).eval()
    ours.load_state_dict(load_file(str(path)), strict=True)
    return ref, ours


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return make_pair(tmp_path_factory, TINY)


@pytest.fixture(scope="module")
def gqa_pair(tmp_path_factory):
    return make_pair(tmp_path_factory, GQA)


def random_codes(batch: int, frames: int = FRAMES, seed: int = 1) -> torch.Tensor:
    codes = torch.randint(0, TINY["codebook_size"], (batch, 16, frames), generator=torch.Generator().manual_seed(seed))
    codes[0, :, :2] = 0  # codewords whose usage is clamped
    return codes


@pytest.mark.parametrize("layout", ["pair", "gqa_pair"])
@pytest.mark.parametrize("batch", [1, 2])
def test_matches_qwen_tts(request, layout, batch):
    ref, ours = request.getfixturevalue(layout)
    codes = random_codes(batch)
    with torch.no_grad():
        expected, got = ref(codes), ours(codes)
    assert got.shape == expected.shape == (batch, 1, FRAMES * ours.total_upsample)
    assert expected.abs().max() == 1.0 and 0.05 < expected.abs().mean() < 0.99  # clamp reached, not saturated
    diff = (got - expected).abs().max().item()
    print(f"max abs diff, {layout} batch {batch}: {diff:.2e}")
    assert diff <= 1e-4
    if batch == 2:
        assert not torch.allclose(got[0], got[1])
        with torch.no_grad():  # each item decodes as it does alone
            assert (ours(codes[1:]) - got[1:]).abs().max() <= 1e-4


def test_sliding_window_is_exercised(pair):
    """The parity above is not blind to the window: with the window as long as the sequence, output changes."""
    ref, ours = pair
    unwindowed = CodecDecoder(CodecDecoderConfig(**dict(TINY, sliding_window=FRAMES))).eval()
    unwindowed.load_state_dict(ours.state_dict(), strict=True)
    codes = random_codes(1)
    with torch.no_grad():
        assert (unwindowed(codes) - ref(codes)).abs().max() > 1e-2


CHUNKINGS = {"1": [1] * FRAMES, "3": [3] * 7 + [2], "7": [7] * 3 + [2], "mixed": [1, 3, 7, 2, 5, 1, 4]}


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
def test_streaming_equals_full_decode(pair, chunking):
    """Chunks of any size give the full decode: exact math in float64, float32 rounding only in float32."""
    _, ours = pair
    sizes = CHUNKINGS[chunking]
    assert sum(sizes) == FRAMES
    codes = random_codes(2)
    for model, tolerance in ((ours, 1e-4), (copy.deepcopy(ours).double(), 1e-10)):
        with torch.no_grad():
            full = model(codes)
            with model.streaming() as stream:
                parts = [model(chunk) for chunk in codes.split(sizes, dim=-1)]
            cache = stream.states[model.pre_transformer].caches[0]
            assert cache.length == FRAMES and cache.keys.shape[2] == TINY["sliding_window"] - 1  # bounded
            for m in model.modules():  # conv states are own buffers, not views that keep a whole chunk alive
                if isinstance(m, (CausalConv1d, CausalConvTranspose1d)):
                    state = stream.states[m]
                    state = state.pending if isinstance(m, CausalConv1d) else state.previous
                    assert state.untyped_storage().nbytes() == state.numel() * state.element_size()
            assert [p.shape[-1] for p in parts] == [n * model.total_upsample for n in sizes]
            diff = (torch.cat(parts, dim=-1) - full).abs().max().item()
            print(f"streaming chunks {chunking} {full.dtype}: max abs diff {diff:.1e}")
            assert diff <= tolerance
            again = torch.cat(list(model.decode_stream(codes.split(sizes, dim=-1))), dim=-1)
            assert torch.equal(again, torch.cat(parts, dim=-1))  # state starts fresh for each stream
            assert torch.equal(model(codes), full)  # and is gone after it


@pytest.mark.parametrize("kernel_size, stride, dilation", [(4, 2, 1), (3, 2, 2), (7, 1, 3)])
def test_causal_conv_matches_qwen_tts_and_streams(kernel_size, stride, dilation):
    """Strided convs (not in the decoder, used by the encoder): same padding as qwen-tts at every length;
    streamed chunks give the same frames, the last one once it is complete."""
    ref = modeling.Qwen3TTSTokenizerV2CausalConvNet(3, 5, kernel_size, dilation=dilation, stride=stride)
    ours = CausalConv1d(3, 5, kernel_size, stride=stride, dilation=dilation)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for length in range(1, 25):
            assert torch.allclose(ours(x[..., :length]), ref(x[..., :length]), atol=1e-6)
        full = ours(x)
        stream = Stream(ours)
        streamed = torch.cat([stream(chunk) for chunk in x.split([1, 5, 2, 7, 9], dim=-1)], dim=-1)
    assert streamed.shape[-1] == 24 // stride
    assert torch.allclose(streamed, full[..., : streamed.shape[-1]], atol=1e-6)


@pytest.mark.parametrize("kernel_size, stride", [(16, 8), (2, 2), (6, 3), (3, 1)])
def test_transposed_conv_small_input_path_matches_aten(kernel_size, stride):
    """The CPU overlap-add path for few-frame inputs gives ConvTranspose1d's result at every size around the
    switch-over, with and without bias, and streams to the same frames."""
    for bias in (True, False):
        ours = CausalConvTranspose1d(6, 4, kernel_size, stride, bias=bias).double()
        x = torch.randn(2, 6, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            for batch in (1, 2):
                for length in range(1, 20):
                    xi = x[:batch, :, :length]
                    expected = ours.conv(xi)[..., : length * stride]
                    assert torch.allclose(ours(xi), expected, atol=1e-12), (batch, length)
            full = ours(x)
            stream = Stream(ours)
            streamed = torch.cat([stream(chunk) for chunk in x.split([1, 2, 9, 3, 5], dim=-1)], dim=-1)
        assert torch.allclose(streamed, full, atol=1e-12)


def test_released_size_has_the_released_keys():
    released = CodecDecoderConfig().to_dict()  # our defaults are the released decoder_config
    with torch.device("meta"):  # shapes only, no memory
        ref = modeling.Qwen3TTSTokenizerV2Decoder(configuration.Qwen3TTSTokenizerV2DecoderConfig(**released))
        ours = CodecDecoder()
    expected = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
    assert expected["quantizer.rvq_rest.vq.layers.14._codebook.embedding_sum"] == (2048, 256)
    assert expected["pre_transformer.layers.7.self_attn.q_proj.weight"] == (1024, 512)
    assert expected["decoder.4.block.4.conv1.conv.weight"] == (96, 96, 7)
    assert ours.total_upsample == ref.total_upsample == 1920


def test_config_round_trip_and_validation():
    released = dict(CodecDecoderConfig().to_dict(), future_key={"a": 1})
    config = CodecDecoderConfig.from_dict(released)
    assert config.extra == {"future_key": {"a": 1}}
    assert config.to_dict() == released
    with pytest.raises(ValueError, match="decoder_config.sliding_window"):
        CodecDecoderConfig(sliding_window=0)
    with pytest.raises(ValueError, match="decoder_config.decoder_dim"):
        CodecDecoderConfig(decoder_dim=100)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        CodecDecoderConfig(num_key_value_heads=5)
    with pytest.raises(ValueError, match="upsample_rates"):
        CodecDecoderConfig(upsample_rates=[])


def test_rejects_wrong_number_of_codebooks(pair):
    _, ours = pair
    with pytest.raises(ValueError, match="16"):
        ours(torch.zeros(1, 15, 4, dtype=torch.long))
