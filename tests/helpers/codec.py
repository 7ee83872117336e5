"""Random codecs whose codes vary: for tests that need codes without training a codec."""

import math

import torch


def randomize_encoder(model: torch.nn.Module, seed: int = 0) -> None:
    """O(1) activations and spread codewords, so the codes of a random codec vary (as
    tests/models/test_codec_encoder.py does, without needing qwen-tts)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".scale") or "norm.weight" in name:
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))
        for name, buffer in model.named_buffers():
            if name.endswith("cluster_usage"):
                buffer.copy_(torch.rand(buffer.shape, generator=gen) * 2 + 0.1)
            elif name.endswith("embed_sum"):
                usage = model.get_buffer(name.replace("embed_sum", "cluster_usage")).clamp(min=1e-5)
                buffer.copy_(torch.randn(buffer.shape, generator=gen) * 2 * usage[:, None])
            elif name.endswith("initialized"):
                buffer.fill_(1.0)
