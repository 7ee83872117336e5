"""Streaming audio: packets come out as soon as their frames exist, and together equal the offline waveform."""

import pytest
import torch

from qtts.inference import Request, Synthesizer, VoicePrompt
from qtts.inference.generation import Frame
from qtts.models.random_release import tiny_codec_config, write_random_release
from qtts.models.talker import tiny

GREEDY = dict(do_sample=False, subtalker_dosample=False)
HOP = 1920


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    def make(kind, eos_scale):
        folder = tmp_path_factory.mktemp(kind)
        write_random_release(folder, tiny(kind, predictor_hidden=32), tiny_codec_config(), seed=5, eos_scale=eos_scale)
        return Synthesizer.from_pretrained(folder)

    return {"custom_voice": make("custom_voice", 0.0), "ending": make("custom_voice", 2.0), "base": make("base", 0.0)}


class CountFrames:
    """Counts the frames the model has generated (calls of the code predictor's per-frame loop)."""

    def __init__(self, synth: Synthesizer, monkeypatch):
        talker = synth.model.talker
        original = talker.predict_codes
        self.frames = 0

        def counting(*args, **kwargs):
            self.frames += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(talker, "predict_codes", counting)


def test_packets_equal_offline_audio(synth):
    s = synth["custom_voice"]
    offline = s.custom_voice("Streaming must equal offline.", "serena", max_new_tokens=14, **GREEDY)
    chunks = list(s.custom_voice("Streaming must equal offline.", "serena", max_new_tokens=14, stream=True,
                                 packet_frames=4, **GREEDY))
    assert [len(c) for c in chunks] == [4 * HOP, 4 * HOP, 4 * HOP, 2 * HOP]
    assert all(c.dtype == torch.float32 for c in chunks)
    torch.testing.assert_close(torch.cat(chunks), offline, atol=1e-5, rtol=0)


@pytest.mark.parametrize("first, size", [(None, 4), (1, 3)])
def test_first_packet_is_yielded_when_its_frames_exist(synth, monkeypatch, first, size):
    s = synth["custom_voice"]
    counter = CountFrames(s, monkeypatch)
    stream = s.custom_voice("Latency is what streaming is for.", "serena", max_new_tokens=30, stream=True,
                            packet_frames=size, first_packet_frames=first, **GREEDY)
    assert counter.frames == 0  # nothing runs before the first packet is asked for
    chunk = next(stream)
    first = first or size
    assert counter.frames == first and len(chunk) == first * HOP
    next(stream)
    assert counter.frames == first + size  # one packet's frames per packet, no look-ahead
    stream.close()


def test_in_context_clone_streams_after_the_reference(synth):
    """The decoder is primed with the reference codes, as offline decoding puts them in front and cuts them."""
    s = synth["base"]
    t = torch.arange(24_000) / 24_000
    prompt = s.create_voice_prompt(0.3 * torch.sin(2 * torch.pi * 180 * t), "A reference sentence.")
    assert prompt.in_context and prompt.ref_codes.shape == (13, 16)
    offline = s.voice_clone("Then the new words.", prompt=prompt, max_new_tokens=10, **GREEDY)
    chunks = list(s.voice_clone("Then the new words.", prompt=prompt, max_new_tokens=10, stream=True, **GREEDY))
    assert len(offline) == 10 * HOP
    torch.testing.assert_close(torch.cat(chunks), offline, atol=1e-5, rtol=0)


def fixed_frames(synth: Synthesizer, monkeypatch, lengths: list[int], seed: int = 0) -> None:
    """Generation yields random codes, row i alive for ``lengths[i]`` frames: long utterances in no time."""
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2048, (len(lengths), max(lengths), 16), generator=gen)
    alive = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
    frames = [Frame(codes[:, t], alive[:, t]) for t in range(max(lengths))]
    monkeypatch.setattr(synth, "_frames", lambda requests, sampling, check_every=1, sampler=None: iter(frames))


@pytest.mark.parametrize("kind", ["custom_voice", "in_context"])
def test_packets_equal_offline_audio_past_the_decode_window(synth, monkeypatch, kind):
    """Past qwen-tts's 300-frame decode window offline audio still equals the packets; ``windowed_decode``
    (qwen-tts's windows) differs there, and the 13 reference frames of in-context cloning count toward it."""
    lengths = [420, 295]
    fixed_frames(synth[kind if kind == "custom_voice" else "base"], monkeypatch, lengths)
    if kind == "custom_voice":
        s = synth["custom_voice"]
        speak = lambda **kw: s.custom_voice(["First.", "Second."], "serena", **kw)
    else:
        s = synth["base"]
        t = torch.arange(24_000) / 24_000
        prompt = s.create_voice_prompt(0.3 * torch.sin(2 * torch.pi * 180 * t), "A reference sentence.")
        speak = lambda **kw: s.voice_clone(["First.", "Second."], prompt=prompt, **kw)
    offline = speak()
    packets = list(speak(stream=True, packet_frames=16))
    assert [len(w) for w in offline] == [n * HOP for n in lengths]
    for row, wav in enumerate(offline):
        torch.testing.assert_close(torch.cat([p[row] for p in packets]), wav, atol=1e-5, rtol=0)
    monkeypatch.setattr(s, "windowed_decode", True)
    windowed = speak()
    diffs = [(a - b).abs().max().item() for a, b in zip(windowed, offline)]
    assert diffs[0] > 1e-4 and (diffs[1] > 1e-4 if kind == "in_context" else diffs[1] < 1e-5)


def test_batch_streams_end_per_row(synth):
    s = synth["ending"]
    texts = ["One.", "Two words here.", "A third, somewhat longer sentence to say.", "Four."]
    offline = s.custom_voice(texts, "serena", max_new_tokens=40, **GREEDY)
    packets = list(s.custom_voice(texts, "serena", max_new_tokens=40, stream=True, packet_frames=2, **GREEDY))
    assert len({len(w) for w in offline}) > 1  # rows end at different frames
    for row, wav in enumerate(offline):
        parts = [p[row] for p in packets]
        ended = [i for i, p in enumerate(parts) if len(p) == 0]
        assert all(len(p) == 0 for p in parts[ended[0]:]) if ended else True  # nothing after a row's end
        torch.testing.assert_close(torch.cat(parts), wav, atol=1e-5, rtol=0)


def test_codes_and_lengths(synth):
    s = synth["ending"]
    codes = s.generate_codes([Request("Hello there.", speaker="serena", language="english"),
                              Request("Hi.", speaker="ryan")], max_new_tokens=40, **GREEDY)
    assert all(c.dtype == torch.long and c.shape[1] == 16 for c in codes)
    assert all(2 <= len(c) <= 40 for c in codes)  # EOS is blocked for the first two frames
    assert all(int(c[:, 0].max()) < 2048 for c in codes)  # group 0 never holds a special id
    again = s.generate_codes([Request("Hello there.", speaker="serena", language="english")], max_new_tokens=40,
                             **GREEDY)
    assert torch.equal(again[0], codes[0])  # a row's codes do not depend on its batch mates


def test_sampling_is_seeded(synth):
    s = synth["custom_voice"]
    a = s.custom_voice("Seeded.", "serena", max_new_tokens=6, seed=11)
    b = s.custom_voice("Seeded.", "serena", max_new_tokens=6, seed=11)
    c = s.custom_voice("Seeded.", "serena", max_new_tokens=6, seed=12)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_voice_prompt_round_trip(synth, tmp_path):
    s = synth["base"]
    prompt = s.create_voice_prompt((torch.randn(16_000) * 0.1, 16_000), "Words.")
    prompt.save(tmp_path / "voice.safetensors")
    loaded = VoicePrompt.load(tmp_path / "voice.safetensors")
    assert torch.equal(loaded.xvector, prompt.xvector) and torch.equal(loaded.ref_codes, prompt.ref_codes)
    assert loaded.ref_text == "Words."
    xvec = s.create_voice_prompt((torch.randn(16_000) * 0.1, 16_000), x_vector_only=True)
    xvec.save(tmp_path / "x.safetensors")
    assert not VoicePrompt.load(tmp_path / "x.safetensors").in_context


def test_clear_errors(synth):
    s = synth["custom_voice"]
    with pytest.raises(ValueError, match="speaker 'nobody'"):
        s.custom_voice("Hi.", "nobody")
    with pytest.raises(ValueError, match="language 'klingon'"):
        s.custom_voice("Hi.", "serena", language="klingon")
    with pytest.raises(ValueError, match="item 1: the text is empty"):
        s.custom_voice(["Hi.", " "], "serena")
    with pytest.raises(ValueError, match="Base model"):
        s.voice_clone("Hi.", ref_audio=torch.zeros(24_000), x_vector_only=True)
    with pytest.raises(ValueError, match="needs ref_text"):
        synth["base"].voice_clone("Hi.", ref_audio=torch.zeros(24_000))
    with pytest.raises(TypeError, match="unknown sampling option"):
        s.custom_voice("Hi.", "serena", temprature=0.5)
