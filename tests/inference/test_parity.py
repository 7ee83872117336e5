"""Greedy synthesis equals qwen-tts's, code for code and sample for sample, for every voice of the released
models, on tiny random folders in the released layout that both load."""

import numpy as np
import pytest
import torch

from qtts.inference import Synthesizer
from qtts.models.random_release import tiny_codec_config, write_random_release
from qtts.models.talker import tiny

Qwen3TTSModel = pytest.importorskip("qwen_tts").Qwen3TTSModel

GREEDY = dict(do_sample=False, subtalker_dosample=False)
FRAMES = 45  # long enough for the repetition penalty (which still applies under greedy) to change choices
SR = 24_000


def folder_for(tmp_path_factory, kind: str, eos_scale: float) -> str:
    folder = tmp_path_factory.mktemp(f"{kind}_{eos_scale}")
    write_random_release(folder, tiny(kind, predictor_hidden=32), tiny_codec_config(), seed=3, eos_scale=eos_scale)
    return str(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(qwen-tts, qtts) per (model type, eos_scale); built on first use. qtts decodes in qwen-tts's 300-frame
    windows (``windowed_decode``), which equal qtts's default decode up to 300 frames only."""
    cache = {}

    def get(kind: str, eos_scale: float = 0.0):
        if (kind, eos_scale) not in cache:
            folder = folder_for(tmp_path_factory, kind, eos_scale)
            cache[kind, eos_scale] = (Qwen3TTSModel.from_pretrained(folder),
                                      Synthesizer.from_pretrained(folder, windowed_decode=True))
        return cache[kind, eos_scale]

    return get


def references(seconds=(1.3, 0.7)):
    """Noisy tones at 24 kHz (no resampling on either side), as (samples, rate) pairs."""
    gen = torch.Generator().manual_seed(7)
    out = []
    for i, s in enumerate(seconds):
        t = torch.arange(int(s * SR)) / SR
        wav = 0.3 * torch.sin(2 * torch.pi * (140 + 60 * i) * t) + 0.05 * torch.randn(len(t), generator=gen)
        out.append((wav.numpy().astype(np.float32), SR))
    return out


def assert_same_audio(theirs, ours, in_context=False):
    """Equal waveforms. In-context cloning: qwen-tts cuts ``int(ref/total · samples)`` samples, which float
    rounding can leave one sample short of the reference; qtts cuts exactly the reference's samples."""
    assert len(theirs) == len(ours)
    for a, b in zip(theirs, ours):
        b = b.numpy()
        assert len(b) > 0
        if in_context:
            assert 0 <= len(a) - len(b) <= 1
            a = a[len(a) - len(b):]
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_custom_voice_batch(models):
    theirs, ours = models("custom_voice")
    kwargs = dict(text=["Hello world, this is a test.", "今天天气很好。", "Bonjour."],
                  speaker=["serena", "eric", "vivian"],  # eric is a dialect speaker: auto → sichuan dialect
                  language=["english", "auto", "french"])
    expected, sr = theirs.generate_custom_voice(**kwargs, max_new_tokens=FRAMES + 1, **GREEDY)
    got = ours.custom_voice(**kwargs, max_new_tokens=FRAMES, **GREEDY)
    assert sr == ours.sample_rate == SR
    assert all(len(w) == FRAMES * 1920 for w in got)
    assert_same_audio(expected, got)
    # the non-default text layout too (streaming text), one item
    expected, _ = theirs.generate_custom_voice("A second test.", "ryan", non_streaming_mode=False,
                                               max_new_tokens=FRAMES + 1, **GREEDY)
    assert_same_audio(expected, [ours.custom_voice("A second test.", "ryan", non_streaming_mode=False,
                                                   max_new_tokens=FRAMES, **GREEDY)])


def test_voice_design(models):
    theirs, ours = models("voice_design")
    kwargs = dict(text=["Good morning.", "Guten Morgen, wie geht es dir?"],
                  instruct=["A calm, deep male voice.", "Eine fröhliche junge Stimme."], language=["auto", "german"])
    expected, _ = theirs.generate_voice_design(**kwargs, max_new_tokens=FRAMES + 1, **GREEDY)
    assert_same_audio(expected, ours.voice_design(**kwargs, max_new_tokens=FRAMES, **GREEDY))


@pytest.mark.parametrize("x_vector_only", [True, False], ids=["x_vector_only", "in_context"])
def test_voice_clone(models, x_vector_only):
    theirs, ours = models("base")
    refs = references()
    kwargs = dict(text=["Nice to meet you.", "This voice was cloned from a short reference."],
                  ref_audio=refs, ref_text=["The reference transcript.", "Short one."], language=["english", "auto"])
    expected, _ = theirs.generate_voice_clone(**kwargs, x_vector_only_mode=x_vector_only,
                                              max_new_tokens=FRAMES + 1, **GREEDY)
    got = ours.voice_clone(**kwargs, x_vector_only=x_vector_only, max_new_tokens=FRAMES, **GREEDY)
    assert_same_audio(expected, got, in_context=not x_vector_only)
    # the prompt made once and reused gives the same audio; so does the codes path
    prompt = ours.create_voice_prompt(refs[0], "The reference transcript.", x_vector_only=x_vector_only)
    again = ours.voice_clone("Nice to meet you.", prompt=prompt, language="english", max_new_tokens=FRAMES, **GREEDY)
    if x_vector_only:  # one reference alone encodes as it does in a batch only for the x-vector path
        torch.testing.assert_close(again, got[0], atol=1e-5, rtol=0)
    assert again.shape == got[0].shape


def test_prompt_items_reused_as_in_qwen_tts(models):
    """qwen-tts's own prompt objects and ours, built from the same reference, clone identically."""
    theirs, ours = models("base")
    ref = references((1.1,))[0]
    items = theirs.create_voice_clone_prompt(ref, "Reference words.")
    prompt = ours.create_voice_prompt(ref, "Reference words.")
    assert torch.equal(items[0].ref_code.cpu(), prompt.ref_codes)
    torch.testing.assert_close(items[0].ref_spk_embedding.cpu(), prompt.xvector, atol=1e-5, rtol=0)
    expected, _ = theirs.generate_voice_clone("Then something new.", voice_clone_prompt=items,
                                              non_streaming_mode=True, max_new_tokens=FRAMES + 1, **GREEDY)
    got = ours.voice_clone("Then something new.", prompt=prompt, non_streaming_mode=True,
                           max_new_tokens=FRAMES, **GREEDY)
    assert_same_audio(expected, [got], in_context=True)


def test_batch_rows_end_at_their_own_eos(models):
    """EOS that wins every few frames: each row stops at its own EOS, in a batch, as qwen-tts's do."""
    theirs, ours = models("custom_voice", 3.0)
    texts = ["One.", "Two words here.", "A third, somewhat longer sentence to say.", "Four."]
    kwargs = dict(text=texts, speaker="serena", language="english")
    expected, _ = theirs.generate_custom_voice(**kwargs, max_new_tokens=61, **GREEDY)
    got = ours.custom_voice(**kwargs, max_new_tokens=60, **GREEDY)
    ended = [len(w) // 1920 for w in got if len(w) < 60 * 1920]
    assert len(ended) >= 2 and len(set(ended)) >= 2  # rows ended by EOS, at different steps
    assert_same_audio(expected, got)


def test_windowed_decode_matches_qwen_tts_past_300_frames(models):
    """In-context cloning decodes the reference in front: 17 + 320 frames cross qwen-tts's 300-frame window, and
    ``windowed_decode`` gives its samples there (the default, equal to streaming, differs: test_streaming)."""
    theirs, ours = models("base")
    prompt = ours.create_voice_prompt(references()[0], "The reference transcript.")
    codes = torch.randint(0, 2048, (320, 16), generator=torch.Generator().manual_seed(0))
    assert len(prompt.ref_codes) + len(codes) > 300
    expected, _ = theirs.model.speech_tokenizer.decode([{"audio_codes": torch.cat([prompt.ref_codes, codes])}])
    got = ours.decode([codes], [prompt])[0]
    np.testing.assert_allclose(expected[0][len(prompt.ref_codes) * 1920:], got.numpy(), atol=1e-5, rtol=0)
