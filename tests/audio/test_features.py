import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchaudio

from qtts.audio.features import LogMelSpectrogram, SpeakerMel, kaldi_fbank, reflect_pad
from qtts.audio.io import load_audio
from tests.audio.signals import speech_like

SR = 24_000


def qwen_mel(wav: torch.Tensor) -> torch.Tensor:
    """The released front end exactly as qwen_tts calls it, as (B, frames, 128)."""
    modeling = pytest.importorskip("qwen_tts.core.models.modeling_qwen3_tts")
    mel = modeling.mel_spectrogram(
        wav, n_fft=1024, num_mels=128, sampling_rate=SR, hop_size=256, win_size=1024, fmin=0, fmax=12000
    )
    return mel.transpose(1, 2)


def recordings() -> list[Path]:
    """Real recordings shipped inside gradio (a qwen-tts dependency), when installed."""
    spec = importlib.util.find_spec("gradio")
    if spec is None or spec.origin is None:
        return []
    folder = Path(spec.origin).parent / "media_assets" / "audio"
    return sorted(p for p in folder.glob("*.wav") if p.name in {"recording1.wav", "cantina.wav"})


def test_slaney_filters_equal_librosa():
    librosa = pytest.importorskip("librosa")
    ours = SpeakerMel().fbank
    ref = torch.from_numpy(librosa.filters.mel(sr=SR, n_fft=1024, n_mels=128, fmin=0, fmax=12000))
    assert ours.shape == ref.shape == (128, 513)
    assert (ours - ref).abs().max() < 1e-8


@pytest.mark.parametrize("kind", ["uniform", "gaussian", "speech_like", "quiet", "chirp"])
def test_speaker_mel_matches_qwen_tts(kind):
    gen = torch.Generator().manual_seed(0)
    wav = {
        "uniform": lambda: torch.rand(2, SR, generator=gen) * 1.8 - 0.9,
        "gaussian": lambda: (0.3 * torch.randn(2, SR, generator=gen)).clamp(-1, 1),
        "speech_like": lambda: torch.stack([speech_like(2.0, seed=0), speech_like(2.0, seed=1)]),
        "quiet": lambda: 1e-3 * speech_like(1.0).unsqueeze(0),
        "chirp": lambda: 0.5 * torch.sin(math.pi * 11_000 / 4.0 * (torch.arange(4 * SR) / SR) ** 2).unsqueeze(0),
    }[kind]()
    ours, ref = SpeakerMel()(wav), qwen_mel(wav)
    assert ours.shape == ref.shape == (wav.shape[0], wav.shape[1] // 256, 128)
    assert (ours - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("path", recordings(), ids=lambda p: p.name)
def test_speaker_mel_matches_qwen_tts_on_recordings(path):
    wav, _ = load_audio(path, SR)
    assert (SpeakerMel()(wav) - qwen_mel(wav)).abs().max() <= 1e-5


def test_shapes_and_frame_count():
    mel = SpeakerMel()
    assert mel(torch.zeros(SR)).shape == (SR // 256, 128)
    assert mel(torch.zeros(2, 3, 5000)).shape == (2, 3, 5000 // 256, 128)
    assert mel.num_frames(5000) == 5000 // 256
    assert LogMelSpectrogram(center=True).num_frames(5000) == 5000 // 256 + 1
    assert LogMelSpectrogram(center=True)(torch.zeros(1, 5000)).shape == (1, 5000 // 256 + 1, 128)
    assert dict(mel.state_dict()) == {}  # never adds keys to a model that owns it


def test_general_module_equals_torchaudio_mel():
    wav = speech_like(1.0).unsqueeze(0)
    ours = LogMelSpectrogram(
        n_fft=512, hop_length=128, win_length=400, n_mels=80, f_max=8000, power=2.0, eps=0.0, log=False, center=True
    )
    ref = torchaudio.transforms.MelSpectrogram(
        SR, n_fft=512, hop_length=128, win_length=400, n_mels=80, f_max=8000, power=2.0,
        center=True, pad_mode="reflect", norm="slaney", mel_scale="slaney",
    )(wav).transpose(1, 2)
    assert ours(wav).shape == ref.shape
    torch.testing.assert_close(ours(wav), ref, rtol=1e-4, atol=1e-6)


def test_padded_batch_equals_items_alone():
    mel = SpeakerMel()
    items = [speech_like(1.0, seed=s)[:n] for s, n in ((0, 24_000), (1, 13_001), (2, 700))]
    lengths = torch.tensor([len(x) for x in items])
    batch = torch.stack([F.pad(x, (0, 24_000 - len(x))) for x in items])
    out = mel(batch, lengths)
    for i, x in enumerate(items):
        alone = mel(x)
        assert torch.equal(out[i, : mel.num_frames(len(x))], alone)
    assert torch.equal(mel(batch, torch.full((3,), 24_000)), mel(batch))


def test_reflect_pad():
    x = torch.arange(12.0).view(2, 6)
    assert torch.equal(reflect_pad(x, 2, 3), F.pad(x.unsqueeze(1), (2, 3), mode="reflect").squeeze(1))
    out = reflect_pad(x, 2, 3, torch.tensor([6, 4]))
    assert out[1].tolist()[:9] == [8.0, 7.0, 6.0, 7.0, 8.0, 9.0, 8.0, 7.0, 6.0]
    with pytest.raises(ValueError, match="more than 3 steps"):
        reflect_pad(x, 2, 3, torch.tensor([6, 3]))


def test_mel_is_differentiable():
    wav = speech_like(0.5).unsqueeze(0).requires_grad_()
    LogMelSpectrogram(n_fft=256, hop_length=64, n_mels=40)(wav).mean().backward()
    assert torch.isfinite(wav.grad).all() and wav.grad.abs().sum() > 0


def test_kaldi_fbank():
    wav = speech_like(1.0, sample_rate=16_000)
    feats = kaldi_fbank(wav, 16_000)
    assert feats.shape == (98, 80)  # 25 ms windows every 10 ms, snip_edges
    ref = torchaudio.compliance.kaldi.fbank(wav.unsqueeze(0) * 32768, sample_frequency=16_000, num_mel_bins=80)
    assert torch.equal(feats, ref)
    batch = kaldi_fbank(torch.stack([wav, wav]), 16_000, num_mel_bins=40, subtract_mean=True)
    assert batch.shape == (2, 98, 40) and batch.mean(1).abs().max() < 1e-3
