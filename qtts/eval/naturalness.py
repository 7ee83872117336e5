"""Naturalness (MOS) predictors behind one small interface: DNSMOS from a pip package, or UTMOS from a local export.

:func:`open_mos` picks the predictor:

* ``None`` (or ``"dnsmos"``) → Microsoft's DNSMOS P.835 (SIG, BAK, OVRL) and P.808 models, whose ONNX files ship
  inside the pip package ``speechmos`` (Microsoft, MIT), run by onnxruntime on the CPU. The headline ``mos`` is
  OVRL, the overall quality that speech-enhancement and TTS papers quote as "DNSMOS"; ``sig``, ``bak`` and ``p808``
  are kept as details. DNSMOS rates noise and distortion rather than prosody, so it is a quality check, not a
  substitute for a naturalness listening test.
* a TorchScript file (``torch.jit.save``) → :class:`TorchScriptMOS`, e.g. UTMOS22 "strong" (SpeechMOS's
  ``utmos22_strong`` predictor, a wav2vec2-base SSL model with a BLSTM head). The released UTMOS weights (UTMOS22's
  Lightning checkpoint, SpeechMOS's state dict, UTMOSv2's SSL + spectrogram ensemble) are parameters without the
  model's code; an export carries its graph, so it runs here without that code. SpeechMOS 1.2.0's model neither
  scripts nor traces as it is (weight-norm hooks, a ``float.is_integer`` length test, a padding branch that depends
  on the length): exporting it takes those made TorchScript-friendly, then ``torch.jit.script``.
  The contract: forward takes one float32 ``(batch, samples)`` tensor of 16 kHz audio in [-1, 1], optionally
  followed by the sample rate as an ``int`` (SpeechMOS's ``forward(wave, sr)``: it gets 16000), and returns
  ``(batch,)`` or ``(batch, 1)`` scores, the headline ``mos``. ONNX exports are not supported (they would add the
  ``onnx`` package to export and test them).

Clips go in as 1-D float tensors at 16 kHz (:func:`qtts.eval.asr.to_asr_rate` makes them). Nothing is downloaded.
"""

from __future__ import annotations

import math
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from qtts.eval.asr import ASR_SAMPLE_RATE

MOS_SAMPLE_RATE = ASR_SAMPLE_RATE  # DNSMOS and UTMOS both take 16 kHz audio


class MOSError(ValueError):
    """A model that cannot be opened, or a clip a predictor cannot score."""


def _check_clip(i: int, wav: torch.Tensor) -> np.ndarray:
    """Clip ``i`` as a float32 numpy array in [-1, 1]: 1-D, not empty, finite. Samples beyond ±1 are clipped, as
    writing the clip to a 16-bit wav file (what these models were trained on) would do."""
    if wav.dim() != 1:
        raise MOSError(f"wav {i}: expected a 1-D tensor at 16 kHz (see eval.asr.to_asr_rate), got {tuple(wav.shape)}")
    if wav.numel() == 0:
        raise MOSError(f"wav {i}: empty clip")
    audio = wav.detach().float().cpu().numpy()
    if not np.isfinite(audio).all():
        raise MOSError(f"wav {i}: holds NaN or infinite samples")
    return np.clip(audio, -1.0, 1.0)


class MOSPredictor(ABC):
    """A MOS predictor: 16 kHz mono waveforms in, one dict of scores per waveform out (``"mos"`` the headline)."""

    name: str

    @abstractmethod
    def score(self, wavs: Sequence[torch.Tensor]) -> list[dict[str, float]]:
        """Score 1-D float tensors at 16 kHz: per clip ``{"mos": headline, ...details}``."""


class DNSMOS(MOSPredictor):
    """DNSMOS P.835 + P.808 with the ONNX models and the scoring of the ``speechmos`` package.

    Scoring is the reference one (Microsoft's ``dnsmos_local.py``, which ``speechmos`` follows): a clip shorter than
    the models' 9.01 s window is repeated (doubled) until it fills it; a clip of T seconds ≥ 9.01 is scored on
    ``max(1, floor(T) - 9)`` windows of 9.01 s starting every second, and the window scores are averaged (the
    reference's count, so up to 2 s at the end go unscored). SIG, BAK and OVRL are the
    P.835 model's raw outputs mapped by its published polynomials; P.808 is the second model's output as is.
    """

    name = "dnsmos"

    def __init__(self, personalized: bool = False, num_threads: int = 1):
        """``personalized``: the model that also penalises interfering talkers (pDNSMOS) for SIG/BAK/OVRL.
        ``num_threads``: onnxruntime threads per session (0 = onnxruntime's default, all cores)."""
        try:
            import onnxruntime as ort
            from speechmos import dnsmos as dnsmos_module
        except ImportError as e:
            raise MOSError("DNSMOS needs the eval extra (pip install -e '.[eval]': speechmos, onnxruntime)") from e
        root = Path(dnsmos_module.__file__).parent
        primary = root / ("pdnsmos_models" if personalized else "dnsmos_models") / "sig_bak_ovr.onnx"
        p808 = root / "dnsmos_models" / "model_v8.onnx"
        for path in (primary, p808):
            if not path.is_file():
                raise MOSError(f"the speechmos package at {root} lacks its model file {path.name}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        # speechmos.dnsmos.DNSMOS opens its sessions with onnxruntime's defaults (a thread per core): build the
        # object without its __init__ and give it sessions with our thread count; its __call__ does the scoring.
        self._scorer = dnsmos_module.DNSMOS.__new__(dnsmos_module.DNSMOS)
        self._scorer.primary_model_path = str(primary)
        self._scorer.onnx_sess = ort.InferenceSession(str(primary), options, providers=["CPUExecutionProvider"])
        self._scorer.p808_onnx_sess = ort.InferenceSession(str(p808), options, providers=["CPUExecutionProvider"])
        self.personalized = personalized
        if personalized:
            self.name = "dnsmos-personalized"

    def score(self, wavs: Sequence[torch.Tensor]) -> list[dict[str, float]]:
        clips = [_check_clip(i, wav) for i, wav in enumerate(wavs)]  # every clip checked before any is scored
        out = []
        for audio in clips:
            result = self._scorer(audio, MOS_SAMPLE_RATE, self.personalized)
            scores = {"mos": float(result["ovrl_mos"]), "sig": float(result["sig_mos"]),
                      "bak": float(result["bak_mos"]), "p808": float(result["p808_mos"])}  # fmt: skip
            out.append(scores)
        return out


class TorchScriptMOS(MOSPredictor):
    """A MOS model exported as TorchScript (see the module docstring for the input contract), scored one clip at a
    time so that no clip is padded by another's length."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise MOSError(f"MOS model file {self.path} does not exist (models are only loaded from local files)")
        if not zipfile.is_zipfile(self.path):  # torch.jit.save writes a zip archive
            raise MOSError(f"{self.path} is not a TorchScript module (expected a torch.jit.save archive)")
        try:
            self.module = torch.jit.load(str(self.path), map_location="cpu").eval()
        except RuntimeError as e:
            raise MOSError(
                f"{self.path} is a zip archive but not a TorchScript module (a state dict or checkpoint from "
                "torch.save needs the model's code: export the model with torch.jit.trace or torch.jit.script)"
            ) from e
        arguments = self.module.forward.schema.arguments[1:]  # [0] is self
        if len(arguments) not in (1, 2):
            raise MOSError(f"{self.path}: forward takes {len(arguments)} arguments; expected (wave) or (wave, sr)")
        self._pass_rate = len(arguments) == 2
        self.name = f"torchscript:{self.path}"

    @torch.inference_mode()
    def score(self, wavs: Sequence[torch.Tensor]) -> list[dict[str, float]]:
        clips = [_check_clip(i, wav) for i, wav in enumerate(wavs)]  # every clip checked before any is scored
        out = []
        for i, audio in enumerate(clips):
            wave = torch.from_numpy(audio)[None]
            scores = self.module(wave, MOS_SAMPLE_RATE) if self._pass_rate else self.module(wave)
            if not isinstance(scores, torch.Tensor) or scores.numel() != 1:
                shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
                raise MOSError(f"{self.path}: forward returned {shape} for one clip; expected a (1,) or (1, 1) tensor")
            mos = float(scores.reshape(-1)[0])
            if not math.isfinite(mos):
                raise MOSError(f"{self.path}: returned a non-finite score for wav {i}")
            out.append({"mos": mos})
        return out


def open_mos(source: str | Path | None = None, num_threads: int = 1) -> MOSPredictor:
    """The MOS predictor for ``source``: ``None`` or ``"dnsmos"`` → DNSMOS from the ``speechmos`` package
    (``"dnsmos-personalized"`` → pDNSMOS); a TorchScript file → :class:`TorchScriptMOS`. ``num_threads``: the CPU
    threads of DNSMOS's onnxruntime sessions."""
    if source is None or str(source) == "dnsmos":
        return DNSMOS(num_threads=num_threads)
    if str(source) == "dnsmos-personalized":
        return DNSMOS(personalized=True, num_threads=num_threads)
    path = Path(source)
    if path.is_dir():
        raise MOSError(
            f"{path} is a folder; a MOS model is one TorchScript file (torch.jit.save), e.g. an exported UTMOS"
        )
    return TorchScriptMOS(path)
