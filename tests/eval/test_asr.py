"""ASR backends: the built-in tiny.en on espeak-ng speech, a random transformers Whisper, and open_asr's dispatch."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
import torch

from qtts.audio.io import load_audio
from qtts.eval.asr import (
    ASR_SAMPLE_RATE,
    ASRError,
    FasterWhisperASR,
    TransformersWhisperASR,
    default_model_path,
    open_asr,
    to_asr_rate,
)
from qtts.eval.scoring import score_utterance, summarize

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call me tomorrow morning at the office.",
    "It is a beautiful day for a walk in the park.",
]


def espeak(text: str, path) -> tuple[torch.Tensor, int]:
    binary = shutil.which("espeak-ng")
    if binary is None:
        pytest.skip("espeak-ng not installed")
    subprocess.run([binary, "-b", "1", "-v", "en-us", "-s", "150", "-w", str(path)], input=text.encode(), check=True)
    wav, sr = load_audio(path, sample_rate=None)  # espeak writes 22.05 kHz: exercises the resampling path
    return wav, sr


@pytest.fixture(scope="module")
def default_asr():
    return open_asr(None, cpu_threads=2)


def test_to_asr_rate_resamples_and_downmixes():
    wav = torch.randn(2, 22_050)
    out = to_asr_rate(wav, 22_050)
    assert out.dim() == 1 and out.dtype == torch.float32
    assert abs(out.shape[0] - ASR_SAMPLE_RATE) <= 1
    with pytest.raises(ValueError, match="shape"):
        to_asr_rate(torch.zeros(1, 1, 10), 16_000)


def test_default_asr_transcribes_espeak_english(default_asr, tmp_path):
    assert isinstance(default_asr, FasterWhisperASR)
    assert default_asr.path == default_model_path() and (default_asr.path / "model.bin").is_file()
    audio = [espeak(s, tmp_path / f"{i}.wav") for i, s in enumerate(SENTENCES)]
    start = time.perf_counter()
    hyps = default_asr.transcribe_at([w for w, _ in audio], audio[0][1], "english")
    elapsed = time.perf_counter() - start
    scores = [score_utterance(ref, hyp, "en") for ref, hyp in zip(SENTENCES, hyps)]
    summary = summarize(scores)
    for ref, hyp, s in zip(SENTENCES, hyps, scores):
        print(f"WER {s.rate:.3f}  ref={ref!r}  hyp={hyp!r}")
    print(f"mean WER {summary.mean_rate_x100:.1f}% over {summary.count} utterances, ASR {elapsed:.1f} s")
    assert len(hyps) == len(SENTENCES)
    assert summary.mean_rate_x100 < 50


def test_default_asr_is_english_only(default_asr):
    with pytest.raises(ASRError, match=r"English-only.*--asr PATH"):
        default_asr.transcribe([torch.zeros(ASR_SAMPLE_RATE)], "zh")


def test_transcribe_wants_1d_16k(default_asr):
    with pytest.raises(ValueError, match="1-D"):
        default_asr.transcribe([torch.zeros(1, ASR_SAMPLE_RATE)], "en")


# --- transformers backend on a tiny random Whisper ---------------------------------------------------------------


def _bytes_to_unicode() -> list[str]:
    """GPT-2's byte → printable character table (Whisper's byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_whisper_dir(tmp_path_factory):
    """A random WhisperForConditionalGeneration with a byte-level tokenizer (no merges) and a feature extractor,
    saved as a transformers folder, all built offline."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    folder = tmp_path_factory.mktemp("tiny-whisper")
    vocab = {ch: i for i, ch in enumerate(_bytes_to_unicode())}
    for tok in SPECIALS:
        vocab[tok] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = WhisperTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), additional_special_tokens=SPECIALS[1:]
    )
    processor = WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer)

    ids = {tok: vocab[tok] for tok in SPECIALS}
    config = WhisperConfig(
        vocab_size=len(vocab),
        num_mel_bins=80,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=64,
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
        decoder_start_token_id=ids["<|startoftranscript|>"],
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    gen = model.generation_config
    gen.is_multilingual = True
    gen.lang_to_id = {"<|en|>": ids["<|en|>"], "<|de|>": ids["<|de|>"]}
    gen.task_to_id = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
    gen.no_timestamps_token_id = ids["<|notimestamps|>"]
    gen.decoder_start_token_id = ids["<|startoftranscript|>"]
    gen.forced_decoder_ids = None
    gen.suppress_tokens = []
    gen.begin_suppress_tokens = []
    gen.max_length = 32
    gen._from_model_config = False  # else generate() rebuilds it from the model config, dropping lang_to_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_transformers_backend_on_random_whisper(tiny_whisper_dir):
    asr = open_asr(str(tiny_whisper_dir), max_new_tokens=8)
    assert isinstance(asr, TransformersWhisperASR)
    wavs = [torch.randn(ASR_SAMPLE_RATE) * 0.1, torch.randn(ASR_SAMPLE_RATE // 2) * 0.1]
    features, mask = asr.features(wavs)
    assert features.shape == (2, 80, 3000) and mask.shape == (2, 3000)  # padded to the 30 s window
    seen: list[list[list[int]]] = []  # the decoder's input ids on its first step: the forced prompt

    def first_step(module, args, kwargs):
        if not seen:
            seen.append(kwargs["input_ids"].tolist())

    handle = asr.model.model.decoder.register_forward_pre_hook(first_step, with_kwargs=True)
    try:
        texts = asr.transcribe(wavs, "english")
    finally:
        handle.remove()
    ids = asr.processor.tokenizer.convert_tokens_to_ids
    # start, the requested language, transcribe, no timestamps
    prompt = [ids(t) for t in ("<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>")]
    assert seen == [[prompt, prompt]]
    assert len(texts) == 2 and all(isinstance(t, str) and "<|" not in t for t in texts)
    assert asr.transcribe([], "en") == []


# --- dispatch ----------------------------------------------------------------------------------------------------


def test_open_asr_missing_folder(tmp_path):
    with pytest.raises(ASRError, match=r"does not exist"):
        open_asr(str(tmp_path / "nope"))


def test_open_asr_unknown_folder_names_it(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(ASRError, match=rf"{tmp_path}.*not a Whisper model folder"):
        open_asr(str(tmp_path))


def test_open_asr_empty_folder_names_it(tmp_path):
    with pytest.raises(ASRError, match=rf"{tmp_path}.*not a Whisper model folder"):
        open_asr(tmp_path)


def test_open_asr_ctranslate2_folder(tmp_path):
    """A folder holding model.bin goes to faster-whisper (the default's files, linked into another folder)."""
    for f in default_model_path().iterdir():
        (tmp_path / f.name).symlink_to(f)
    asr = open_asr(tmp_path, cpu_threads=1)
    assert isinstance(asr, FasterWhisperASR) and asr.path == tmp_path and not asr.multilingual
    with pytest.raises(ASRError, match=rf"{tmp_path}.*English-only"):
        asr.transcribe([torch.zeros(ASR_SAMPLE_RATE)], "de")
