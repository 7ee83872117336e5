"""The flow-matching DiT of the 25 Hz detokenizer (qwen-tts 0.1.1's ``Qwen3TTSTokenizerV1DecoderDiTModel``):
25 Hz codes + the speaker (x-vector, reference mel) → a 100 Hz mel, by integrating a learned velocity field from
noise (t = 0) to the mel (t = 1).

    per frame: [noisy mel, ECAPA(reference mel), code embedding repeated ×repeats, x-vector] ─ input_embed.proj
        ─ blocks: AdaLN-zero(time) → block attention (interleaved RoPE) → AdaLN-zero MLP ─ norm_out ─ proj_out
        → velocity (B, frames, mel_dim)

Attention is restricted to blocks of ``block_size`` frames: a frame sees its own block, plus the previous block
in the ``look_backward_layers`` and the next block in the ``look_ahead_layers``; this bounded reach is what lets
the detokenizer stream. Classifier-free guidance runs the conditional and the unconditional model (x-vector and
reference mel zeroed, every code mapped to index 0) as one doubled batch.

Differences from qwen-tts, all where it is wrong or cannot be driven:

- a padded batch is masked: padded keys are hidden from every query (a query always sees itself, so a padded
  row stays finite) and the ECAPA's statistics skip padded reference frames, so each item gets what it gets
  alone; qwen-tts attends to padding and pools over it;
- ``sample`` takes the noise as an argument or draws it from a ``generator`` (qwen-tts draws a (B, 30000, 80)
  tensor from the global RNG, which caps the length and ties the noise to the batch shape);
- ``guidance_scale = 0`` runs the conditional model once (qwen-tts crashes: it doubles the batch anyway).

Module names equal qwen-tts's ``decoder.dit.*`` keys; ``rotary_embed.inv_freq`` is a persistent buffer there,
so it is here (a loaded folder's frequencies are the ones used).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from qtts.models.talker.speaker_encoder import SpeakerEncoder, SpeakerEncoderConfig
from qtts.models.tokenizer_25hz.config import DiTConfig

TIME_FREQUENCIES = 256  # width of the sinusoidal time features
TIME_SCALE = 1000.0  # t ∈ [0, 1] is scaled to the range sinusoidal position features expect


class TimestepEmbedding(nn.Module):
    """t (B,) → sinusoidal features of 1000·t (sin half, cos half) → Linear → SiLU → Linear."""

    def __init__(self, dim: int):
        super().__init__()
        self.time_mlp = nn.ModuleList([nn.Linear(TIME_FREQUENCIES, dim), nn.SiLU(), nn.Linear(dim, dim)])

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = TIME_FREQUENCIES // 2
        frequencies = torch.exp(torch.arange(half, device=t.device).float() * -(math.log(10_000) / (half - 1)))
        angles = TIME_SCALE * t[:, None] * frequencies[None]
        h = torch.cat((angles.sin(), angles.cos()), dim=-1).to(t.dtype)
        for layer in self.time_mlp:
            h = layer(h)
        return h


class CodeEmbedding(nn.Module):
    """Codes (B, N) → (B, N · repeats, emb_dim): one row per code (plus one), each repeated to the mel rate.
    Dropping the codes (classifier-free guidance) maps every code to row 0, as released."""

    def __init__(self, num_embeds: int, dim: int, repeats: int):
        super().__init__()
        self.repeats = repeats
        self.codec_embed = nn.Embedding(num_embeds + 1, dim)

    def forward(self, codes: torch.Tensor, drop: bool = False) -> torch.Tensor:
        return self.codec_embed(torch.zeros_like(codes) if drop else codes).repeat_interleave(self.repeats, dim=1)


class InputEmbedding(nn.Module):
    """Per frame [noisy mel, ECAPA(reference mel), code embedding, x-vector] → hidden. The ECAPA
    (``spk_encoder``, the talker's ``SpeakerEncoder`` sized by the ``enc_*`` keys) pools the reference mel into one
    ``enc_dim`` vector per item, skipping padded frames."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        c = config
        self.proj = nn.Linear(c.mel_dim + c.enc_dim + c.enc_emb_dim + c.emb_dim, c.hidden_size)
        self.spk_encoder = SpeakerEncoder(SpeakerEncoderConfig(
            mel_dim=c.mel_dim, enc_dim=c.enc_dim, enc_channels=c.enc_channels, enc_kernel_sizes=c.enc_kernel_sizes,
            enc_dilations=c.enc_dilations, enc_attention_channels=c.enc_attention_channels,
            enc_res2net_scale=c.enc_res2net_scale, enc_se_channels=c.enc_se_channels))

    def forward(self, noisy: torch.Tensor, ref_mel: torch.Tensor, ref_lengths: torch.Tensor | None,
                xvector: torch.Tensor, code_embedding: torch.Tensor) -> torch.Tensor:
        frames = noisy.shape[1]
        speaker = self.spk_encoder(ref_mel, ref_lengths)[:, None].expand(-1, frames, -1)
        xvector = xvector[:, None].expand(-1, frames, -1)
        return self.proj(torch.cat((noisy, speaker, code_embedding, xvector), dim=-1))


class InterleavedRotary(nn.Module):
    """RoPE over adjacent pairs (x₂ᵢ, x₂ᵢ₊₁) (GPT-J style, not qtts's rotate-half), at positions 0..T−1 of the
    padded batch, on every head."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim))

    def forward(self, length: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, head_dim) cos and sin, each frequency repeated for its pair."""
        positions = torch.arange(length, device=self.inv_freq.device).float()
        angles = (positions[:, None] * self.inv_freq.float()[None]).repeat_interleave(2, dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        first, second = x.unflatten(-1, (-1, 2)).unbind(-1)
        return x * cos + torch.stack((-second, first), dim=-1).flatten(-2) * sin


class DiTAttention(nn.Module):
    """Bidirectional multi-head attention (biased projections) under a boolean mask."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.heads, self.head_dim = config.num_attention_heads, config.head_dim
        inner = config.num_attention_heads * config.head_dim
        self.to_q = nn.Linear(config.hidden_size, inner)
        self.to_k = nn.Linear(config.hidden_size, inner)
        self.to_v = nn.Linear(config.hidden_size, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, config.hidden_size), nn.Dropout(config.dropout)])

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = (proj(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
                   for proj in (self.to_q, self.to_k, self.to_v))
        q, k = InterleavedRotary.rotate(q, cos, sin), InterleavedRotary.rotate(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = self.to_out[0](out.transpose(1, 2).reshape(batch, length, -1))
        return self.to_out[1](out)


class AdaLayerNormZero(nn.Module):
    """LayerNorm (no affine) modulated by the time embedding: ``linear(silu(t))`` gives ``chunks`` vectors
    (shift, scale, gate for attention and for the MLP in a block; scale, shift at the output)."""

    def __init__(self, dim: int, chunks: int):
        super().__init__()
        self.chunks = chunks
        self.linear = nn.Linear(dim, dim * chunks)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def modulation(self, time: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(m[:, None] for m in self.linear(F.silu(time)).chunk(self.chunks, dim=1))


class DiTMLP(nn.Module):
    """Linear → tanh-GELU → dropout → Linear (``ff.0``, ``ff.3`` as released)."""

    def __init__(self, dim: int, mult: int, dropout: float):
        super().__init__()
        inner = int(dim * mult)
        self.ff = nn.ModuleList([nn.Linear(dim, inner), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                 nn.Linear(inner, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.ff:
            x = layer(x)
        return x


class DiTBlock(nn.Module):
    """AdaLN-zero transformer block; sees ``look_backward`` blocks behind and ``look_ahead`` blocks ahead."""

    def __init__(self, config: DiTConfig, look_backward: int, look_ahead: int):
        super().__init__()
        self.look_backward, self.look_ahead = look_backward, look_ahead
        self.attn_norm = AdaLayerNormZero(config.hidden_size, 6)
        self.attn = DiTAttention(config)
        self.ff_norm = nn.LayerNorm(config.hidden_size, elementwise_affine=False, eps=1e-6)
        self.ff = DiTMLP(config.hidden_size, config.ff_mult, config.dropout)

    def forward(self, x: torch.Tensor, time: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.attn_norm.modulation(time)
        h = self.attn_norm.norm(x) * (1 + scale_msa) + shift_msa
        x = x + gate_msa * self.attn(h, cos, sin, mask)
        h = self.ff_norm(x) * (1 + scale_mlp) + shift_mlp
        return x + gate_mlp * self.ff(h)


class DiT(nn.Module):
    """The velocity model ``forward`` (training, one ODE evaluation) and the Euler sampler ``sample``."""

    def __init__(self, config: DiTConfig | None = None):
        super().__init__()
        self.config = c = config or DiTConfig()
        self.time_embed = TimestepEmbedding(c.hidden_size)
        self.text_embed = CodeEmbedding(c.num_embeds, c.emb_dim, c.repeats)
        self.input_embed = InputEmbedding(c)
        self.rotary_embed = InterleavedRotary(c.head_dim, c.rope_theta)
        self.transformer_blocks = nn.ModuleList(
            DiTBlock(c, look_backward=int(i in c.look_backward_layers), look_ahead=int(i in c.look_ahead_layers))
            for i in range(c.num_hidden_layers))
        self.norm_out = AdaLayerNormZero(c.hidden_size, 2)
        self.proj_out = nn.Linear(c.hidden_size, c.mel_dim)

    @property
    def min_ref_frames(self) -> int:
        """Reference-mel frames the ECAPA's reflect padding needs per item."""
        return self.input_embed.spk_encoder.min_frames

    def forward(self, noisy_mel: torch.Tensor, ref_mel: torch.Tensor, xvector: torch.Tensor, codes: torch.Tensor,
                time: torch.Tensor, *, apply_cfg: bool = False, drop_audio_conditioning: bool = False,
                drop_code: bool = False, code_lengths: torch.Tensor | None = None,
                ref_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity (B, frames, mel_dim) at ``noisy_mel`` (B, frames = N · repeats, mel_dim) and time ``time``
        (a scalar or (B,)), given ``ref_mel`` (B, T', mel_dim), ``xvector`` (B, enc_emb_dim), ``codes`` (B, N).

        ``apply_cfg``: return (2B, …), the conditional rows then the unconditional ones (x-vector and reference
        mel zeroed, codes dropped). Otherwise ``drop_audio_conditioning`` zeroes the x-vector and reference mel
        and ``drop_code`` maps every code to row 0 (the training-time dropouts). ``code_lengths`` / ``ref_lengths``
        (B,): valid codes / reference frames of a right-padded batch (None: all valid)."""
        self._check(noisy_mel, ref_mel, xvector, codes, code_lengths, ref_lengths)
        batch, frames = noisy_mel.shape[:2]
        code_embedding = self.text_embed(codes, drop=drop_code and not apply_cfg)
        if apply_cfg:
            noisy_mel = torch.cat((noisy_mel, noisy_mel))
            ref_mel = torch.cat((ref_mel, torch.zeros_like(ref_mel)))
            xvector = torch.cat((xvector, torch.zeros_like(xvector)))
            code_embedding = torch.cat((code_embedding, self.text_embed(codes, drop=True)))
            code_lengths, ref_lengths = (None if n is None else n.repeat(2) for n in (code_lengths, ref_lengths))
            batch *= 2
        elif drop_audio_conditioning:
            ref_mel, xvector = torch.zeros_like(ref_mel), torch.zeros_like(xvector)
        time = time.to(noisy_mel.dtype)
        time = time.expand(batch) if time.dim() == 0 else (time.repeat(2) if apply_cfg else time)
        time = self.time_embed(time)

        x = self.input_embed(noisy_mel, ref_mel, ref_lengths, xvector, code_embedding)
        cos, sin = self.rotary_embed(frames, x.dtype)
        valid = None if code_lengths is None else self._valid_frames(code_lengths, frames)
        masks = {}
        for block in self.transformer_blocks:
            reach = (block.look_backward, block.look_ahead)
            if reach not in masks:
                masks[reach] = self.attention_mask(frames, *reach, valid)
            x = block(x, time, cos, sin, masks[reach])
        scale, shift = self.norm_out.modulation(time)
        return self.proj_out(self.norm_out.norm(x) * (1 + scale) + shift)

    def attention_mask(self, frames: int, look_backward: int, look_ahead: int,
                       valid: torch.Tensor | None = None) -> torch.Tensor:
        """Bool (1 or B, 1, frames, frames), True where a query may attend: keys in its block, ``look_backward``
        blocks behind and ``look_ahead`` ahead; with ``valid`` (B, frames) only valid keys, or itself."""
        block = torch.arange(frames, device=self.proj_out.weight.device) // self.config.block_size
        distance = block[None, :] - block[:, None]
        allowed = ((distance >= -look_backward) & (distance <= look_ahead))[None, None]
        if valid is None:
            return allowed
        itself = torch.eye(frames, dtype=torch.bool, device=valid.device)
        return allowed & (valid[:, None, None, :] | itself)

    def _valid_frames(self, code_lengths: torch.Tensor, frames: int) -> torch.Tensor:
        lengths = code_lengths.to(self.proj_out.weight.device) * self.config.repeats
        return torch.arange(frames, device=lengths.device)[None] < lengths[:, None]

    @torch.no_grad()
    def sample(self, codes: torch.Tensor, xvector: torch.Tensor, ref_mel: torch.Tensor, *,
               code_lengths: torch.Tensor | None = None, ref_lengths: torch.Tensor | None = None,
               num_steps: int = 10, guidance_scale: float = 0.5, sway_coefficient: float | None = -1.0,
               noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Codes (B, N) → mel (B, N · repeats, mel_dim): ``num_steps − 1`` Euler steps from ``noise`` (given, or
        drawn from ``generator``) over the time grid ``linspace(0, 1, num_steps)`` bent by ``sway_coefficient``
        (``t + s·(cos(πt/2) − 1 + t)``: negative values crowd the steps near the noise end), each velocity guided
        as ``v_cond + guidance_scale · (v_cond − v_uncond)``; ``guidance_scale = 0`` runs only the conditional
        model."""
        if not isinstance(num_steps, int) or num_steps < 2:
            raise ValueError(f"num_steps must be an integer ≥ 2 (time-grid points, one Euler step fewer), "
                             f"got {num_steps!r}")
        if guidance_scale < 0:
            raise ValueError(f"guidance_scale must be ≥ 0, got {guidance_scale}")
        shape = (codes.shape[0], codes.shape[1] * self.config.repeats, self.config.mel_dim)
        if noise is None:
            noise = torch.randn(shape, generator=generator, dtype=ref_mel.dtype, device=generator.device
                                if generator is not None else ref_mel.device).to(ref_mel.device)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape} (batch, codes × repeats, mel_dim), "
                             f"got {tuple(noise.shape)}")
        times = torch.linspace(0, 1, num_steps, device=ref_mel.device, dtype=xvector.dtype)
        if sway_coefficient is not None:
            times = times + sway_coefficient * (torch.cos(torch.pi / 2 * times) - 1 + times)
        lengths = dict(code_lengths=code_lengths, ref_lengths=ref_lengths)
        x = noise.to(ref_mel.dtype)
        for t0, t1 in zip(times[:-1], times[1:]):
            if guidance_scale == 0:
                velocity = self(x, ref_mel, xvector, codes, t0, **lengths)
            else:
                conditional, unconditional = self(x, ref_mel, xvector, codes, t0, apply_cfg=True,
                                                  **lengths).chunk(2)
                velocity = conditional + (conditional - unconditional) * guidance_scale
            x = x + velocity * (t1 - t0)
        return x

    def _check(self, noisy_mel, ref_mel, xvector, codes, code_lengths, ref_lengths) -> None:
        c = self.config
        batch = codes.shape[0]
        if codes.dim() != 2 or codes.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"codes must be integer (batch, codes), got {codes.dtype} {tuple(codes.shape)}")
        expected = (batch, codes.shape[1] * c.repeats, c.mel_dim)
        if tuple(noisy_mel.shape) != expected:
            raise ValueError(f"noisy_mel must be (batch, codes × repeats {c.repeats}, mel_dim) = {expected}, "
                             f"got {tuple(noisy_mel.shape)}")
        if ref_mel.dim() != 3 or ref_mel.shape[0] != batch or ref_mel.shape[2] != c.mel_dim:
            raise ValueError(f"ref_mel must be (batch {batch}, frames, mel_dim {c.mel_dim}), "
                             f"got {tuple(ref_mel.shape)}")
        if tuple(xvector.shape) != (batch, c.enc_emb_dim):
            raise ValueError(f"xvector must be (batch {batch}, enc_emb_dim {c.enc_emb_dim}), "
                             f"got {tuple(xvector.shape)}")
        for name, lengths, limit in (("code_lengths", code_lengths, codes.shape[1]),
                                     ("ref_lengths", ref_lengths, ref_mel.shape[1])):
            if lengths is not None and (lengths.shape != (batch,) or int(lengths.min()) < 1
                                        or int(lengths.max()) > limit):
                raise ValueError(f"{name} must be (batch {batch},) counts in 1..{limit}, got {lengths.tolist()}")
