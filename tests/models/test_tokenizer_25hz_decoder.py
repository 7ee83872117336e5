"""The 25 Hz detokenizer (DiT + BigVGAN) against qwen-tts 0.1.1, fp32 CPU, tiny random weights scaled up so every
path moves the outputs: released keys both ways, BigVGAN, DiT forward with and without CFG, seeded sampling under
the same noise, the whole decode; guidance 0; a padded batch equals each item alone."""

import math

import pytest
import torch

from qtts.models.tokenizer_25hz import Tokenizer25HzConfig
from qtts.models.tokenizer_25hz.bigvgan import BigVGAN, kaiser_sinc_filter

configuration = pytest.importorskip("qwen_tts.core.tokenizer_25hz.configuration_qwen3_tts_tokenizer_v1")
modeling = pytest.importorskip("qwen_tts.core.tokenizer_25hz.modeling_qwen3_tts_tokenizer_v1")

pytestmark = pytest.mark.usefixtures("one_thread")

ATOL = 1e-5


def qwen_config(config: Tokenizer25HzConfig):
    return configuration.Qwen3TTSTokenizerV1Config(**{k: v for k, v in config.to_dict().items() if k != "model_type"})


def randomize(module: torch.nn.Module, seed: int = 0) -> None:
    """Unit-gain weights, biases ~0.1, SnakeBeta log-α/β ~0.3 (the default init gives ~1e-7 waveforms and a DiT
    whose zero-initialised-like gates hide most paths); BigVGAN's last conv is scaled so the output clamp rarely
    bites."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))
            if name.endswith("conv_post.weight"):
                p.mul_(0.05)


@pytest.fixture(scope="module")
def config():
    return Tokenizer25HzConfig.tiny()


def test_kaiser_filter_is_a_unit_gain_lowpass():
    taps = kaiser_sinc_filter(0.25, 0.3, 12)[0, 0]
    assert taps.shape == (12,) and torch.allclose(taps.sum(), torch.tensor(1.0))
    assert torch.allclose(taps, taps.flip(0))  # linear phase
    response = torch.fft.rfft(taps, 256).abs()
    assert response[0] > 0.99 and response[-1] < 0.05  # passes DC, stops Nyquist


def test_bigvgan_matches_qwen_tts(config):
    ref = modeling.Qwen3TTSTokenizerV1DecoderBigVGANModel._from_config(
        qwen_config(config).decoder_config.bigvgan_config).eval()
    randomize(ref)
    ours = BigVGAN(config.decoder_config.bigvgan_config).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    ours.load_state_dict(ref.state_dict(), strict=True)
    mel = torch.randn(2, 80, 17, generator=torch.Generator().manual_seed(1)) * 2 - 4
    with torch.no_grad():
        expected, got = ref(mel), ours(mel)
    assert got.shape == (2, 17 * ours.total_upsample)
    assert (got - expected).abs().max() <= ATOL
    assert (got.abs() < 0.99).float().mean() > 0.9 and got.std() > 0.05  # not clamped, not silent
    with pytest.raises(ValueError, match=r"expected a mel of shape \(batch, 80, frames\)"):
        ours(mel.transpose(1, 2))
