"""CodecTask's VQ warm-up: the first ``vq_warmup_steps`` generator steps decode the continuous latent, then the
codebooks k-means-initialise on the latent of that step and quantize from there on."""

from __future__ import annotations

import pytest
import torch
import yaml

from qtts.models.codec.vq_training import bypass
from qtts.tasks.codec import CodecTask
from qtts.training.configs import CONFIG_DIR


@pytest.fixture
def task() -> CodecTask:
    values = yaml.safe_load((CONFIG_DIR / "model" / "codec_tiny.yaml").read_text())
    values.pop("_target_")
    torch.manual_seed(0)
    return CodecTask(values, vq={"dropout_prob": 0.0}, vq_warmup_steps=2).train()


def levels(task: CodecTask):
    quantizer = task.codec.encoder.quantizer
    return list(quantizer.semantic_residual_vector_quantizer.layers) + list(
        quantizer.acoustic_residual_vector_quantizer.layers)


def test_warmup_decodes_the_latent_then_quantizes(task):
    wav = torch.randn(2, 1, 128 * 6) * 0.1
    fake, out = task.reconstruct(wav)
    assert fake.shape == wav.shape and out.codes.shape == (2, 0, 6) and float(out.commitment_loss) == 0.0
    assert not any(level.codebook.initialized.item() for level in levels(task))

    task.generator_steps.fill_(2)
    fake, out = task.reconstruct(wav)
    assert out.codes.shape == (2, 4, 6) and out.commitment_loss.requires_grad
    used = levels(task)[:1] + levels(task)[1:4]  # 1 semantic + 3 acoustic levels of the 4 kept
    assert all(level.codebook.initialized.item() for level in used)


def test_validation_quantizes_during_warmup(task):
    """Eval mode never bypasses: validation scores what the exported codec would produce."""
    task.eval()
    _, out = task.reconstruct(torch.randn(1, 1, 128 * 4) * 0.1)
    assert out.codes.shape == (1, 4, 4)


def test_scratch_init_lets_the_latent_reach_the_decoder():
    """How much of the decoder transformer's output varies with the input (std over time / mean size): with PyTorch's
    default init little (random biases dominate a 0.1-RMS waveform shrunk by every conv), with zero biases and the
    scale-preserving encoder init about all of it."""
    values = yaml.safe_load((CONFIG_DIR / "model" / "codec_tiny.yaml").read_text())
    values.pop("_target_")
    wav = torch.sin(torch.linspace(0, 300, 128 * 32))[None, None] * 0.1 * torch.linspace(0, 1, 128 * 32)
    ratios = {}
    for zero in (False, True):
        torch.manual_seed(0)
        task = CodecTask(values, zero_biases=zero, encoder_init_gain=1.0 if zero else None).eval()
        layers = (torch.nn.Conv1d, torch.nn.ConvTranspose1d, torch.nn.Linear)
        biases = [m.bias for m in task.codec.modules() if isinstance(m, layers) and m.bias is not None]
        assert biases and all(bool(b.any()) != zero for b in biases)
        decoder = task.codec.decoder
        with torch.no_grad():
            quantized = bypass(task.codec.encoder.quantizer, task.codec.encoder.encode_latent(wav)).quantized
            hidden = decoder.pre_transformer(decoder.pre_conv(quantized).transpose(1, 2))
        ratios[zero] = float(hidden.std(1).mean() / hidden.abs().mean())
    assert ratios[False] < 0.1 < 0.5 < ratios[True], ratios
