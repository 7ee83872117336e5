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


def random_12hz_codec(folder, seed: int | None = None):
    """A random codec of the released frame rate (1920-sample hop, 16 levels) at the tiny sizes of
    ``model/codec_tiny.yaml``, its codes varying (:func:`randomize_encoder`), saved to ``folder``; returns ``folder``.
    ``seed`` seeds the decoder's initialisation (the global RNG's state otherwise)."""
    import yaml

    from qtts.models.codec.model import CodecConfig, SpeechTokenizer
    from qtts.training.configs import CONFIG_DIR

    values = yaml.safe_load((CONFIG_DIR / "model" / "codec_tiny.yaml").read_text())
    values.pop("_target_")
    values.update(encoder_valid_num_quantizers=16, encode_downsample_rate=1920, decode_upsample_rate=1920)
    values["encoder_config"].update(upsampling_ratios=[8, 6, 5, 4], frame_rate=12.5, num_quantizers=16,
                                    num_filters=4)
    values["decoder_config"].update(num_quantizers=16, upsample_rates=[8, 5, 4, 3])
    if seed is not None:
        torch.manual_seed(seed)
    codec = SpeechTokenizer(CodecConfig.from_dict(values))
    randomize_encoder(codec.encoder)
    codec.save_pretrained(folder)
    return folder
