"""Seed-TTS-eval's SIM model: WavLM-Large features → ECAPA-TDNN (UniSpeech ``ECAPA_TDNN_SMALL``) → 256-d embedding.

Seed-TTS-eval scores speaker similarity with ``wavlm_large_finetune.pth`` from microsoft/UniSpeech
(``downstreams/speaker_verification``): ``ECAPA_TDNN_SMALL(feat_dim=1024, feat_type="wavlm_large",
feature_selection="hidden_states")``, i.e.

* the wav (16 kHz, full length, one clip at a time) is normalised to zero mean / unit variance (WavLM-Large's
  ``normalize``) and run through WavLM-Large; the 25 hidden states (the input of each of the 24 transformer layers,
  then the final layer-normed output) are mixed with ``softmax(feature_weight)``;
* ``+1e-6``, instance norm over time (no affine), then the ECAPA head: Conv-ReLU-BN (k5) → three SE-Res2Blocks
  (k3, dilation 2/3/4, scale 8, SE bottleneck 128, conv→ReLU→BN order, the *last* Res2Net group passes through)
  → concat → 1×1 conv (1536) + ReLU → attentive statistics pooling (no global context) → BN → linear 256.

It differs from the talker's speaker encoder (``qtts.models.talker.speaker_encoder``: no BatchNorm, reflect
padding, context-aware pooling), so the head is written here. WavLM itself is transformers' ``WavLMModel`` (its
``do_stable_layer_norm`` encoder returns exactly those 25 hidden states); :data:`WAVLM_KEY_MAP` renames the
UniSpeech/fairseq parameter names to it.

The checkpoint's ``model`` state dict holds the head's keys and the fine-tuned WavLM under ``feature_extract.model.``
(the UniSpeech code builds WavLM-Large from s3prl, then overwrites it with the checkpoint). When a checkpoint lacks
the WavLM part, WavLM comes from a second local file: UniSpeech's ``WavLM-Large.pt`` (``{"cfg", "model"}``) or a
transformers ``microsoft/wavlm-large`` folder. Every key must be used and every parameter filled (the original
loads with ``strict=False``, which would silently leave random weights); a mismatch names the file and the keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import WavLMConfig, WavLMModel

WAVLM_PREFIX = "feature_extract.model."  # where the fine-tuned checkpoint keeps WavLM's weights
CHECKPOINT_NAME = "wavlm_large_finetune.pth"
WAVLM_LARGE_NAME = "WavLM-Large.pt"


class CheckpointError(ValueError):
    """A file that is not the checkpoint it should be, or whose keys do not fit the model."""


# -- WavLM -------------------------------------------------------------------------------------------------------


def wavlm_large_config(**overrides) -> WavLMConfig:
    """WavLM-Large as UniSpeech's ``WavLM-Large.pt`` configures it (``extractor_mode: layer_norm``,
    ``layer_norm_first``, gated relative position bias with 320 buckets up to distance 800, ``normalize``), in
    transformers' terms. Dropouts are 0: the model is only run for inference."""
    values = dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, hidden_act="gelu",
        conv_dim=(512,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_bias=False,
        feat_extract_norm="layer", feat_extract_activation="gelu", do_stable_layer_norm=True,
        num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, num_buckets=320, max_bucket_distance=800,
        layer_norm_eps=1e-5, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
        final_dropout=0.0, layerdrop=0.0,
        mask_time_prob=0.05,  # > 0 keeps masked_spec_embed (the checkpoint's mask_emb); no masking in eval mode
    )
    values.update(overrides)
    return WavLMConfig(**values)


# UniSpeech (fairseq) WavLM name → transformers WavLMModel name; ``{i}``: layer index. Exact and total: every
# parameter of either side has one entry (see ``unispeech_wavlm_keys``).
WAVLM_KEY_MAP: list[tuple[str, str]] = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.weight", r"feature_extractor.conv_layers.\1.conv.weight"),
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.bias", r"feature_extractor.conv_layers.\1.conv.bias"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)",
     r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"mask_emb", r"masked_spec_embed"),
    (r"encoder\.pos_conv\.0\.weight_g", r"encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"encoder\.pos_conv\.0\.weight_v", r"encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"encoder\.pos_conv\.0\.bias", r"encoder.pos_conv_embed.conv.bias"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(k_proj|v_proj|q_proj|out_proj)\.(weight|bias)",
     r"encoder.layers.\1.attention.\2.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn\.grep_linear\.(weight|bias)",
     r"encoder.layers.\1.attention.gru_rel_pos_linear.\2"),
    (r"encoder\.layers\.(\d+)\.self_attn\.grep_a", r"encoder.layers.\1.attention.gru_rel_pos_const"),
    (r"encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.weight",
     r"encoder.layers.\1.attention.rel_attn_embed.weight"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
]
_COMPILED = [(re.compile(src + r"\Z"), dst) for src, dst in WAVLM_KEY_MAP]


def unispeech_to_transformers(key: str) -> str | None:
    """The transformers ``WavLMModel`` name of a UniSpeech WavLM parameter name, or None when none fits."""
    for pattern, replacement in _COMPILED:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return None


def _transformers_weight_norm_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers WavLM state dict with the positional conv's weight norm in the parametrization names: older
    saves (``microsoft/wavlm-large``'s ``pytorch_model.bin``) store ``weight_g`` / ``weight_v``."""
    renamed = {}
    for key, value in state.items():
        key = key.removeprefix("wavlm.")
        key = key.replace("pos_conv_embed.conv.weight_g", "pos_conv_embed.conv.parametrizations.weight.original0")
        key = key.replace("pos_conv_embed.conv.weight_v", "pos_conv_embed.conv.parametrizations.weight.original1")
        renamed[key] = value
    return renamed


# -- the ECAPA-TDNN head -----------------------------------------------------------------------------------------


@dataclass
class EcapaConfig:
    """``ECAPA_TDNN_SMALL``'s sizes (defaults = the released ``wavlm_large`` head). ``num_features``: the hidden
    states mixed by ``feature_weight`` (WavLM layers + 1)."""

    feat_dim: int = 1024
    channels: int = 512
    mfa_channels: int = 1536  # fixed at 1536 upstream, whatever ``channels`` is
    emb_dim: int = 256
    res2net_scale: int = 8
    se_channels: int = 128
    attention_channels: int = 128
    num_features: int = 25

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"EcapaConfig.{name} must be a positive integer, got {value!r}")
        if self.channels % self.res2net_scale:
            raise ValueError(f"EcapaConfig.channels {self.channels} must be divisible by res2net_scale "
                             f"{self.res2net_scale}")


class ConvReluBn(nn.Module):
    """Conv1d (zero "same" padding) → ReLU → BatchNorm: the head's unit, in UniSpeech's order."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size - 1) // 2,
                              dilation=dilation)
        self.bn = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class Res2ConvReluBn(nn.Module):
    """Res2Net: ``scale`` channel groups; group i (< scale-1) is conv-relu-bn'd after adding the previous group's
    output; the last group passes through unchanged and is appended last."""

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int):
        super().__init__()
        self.width = channels // scale
        padding = dilation * (kernel_size - 1) // 2
        self.convs = nn.ModuleList(nn.Conv1d(self.width, self.width, kernel_size, padding=padding, dilation=dilation)
                                   for _ in range(scale - 1))
        self.bns = nn.ModuleList(nn.BatchNorm1d(self.width) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.split(x, self.width, dim=1)
        out, y = [], None
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            y = groups[i] if i == 0 else y + groups[i]
            y = bn(F.relu(conv(y)))
            out.append(y)
        out.append(groups[len(self.convs)])
        return torch.cat(out, dim=1)


class SqueezeExcite(nn.Module):
    """Channel gates from the time mean (plain mean: one clip, no padding)."""

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.linear1 = nn.Linear(channels, bottleneck)
        self.linear2 = nn.Linear(bottleneck, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(dim=2)))))
        return x * gate.unsqueeze(2)


class SERes2Block(nn.Module):
    """1×1 conv-relu-bn → Res2Net → 1×1 conv-relu-bn → squeeze-excite, plus the input."""

    def __init__(self, channels: int, scale: int, se_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        # Attribute names are the checkpoint's (UniSpeech's class names).
        self.Conv1dReluBn1 = ConvReluBn(channels, channels)
        self.Res2Conv1dReluBn = Res2ConvReluBn(channels, scale, kernel_size, dilation)
        self.Conv1dReluBn2 = ConvReluBn(channels, channels)
        self.SE_Connect = SqueezeExcite(channels, se_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.SE_Connect(self.Conv1dReluBn2(self.Res2Conv1dReluBn(self.Conv1dReluBn1(x))))


class AttentiveStatsPool(nn.Module):
    """Per-channel attention over time → weighted mean and std (B, 2C); the std's variance is floored at 1e-9."""

    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.linear1 = nn.Conv1d(channels, attention_channels, 1)
        self.linear2 = nn.Conv1d(attention_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.softmax(self.linear2(torch.tanh(self.linear1(x))), dim=2)
        mean = (alpha * x).sum(dim=2)
        var = (alpha * x.pow(2)).sum(dim=2) - mean.pow(2)
        return torch.cat([mean, var.clamp(min=1e-9).sqrt()], dim=1)


class WavLMEcapa(nn.Module):
    """16 kHz waveform (samples,) → (emb_dim,) speaker embedding (not normalised; compare with cosine).

    Submodule names are the checkpoint's except ``feature_extract`` (transformers' WavLM, whose names differ from
    UniSpeech's: :func:`WavLMEcapa.load_unispeech_state` maps them)."""

    def __init__(self, ecapa: EcapaConfig | None = None, wavlm: WavLMConfig | None = None):
        super().__init__()
        self.ecapa_config = c = ecapa or EcapaConfig()
        self.wavlm_config = wavlm or wavlm_large_config()
        if self.wavlm_config.num_hidden_layers + 1 != c.num_features:
            raise ValueError(f"EcapaConfig.num_features {c.num_features} must be the WavLM layers + 1 "
                             f"({self.wavlm_config.num_hidden_layers + 1})")
        if self.wavlm_config.hidden_size != c.feat_dim:
            raise ValueError(f"EcapaConfig.feat_dim {c.feat_dim} must be WavLM's hidden_size "
                             f"{self.wavlm_config.hidden_size}")
        self.feature_extract = WavLMModel(self.wavlm_config)
        self.feature_weight = nn.Parameter(torch.zeros(c.num_features))
        self.instance_norm = nn.InstanceNorm1d(c.feat_dim)  # no affine, no running stats: no keys
        self.layer1 = ConvReluBn(c.feat_dim, c.channels, kernel_size=5)
        self.layer2 = SERes2Block(c.channels, c.res2net_scale, c.se_channels, kernel_size=3, dilation=2)
        self.layer3 = SERes2Block(c.channels, c.res2net_scale, c.se_channels, kernel_size=3, dilation=3)
        self.layer4 = SERes2Block(c.channels, c.res2net_scale, c.se_channels, kernel_size=3, dilation=4)
        self.conv = nn.Conv1d(c.channels * 3, c.mfa_channels, 1)
        self.pooling = AttentiveStatsPool(c.mfa_channels, c.attention_channels)
        self.bn = nn.BatchNorm1d(c.mfa_channels * 2)
        self.linear = nn.Linear(c.mfa_channels * 2, c.emb_dim)

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """(samples,) → (1, feat_dim, frames): the softmax-weighted sum of WavLM's hidden states, instance-normed."""
        wav = F.layer_norm(wav, wav.shape)  # WavLM-Large's input normalisation (eps 1e-5)
        hidden = self.feature_extract(wav.unsqueeze(0), output_hidden_states=True).hidden_states
        weights = F.softmax(self.feature_weight, dim=-1)
        x = (weights.view(-1, 1, 1, 1) * torch.stack(hidden, dim=0)).sum(dim=0)
        return self.instance_norm(x.transpose(1, 2) + 1e-6)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 1:
            raise ValueError(f"expected one 16 kHz waveform (samples,), got shape {tuple(wav.shape)}")
        x = self.features(wav)
        out1 = self.layer1(x)
        out2 = self.layer2(out1)
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        x = F.relu(self.conv(torch.cat([out2, out3, out4], dim=1)))
        return self.linear(self.bn(self.pooling(x)))[0]

    # -- the public checkpoint's names ----------------------------------------------------------------------------

    def load_unispeech_state(self, state: dict[str, torch.Tensor], source: str | Path,
                             wavlm_state: dict[str, torch.Tensor] | None = None,
                             wavlm_source: str | Path | None = None) -> None:
        """Load a UniSpeech checkpoint's ``model`` dict strictly. ``state`` holds the head, and WavLM under
        ``feature_extract.model.`` unless ``wavlm_state`` gives WavLM separately (UniSpeech names without prefix,
        from ``wavlm_source``). Raises :class:`CheckpointError` naming the file and the keys that do not fit."""
        head = {k: v for k, v in state.items() if not k.startswith(WAVLM_PREFIX)}
        inner = {k[len(WAVLM_PREFIX):]: v for k, v in state.items() if k.startswith(WAVLM_PREFIX)}
        if inner and wavlm_state is not None:
            raise CheckpointError(f"{source} already holds WavLM ({WAVLM_PREFIX}*); do not pass {wavlm_source} too")
        if not inner:
            if wavlm_state is None:
                raise CheckpointError(
                    f"{source} holds no WavLM weights ({WAVLM_PREFIX}*): pass WavLM-Large separately "
                    f"(UniSpeech {WAVLM_LARGE_NAME} or a transformers microsoft/wavlm-large folder)"
                )
            inner, source_of_inner = wavlm_state, wavlm_source
        else:
            source_of_inner = source
        mapped, unknown = {}, []
        for key, value in inner.items():
            name = unispeech_to_transformers(key)
            if name is None:
                unknown.append(key)
            else:
                mapped[f"feature_extract.{name}"] = value
        if unknown:
            shown = unknown if source_of_inner != source else [WAVLM_PREFIX + k for k in unknown]
            raise CheckpointError(f"{source_of_inner}: unexpected WavLM keys {sorted(shown)[:20]}")
        self._load_strict({**head, **mapped}, source)

    def load_transformers_wavlm(self, wavlm_state: dict[str, torch.Tensor], source: str | Path) -> None:
        """Load WavLM from a transformers ``WavLMModel`` state dict (strict)."""
        state = _transformers_weight_norm_names(wavlm_state)
        result = self.feature_extract.load_state_dict(state, strict=False)
        _raise_mismatch(source, result.missing_keys, result.unexpected_keys, _wavlm_shape_errors(self, state))

    def _load_strict(self, state: dict[str, torch.Tensor], source: str | Path) -> None:
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [f"{k}: {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model"
                  for k in own if k in state and state[k].shape != own[k].shape]
        _raise_mismatch(source, [_public_name(k) for k in missing], [_public_name(k) for k in unexpected], shapes)
        self.load_state_dict(state, strict=True)


def _wavlm_shape_errors(model: WavLMEcapa, state: dict[str, torch.Tensor]) -> list[str]:
    own = model.feature_extract.state_dict()
    return [f"{k}: {tuple(v.shape)} in the file, {tuple(own[k].shape)} in the model"
            for k, v in state.items() if k in own and v.shape != own[k].shape]


def _raise_mismatch(source: str | Path, missing: Sequence[str], unexpected: Sequence[str], shapes: Sequence[str]):
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"missing keys {sorted(missing)[:20]}" + (f" (+{len(missing) - 20} more)" if len(missing) > 20
                                                                else ""))
    if unexpected:
        parts.append(f"unexpected keys {sorted(unexpected)[:20]}"
                     + (f" (+{len(unexpected) - 20} more)" if len(unexpected) > 20 else ""))
    if shapes:
        parts.append(f"shape mismatches {shapes[:10]}")
    raise CheckpointError(f"{source} does not fit WavLM-Large + ECAPA-TDNN: " + "; ".join(parts))


def _public_name(key: str) -> str:
    """A model key as the checkpoint would spell it (WavLM keys back in UniSpeech names), for error messages."""
    if not key.startswith("feature_extract."):
        return key
    inner = key[len("feature_extract."):]
    name = transformers_to_unispeech(inner)
    return WAVLM_PREFIX + name if name is not None else key


def transformers_to_unispeech(key: str) -> str | None:
    """The UniSpeech name of a transformers ``WavLMModel`` parameter (inverse of :func:`unispeech_to_transformers`),
    found by trying each map entry on the candidate names its pattern implies."""
    for src, dst in WAVLM_KEY_MAP:
        groups = _match_template(dst, key)
        if groups is None:
            continue
        candidate = _fill_pattern(src, groups)
        if candidate is not None and unispeech_to_transformers(candidate) == key:
            return candidate
    return None


def _match_template(template: str, key: str) -> list[str] | None:
    """Match ``key`` against a replacement template with ``\\N`` back-references; the captured values in order."""
    pieces = re.split(r"\\(\d)", template)
    regex = "".join(re.escape(p) if i % 2 == 0 else r"([A-Za-z0-9_]+)" for i, p in enumerate(pieces))
    m = re.fullmatch(regex, key)
    if m is None:
        return None
    order = [int(p) for i, p in enumerate(pieces) if i % 2 == 1]
    values: dict[int, str] = {}
    for group, value in zip(order, m.groups()):
        if values.setdefault(group, value) != value:
            return None
    return [values[i] for i in sorted(values)]


def _fill_pattern(pattern: str, groups: list[str]) -> str | None:
    """Fill a source regex's capture groups with ``groups`` and unescape it into a plain key."""
    it = iter(groups)
    try:
        filled = re.sub(r"\((?:[^()]*)\)", lambda _: next(it), pattern)
    except StopIteration:
        return None
    return filled.replace("\\.", ".")


# -- files -------------------------------------------------------------------------------------------------------


def _torch_load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {e}") from e


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of a UniSpeech speaker-verification checkpoint."""
    path = Path(path)
    blob = _torch_load(path)
    if not isinstance(blob, dict) or not isinstance(blob.get("model"), dict):
        raise CheckpointError(f"{path}: expected a UniSpeech checkpoint (a dict whose 'model' is the state dict)")
    return blob["model"]


def read_wavlm(path: str | Path) -> tuple[dict[str, torch.Tensor], str, WavLMConfig | None]:
    """WavLM weights from a second file: UniSpeech ``WavLM-Large.pt`` → (state, "unispeech", None); a transformers
    WavLM folder → (state, "transformers", its config)."""
    path = Path(path)
    if path.is_dir():
        config_file = path / "config.json"
        try:
            config = json.loads(config_file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: not a transformers WavLM folder ({config_file}: {e})") from e
        if config.get("model_type") != "wavlm":
            raise CheckpointError(f"{config_file}: model_type is {config.get('model_type')!r}, expected 'wavlm'")
        weights = path / "model.safetensors"
        if weights.is_file():
            from safetensors.torch import load_file

            state = load_file(str(weights))
        elif (path / "pytorch_model.bin").is_file():
            state = _torch_load(path / "pytorch_model.bin")
        else:
            raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin")
        return state, "transformers", WavLMConfig.from_pretrained(str(path), local_files_only=True)
    blob = _torch_load(path)
    if not isinstance(blob, dict) or not isinstance(blob.get("model"), dict):
        raise CheckpointError(f"{path}: expected UniSpeech {WAVLM_LARGE_NAME} (a dict with 'cfg' and 'model')")
    return blob["model"], "unispeech", None


def config_from_state(state: dict[str, torch.Tensor], path: str | Path) -> tuple[EcapaConfig, dict]:
    """Head sizes and WavLM sizes read off a checkpoint's shapes, so a smaller (test) model in the same layout
    loads too; the released checkpoint gives the defaults. Returns the ECAPA config and WavLMConfig overrides."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise CheckpointError(f"{path}: missing key {key!r} (not a UniSpeech ECAPA-TDNN checkpoint)")
        return tuple(state[key].shape)

    channels, feat_dim, _ = shape("layer1.conv.weight")
    mfa = shape("conv.weight")[0]
    convs = sum(1 for k in state if re.fullmatch(r"layer2\.Res2Conv1dReluBn\.convs\.\d+\.weight", k))
    ecapa = EcapaConfig(
        feat_dim=feat_dim, channels=channels, mfa_channels=mfa, emb_dim=shape("linear.weight")[0],
        res2net_scale=convs + 1, se_channels=shape("layer2.SE_Connect.linear1.weight")[0],
        attention_channels=shape("pooling.linear1.weight")[0], num_features=shape("feature_weight")[0],
    )
    return ecapa, _wavlm_overrides(state, ecapa, path)


def _wavlm_overrides(state: dict[str, torch.Tensor], ecapa: EcapaConfig, path: str | Path) -> dict:
    """WavLM sizes from the ``feature_extract.model.`` keys (empty when the checkpoint holds no WavLM)."""
    inner = {k[len(WAVLM_PREFIX):]: v for k, v in state.items() if k.startswith(WAVLM_PREFIX)}
    if not inner:
        return {}
    layers = ecapa.num_features - 1
    convs = sorted({int(m.group(1)) for k in inner if (m := re.match(r"feature_extractor\.conv_layers\.(\d+)\.0", k))})
    overrides = dict(hidden_size=ecapa.feat_dim, num_hidden_layers=layers)
    if convs:
        if convs != list(range(len(wavlm_large_config().conv_dim))):
            raise CheckpointError(f"{path}: WavLM has conv layers {convs}, expected WavLM-Large's 7 (0..6)")
        weights = [inner[f"feature_extractor.conv_layers.{i}.0.weight"] for i in convs]
        overrides["conv_dim"] = tuple(w.shape[0] for w in weights)
        overrides["conv_kernel"] = tuple(w.shape[2] for w in weights)
    if "encoder.layers.0.fc1.weight" in inner:
        overrides["intermediate_size"] = inner["encoder.layers.0.fc1.weight"].shape[0]
    if "encoder.layers.0.self_attn.grep_a" in inner:
        overrides["num_attention_heads"] = inner["encoder.layers.0.self_attn.grep_a"].shape[1]
    if "encoder.layers.0.self_attn.relative_attention_bias.weight" in inner:
        overrides["num_buckets"] = inner["encoder.layers.0.self_attn.relative_attention_bias.weight"].shape[0]
    if "encoder.pos_conv.0.weight_v" in inner:
        v = inner["encoder.pos_conv.0.weight_v"]
        overrides["num_conv_pos_embeddings"] = v.shape[2]
        overrides["num_conv_pos_embedding_groups"] = v.shape[0] // v.shape[1]
    return overrides


def load_wavlm_ecapa(checkpoint: str | Path, wavlm: str | Path | None = None, only_if_missing: bool = False
                     ) -> WavLMEcapa:
    """The model of a UniSpeech checkpoint (``wavlm_large_finetune.pth``), in eval mode, every key used.

    ``wavlm``: WavLM-Large from a second file, for a checkpoint that holds only the head (UniSpeech
    ``WavLM-Large.pt`` or a transformers WavLM folder); passing it for a checkpoint that holds WavLM is an error,
    unless ``only_if_missing`` (a file found next to the checkpoint, used only when needed)."""
    checkpoint = Path(checkpoint)
    state = read_checkpoint(checkpoint)
    has_wavlm = any(k.startswith(WAVLM_PREFIX) for k in state)
    if has_wavlm and only_if_missing:
        wavlm = None
    if has_wavlm and wavlm is not None:
        raise CheckpointError(f"{checkpoint} already holds WavLM ({WAVLM_PREFIX}*); do not pass {wavlm} too")
    ecapa, overrides = config_from_state(state, checkpoint)
    if has_wavlm:
        model = WavLMEcapa(ecapa, wavlm_large_config(**overrides))
        model.load_unispeech_state(state, checkpoint)
        return model.eval()
    if wavlm is None:
        raise CheckpointError(
            f"{checkpoint} holds no WavLM weights ({WAVLM_PREFIX}*): put UniSpeech {WAVLM_LARGE_NAME} or a "
            "transformers microsoft/wavlm-large folder next to it"
        )
    wavlm = Path(wavlm)
    wavlm_state, kind, wavlm_config = read_wavlm(wavlm)
    if kind == "unispeech":
        prefixed = {WAVLM_PREFIX + k: v for k, v in wavlm_state.items()}
        model = WavLMEcapa(ecapa, wavlm_large_config(**_wavlm_overrides(prefixed, ecapa, wavlm)))
        model.load_unispeech_state(state, checkpoint, wavlm_state, wavlm)
        return model.eval()
    model = WavLMEcapa(ecapa, wavlm_config)
    model.load_transformers_wavlm(wavlm_state, wavlm)
    wavlm_part = {f"feature_extract.{k}": v for k, v in model.feature_extract.state_dict().items()}
    model._load_strict({**state, **wavlm_part}, checkpoint)
    return model.eval()


def find_unispeech_files(path: str | Path) -> tuple[Path, Path | None] | None:
    """(checkpoint, WavLM file or None) when ``path`` is a UniSpeech checkpoint (``*.pth`` / ``*.pt`` file) or a
    folder holding ``wavlm_large_finetune.pth``; None otherwise. In a folder, the WavLM weights (used only if the
    checkpoint lacks them: ``load_wavlm_ecapa(..., only_if_missing=True)``) are ``WavLM-Large.pt`` or a subfolder
    whose ``config.json`` says ``model_type: wavlm``."""
    path = Path(path)
    if path.is_file():
        return (path, None) if path.suffix in (".pth", ".pt") else None
    checkpoint = path / CHECKPOINT_NAME
    if not checkpoint.is_file():
        return None
    if (path / WAVLM_LARGE_NAME).is_file():
        return checkpoint, path / WAVLM_LARGE_NAME
    for sub in sorted(p for p in path.iterdir() if (p / "config.json").is_file()):
        try:
            if json.loads((sub / "config.json").read_text()).get("model_type") == "wavlm":
                return checkpoint, sub
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    return checkpoint, None
