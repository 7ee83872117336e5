"""A frozen self-supervised speech model (WavLM, HuBERT, wav2vec 2.0) as the codec's semantic teacher.

The codec runs at 24 kHz while these models were trained on 16 kHz audio normalised by their feature
extractor, so the adapter resamples and normalises exactly as that extractor would before taking the
hidden states of one layer (or the mean of several). Weights come from a local folder only: a training
run must never reach the network, and the teacher is reloadable, so checkpoints need not carry it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torchaudio.functional as AF
from torch import nn
from transformers import AutoConfig, AutoModel

# transformers model types that take a raw waveform (``input_values``) and return per-layer hidden states.
SSL_MODEL_TYPES = ("wavlm", "hubert", "wav2vec2", "wav2vec2-conformer", "data2vec-audio", "unispeech",
                   "unispeech-sat")


class SpeechTeacher(nn.Module):
    """wav (B, S) at ``input_sample_rate`` → hidden states (B, T', dim) of ``layer`` of a local SSL model.

    ``layer`` indexes ``output_hidden_states`` (0 = input to the first transformer layer, N = last layer);
    a list averages those layers. Transformer layers after the one that takes the highest requested hidden
    state as input are dropped: that saves their compute and leaves the requested hidden states unchanged
    (keeping that one layer matters for pre-norm models, whose last hidden state is layer-normed).
    ``normalize`` overrides the folder's ``do_normalize``.
    """

    def __init__(self, folder: str, layer: int | list[int] = 6, input_sample_rate: int = 24000,
                 normalize: bool | None = None):
        super().__init__()
        path = Path(folder)
        if not path.is_dir():
            raise FileNotFoundError(f"teacher folder {path} does not exist")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"teacher folder {path} has no config.json (expected a transformers "
                                    f"save_pretrained folder of one of {', '.join(SSL_MODEL_TYPES)})")
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        if config.model_type not in SSL_MODEL_TYPES:
            raise ValueError(f"teacher folder {path} holds a {config.model_type!r} model, not a raw-waveform "
                             f"SSL speech model ({', '.join(SSL_MODEL_TYPES)})")
        extractor = _read_json(path / "preprocessor_config.json")
        self.layers = [layer] if isinstance(layer, int) else list(layer)
        n = config.num_hidden_layers
        if not self.layers or any(not 0 <= i <= n for i in self.layers):
            raise ValueError(f"teacher layer {layer!r} out of range: {path} has hidden states 0..{n}")
        self.model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        if max(self.layers) < n:
            self.model.encoder.layers = self.model.encoder.layers[: max(self.layers) + 1]
        self.model.requires_grad_(False)
        self.input_sample_rate = input_sample_rate
        self.sample_rate = int(extractor.get("sampling_rate", getattr(config, "sampling_rate", 16000)))
        # Without a feature extractor config, follow transformers' rule: layer-norm feature encoders expect it.
        default_normalize = extractor.get("do_normalize", getattr(config, "feat_extract_norm", "") == "layer")
        self.normalize = bool(default_normalize if normalize is None else normalize)
        self.dim = int(config.hidden_size)
        self.eval()

    def train(self, mode: bool = True) -> SpeechTeacher:
        """Stay in eval mode whatever the task does: dropout and layer drop would perturb the targets."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        wav = wav.float()
        if self.input_sample_rate != self.sample_rate:
            wav = AF.resample(wav, self.input_sample_rate, self.sample_rate)
        if self.normalize:  # per utterance, as Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
            wav = (wav - wav.mean(-1, keepdim=True)) / torch.sqrt(wav.var(-1, keepdim=True, unbiased=False) + 1e-7)
        hidden = self.model(wav.to(self.model.dtype), output_hidden_states=True).hidden_states
        return torch.stack([hidden[i] for i in self.layers]).mean(0)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}
