"""The 25 Hz detokenizer (``decoder.*`` of the folder): codes + the speaker → waveform, by the DiT's Euler sampling
of a 100 Hz mel and BigVGAN's vocoding of it.

Items of a batch may differ in length: the DiT masks the padding (each item's mel is what it is alone, given the
same noise), and since BigVGAN's centred convs would see an item's right padding, items are vocoded in groups of
equal length (each group one batch).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from qtts.models.tokenizer_25hz.bigvgan import BigVGAN
from qtts.models.tokenizer_25hz.config import Tokenizer25HzDecoderConfig
from qtts.models.tokenizer_25hz.dit import DiT


class Detokenizer25Hz(nn.Module):
    """``dit`` (codes → mel) and ``bigvgan`` (mel → waveform); ``forward`` decodes a list of items."""

    def __init__(self, config: Tokenizer25HzDecoderConfig | None = None):
        super().__init__()
        self.config = config = config or Tokenizer25HzDecoderConfig()
        self.dit = DiT(config.dit_config)
        self.bigvgan = BigVGAN(config.bigvgan_config)

    @property
    def samples_per_code(self) -> int:
        return self.config.samples_per_code

    @torch.inference_mode()
    def forward(self, codes: list[torch.Tensor], xvectors: torch.Tensor | list[torch.Tensor],
                ref_mels: list[torch.Tensor], *, num_steps: int = 10, guidance_scale: float = 0.5,
                sway_coefficient: float | None = -1.0, noise: list[torch.Tensor] | None = None,
                generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Per item: ``codes`` (N,) ints, its x-vector (enc_emb_dim,) (a list, or rows of a (B, enc_emb_dim)
        tensor), its reference mel (frames at 100 Hz, mel_dim) → waveform (N · samples_per_code,). ``noise``: per
        item (N · repeats, mel_dim), the sampler's starting point; by default drawn item after item from
        ``generator`` (so a batch equals decoding its items one by one from the same generator)."""
        dit = self.dit
        xvectors = self._check(codes, xvectors, ref_mels, noise)
        device, dtype = dit.proj_out.weight.device, dit.proj_out.weight.dtype
        if noise is None:
            c = dit.config
            noise = [torch.randn(len(n) * c.repeats, c.mel_dim, generator=generator,
                                 device=generator.device if generator is not None else device, dtype=dtype)
                     for n in codes]
        code_lengths = torch.tensor([len(c) for c in codes], device=device)
        ref_lengths = torch.tensor([len(r) for r in ref_mels], device=device)
        mels = dit.sample(
            pad_sequence([c.to(device, torch.long) for c in codes], batch_first=True),
            xvectors.to(device, dtype), pad_sequence([r.to(device, dtype) for r in ref_mels], batch_first=True),
            code_lengths=code_lengths, ref_lengths=ref_lengths, num_steps=num_steps, guidance_scale=guidance_scale,
            sway_coefficient=sway_coefficient, noise=pad_sequence([n.to(device, dtype) for n in noise],
                                                                  batch_first=True))
        wavs: list[torch.Tensor | None] = [None] * len(codes)
        for length in code_lengths.unique().tolist():
            rows = (code_lengths == length).nonzero().squeeze(1)
            frames = length * dit.config.repeats
            for row, wav in zip(rows.tolist(), self.bigvgan(mels[rows, :frames].transpose(1, 2))):
                wavs[row] = wav
        return wavs

    def _check(self, codes, xvectors, ref_mels, noise) -> torch.Tensor:
        c = self.dit.config
        if not isinstance(codes, (list, tuple)) or not codes:
            raise ValueError(f"codes must be a non-empty list of 1-D code tensors, got {type(codes).__name__}")
        for i, n in enumerate(codes):
            if not isinstance(n, torch.Tensor) or n.dim() != 1 or n.numel() == 0 or n.is_floating_point():
                raise ValueError(f"codes[{i}] must be a non-empty 1-D integer tensor, got "
                                 f"{getattr(n, 'dtype', type(n).__name__)} {tuple(getattr(n, 'shape', ()))}")
            if int(n.min()) < 0 or int(n.max()) > c.num_embeds:
                raise ValueError(f"codes[{i}] must lie in 0..{c.num_embeds} (dit_config.num_embeds), got "
                                 f"{int(n.min())}..{int(n.max())}")
        if isinstance(xvectors, (list, tuple)):
            xvectors = torch.stack(list(xvectors))
        if not isinstance(xvectors, torch.Tensor) or tuple(xvectors.shape) != (len(codes), c.enc_emb_dim):
            raise ValueError(f"xvectors must be {len(codes)} x-vectors of {c.enc_emb_dim} values (dit_config."
                             f"enc_emb_dim), got {tuple(getattr(xvectors, 'shape', ()))}")
        if not isinstance(ref_mels, (list, tuple)) or len(ref_mels) != len(codes):
            raise ValueError(f"ref_mels must be a list of {len(codes)} reference mels (one per item)")
        for i, r in enumerate(ref_mels):
            if not isinstance(r, torch.Tensor) or r.dim() != 2 or r.shape[1] != c.mel_dim:
                raise ValueError(f"ref_mels[{i}] must be (frames, mel_dim {c.mel_dim}), got "
                                 f"{tuple(getattr(r, 'shape', ()))}")
            if len(r) < self.dit.min_ref_frames:
                raise ValueError(f"ref_mels[{i}] has {len(r)} frames; the speaker ECAPA needs at least "
                                 f"{self.dit.min_ref_frames}")
        if noise is not None:
            if not isinstance(noise, (list, tuple)) or len(noise) != len(codes):
                raise ValueError(f"noise must be a list of {len(codes)} tensors (one per item)")
            for i, (n, z) in enumerate(zip(codes, noise)):
                if tuple(z.shape) != (len(n) * c.repeats, c.mel_dim):
                    raise ValueError(f"noise[{i}] must be (codes × repeats, mel_dim) = "
                                     f"{(len(n) * c.repeats, c.mel_dim)}, got {tuple(z.shape)}")
        return xvectors
