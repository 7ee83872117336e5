"""MOS predictors: DNSMOS (speechmos) on espeak-ng speech, clean against noisy, offline; TorchScript exports."""

from __future__ import annotations

import socket

import pytest
import torch

from qtts.eval.asr import to_asr_rate
from qtts.eval.naturalness import DNSMOS, MOS_SAMPLE_RATE, MOSError, TorchScriptMOS, open_mos
from tests.eval.test_asr import SENTENCES, espeak

pytest.importorskip("speechmos")


@pytest.fixture(scope="module")
def dnsmos():
    return open_mos(None)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[torch.Tensor]:
    folder = tmp_path_factory.mktemp("espeak")
    return [to_asr_rate(*espeak(s, folder / f"{i}.wav")) for i, s in enumerate(SENTENCES[:2])]


def with_noise(wav: torch.Tensor, snr_db: float) -> torch.Tensor:
    noise = torch.randn(wav.shape, generator=torch.Generator().manual_seed(0))
    return wav + noise * (wav.pow(2).mean() / noise.pow(2).mean()).sqrt() * 10 ** (-snr_db / 20)


def test_dnsmos_of_espeak_lies_in_range_and_noise_lowers_it(dnsmos, clips):
    assert isinstance(dnsmos, DNSMOS) and dnsmos.name == "dnsmos"
    clean = dnsmos.score(clips)
    noisy = dnsmos.score([with_noise(w, 0.0) for w in clips])
    for c, n in zip(clean, noisy):
        print(f"clean {c}\nnoisy {n}")
        assert set(c) == {"mos", "sig", "bak", "p808"}
        assert all(1.0 <= v <= 5.0 for v in (*c.values(), *n.values()))
        assert n["mos"] < c["mos"] - 0.5 and n["bak"] < c["bak"]  # white noise at 0 dB is what BAK is about


def test_short_clips_are_tiled_to_the_window(dnsmos, clips):
    """A clip below DNSMOS's 9.01 s window scores as the clip repeated to fill it (the reference scoring)."""
    clip = clips[0]
    assert clip.numel() < 9 * MOS_SAMPLE_RATE
    tiled = clip
    while tiled.numel() < 9.01 * MOS_SAMPLE_RATE:
        tiled = torch.cat([tiled, tiled])
    assert dnsmos.score([clip]) == dnsmos.score([tiled])


def test_long_clips_average_one_second_hops(dnsmos, clips):
    """12.5 s → max(1, floor(12.5) - 9) = 3 windows of 9.01 s at 0, 1 and 2 s (the reference's count: a window at
    3 s would still fit, it is not scored)."""
    long = torch.cat([clips[0], clips[1]] * 4)[: int(12.5 * MOS_SAMPLE_RATE)]
    assert long.numel() == int(12.5 * MOS_SAMPLE_RATE)
    windows = [long[i * MOS_SAMPLE_RATE : i * MOS_SAMPLE_RATE + int(9.01 * MOS_SAMPLE_RATE)] for i in range(3)]
    whole, parts = dnsmos.score([long])[0], dnsmos.score(windows)
    for key in whole:
        assert whole[key] == pytest.approx(sum(p[key] for p in parts) / 3, abs=1e-5)
    assert whole["mos"] != pytest.approx(parts[0]["mos"], abs=1e-5)  # more than the first window counted


def test_out_of_range_samples_are_clipped(dnsmos, clips):
    loud = clips[0] / clips[0].abs().max() * 2.0
    assert dnsmos.score([loud]) == dnsmos.score([loud.clamp(-1, 1)])


def test_bad_clips_name_the_item(dnsmos):
    with pytest.raises(MOSError, match="wav 1: expected a 1-D"):
        dnsmos.score([torch.zeros(16_000), torch.zeros(1, 16_000)])
    with pytest.raises(MOSError, match="wav 0: empty"):
        dnsmos.score([torch.zeros(0)])
    with pytest.raises(MOSError, match="wav 0: .*NaN"):
        dnsmos.score([torch.full((16_000,), float("nan"))])


def test_dnsmos_works_offline(monkeypatch, clips):
    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    scores = open_mos("dnsmos").score(clips[:1])
    assert 1.0 <= scores[0]["mos"] <= 5.0


# --- TorchScript exports (the UTMOS route) -----------------------------------------------------------------------


class TinyMOS(torch.nn.Module):
    """A random stand-in with UTMOS's contract: (batch, samples) 16 kHz → (batch,) scores in (1, 5)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 4, 400, stride=160)
        self.head = torch.nn.Linear(4, 1)

    def mos(self, wave: torch.Tensor) -> torch.Tensor:
        h = self.conv(wave.unsqueeze(1)).abs().mean(-1)
        return 1 + 4 * torch.sigmoid(self.head(h)).squeeze(-1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.mos(wave)


class TinyMOSWithRate(TinyMOS):
    """SpeechMOS's signature: forward(wave, sr); it insists on 16 kHz."""

    def forward(self, wave: torch.Tensor, sr: int) -> torch.Tensor:
        if sr != 16000:
            raise ValueError("16 kHz only")
        return self.mos(wave)


@pytest.mark.parametrize("cls", [TinyMOS, TinyMOSWithRate])
def test_torchscript_mos_scores_each_clip_as_the_module_does(cls, tmp_path):
    torch.manual_seed(0)
    model = cls().eval()
    path = tmp_path / "utmos.pt"
    torch.jit.save(torch.jit.script(model), path)
    predictor = open_mos(path)
    assert isinstance(predictor, TorchScriptMOS) and predictor.name == f"torchscript:{path}"
    wavs = [torch.randn(16_000) * 0.1, torch.randn(8_000) * 0.3, torch.randn(12_345) * 3.0]  # the last is clipped
    scores = predictor.score(wavs)
    with torch.no_grad():
        expected = [float(model.mos(w.clamp(-1, 1)[None])) for w in wavs]
    assert [s["mos"] for s in scores] == pytest.approx(expected, abs=1e-6)
    assert len({round(e, 6) for e in expected}) == 3  # the clips really differ


def test_not_a_torchscript_file_names_it(tmp_path):
    state_dict = tmp_path / "utmos22_strong_step7459_v1.pt"
    torch.save(TinyMOS().state_dict(), state_dict)
    with pytest.raises(MOSError, match=rf"{state_dict}.*not a TorchScript module.*torch.jit"):
        open_mos(state_dict)
    text = tmp_path / "model.onnx"
    text.write_text("not a model")
    with pytest.raises(MOSError, match=rf"{text} is not a TorchScript module"):
        open_mos(text)
    with pytest.raises(MOSError, match=rf"{tmp_path / 'nope.pt'} does not exist"):
        open_mos(tmp_path / "nope.pt")
    with pytest.raises(MOSError, match=rf"{tmp_path} is a folder"):
        open_mos(tmp_path)


def test_torchscript_with_a_wrong_output_names_it(tmp_path):
    class Frames(torch.nn.Module):
        def forward(self, wave: torch.Tensor) -> torch.Tensor:
            return wave[:, :10]

    path = tmp_path / "frames.pt"
    torch.jit.save(torch.jit.script(Frames()), path)
    with pytest.raises(MOSError, match=rf"{path}: forward returned \(1, 10\)"):
        open_mos(path).score([torch.zeros(100)])


def test_personalized_dnsmos(dnsmos, clips):
    """pDNSMOS: its own P.835 model and polynomials for SIG/BAK/OVRL, the same P.808 model."""
    personal = open_mos("dnsmos-personalized")
    assert personal.name == "dnsmos-personalized"
    p, d = personal.score(clips[:1])[0], dnsmos.score(clips[:1])[0]
    assert all(1.0 <= v <= 5.0 for v in p.values())
    assert p["p808"] == pytest.approx(d["p808"], abs=1e-6) and p["mos"] != pytest.approx(d["mos"], abs=1e-3)
