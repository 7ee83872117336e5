"""Audio packets from frames as they are generated: the codec decoder run incrementally, with its state.

The 12 Hz decoder is causal (convs keep their left context, its transformer a KV cache of its window), so a
packet of new frames is decoded once, against the state the earlier packets left, and the packets together are
the whole decode. ``StreamDecoder`` holds that state outside the modules, so several streams (and offline
decoding) can share one codec.
"""

from __future__ import annotations

import torch

from qtts.models.codec.decoder import CodecDecoder
from qtts.models.layers import StreamingModule


class StreamDecoder:
    """Decodes consecutive code packets of a batch of rows that are at the same frame index.

    ``prefix`` (B, R, G): codes decoded first and not returned (the reference of in-context cloning, which the
    offline path decodes in front of the new codes and cuts off again).
    """

    def __init__(self, decoder: CodecDecoder, prefix: torch.Tensor | None = None):
        self.decoder = decoder
        self.modules = [m for m in decoder.modules() if isinstance(m, StreamingModule)]
        self.states: list = [None] * len(self.modules)
        if prefix is not None and prefix.shape[1] > 0:
            self(prefix)

    @torch.inference_mode()
    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, n, G) → audio (B, n · hop), continuing the stream."""
        for module, state in zip(self.modules, self.states):
            module.streaming, module.stream_state = True, state
        try:
            return self.decoder(codes.transpose(1, 2))[:, 0]
        finally:
            self.states = [module.stream_state for module in self.modules]
            for module in self.modules:
                module.reset_stream(False)
