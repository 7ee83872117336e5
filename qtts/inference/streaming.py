"""Audio packets from frames as they are generated: the codec decoder run incrementally, with its state.

The 12 Hz decoder is causal (convs keep their left context, its transformer a KV cache of its window), so a
packet of new frames is decoded once, against the state the earlier packets left, and the packets together are
the whole decode. That state lives in a ``qtts.models.streaming.Stream``, never on the decoder's modules, so
several streams (from several threads) and offline decoding share one codec.
"""

from __future__ import annotations

import torch

from qtts.models.codec.decoder import CodecDecoder
from qtts.models.streaming import Rows


class StreamDecoder:
    """Decodes consecutive code packets of a batch of rows that are at the same frame index.

    ``prefix`` (B, R, G): codes decoded first and not returned (the reference of in-context cloning, which the
    offline path decodes in front of the new codes and cuts off again).
    """

    def __init__(self, decoder: CodecDecoder, prefix: torch.Tensor | None = None):
        self.decoder = decoder
        self.stream = decoder.stream()
        if prefix is not None and prefix.shape[1] > 0:
            self(prefix)

    @torch.inference_mode()
    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, n, G) → audio (B, n · hop), continuing the stream."""
        return self.stream(codes.transpose(1, 2))[:, 0]

    def reset(self, rows: Rows = None) -> None:
        """Start new utterances in ``rows`` (indices or a bool mask; None: all) from the next packet on."""
        self.stream.reset(rows)
