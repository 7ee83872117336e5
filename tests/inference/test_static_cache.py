"""Static KV caches (and, on CUDA, graph replays) choose exactly the codes of the default growing caches."""

import pytest
import torch

from qtts.inference import Request, Synthesizer
from qtts.inference.generation import generate_frames
from qtts.inference.sampling import CodeSampler, SamplingConfig
from qtts.inference.static_decoding import StaticDecoding
from qtts.models.layers import Attention, KVCache, RotaryEmbedding, StaticKVCache
from qtts.models.random_release import tiny_codec_config, write_random_release
from qtts.models.talker import tiny

FRAMES = 24
GREEDY = SamplingConfig(do_sample=False, subtalker_dosample=False)
SAMPLED = SamplingConfig(seed=7, top_k=20, top_p=0.9, subtalker_top_k=30, subtalker_top_p=0.8)
ONE = [Request("A single row, long enough to fill a small cache.", speaker="serena", language="english")]
THREE = [Request("One.", speaker="serena"), Request("Two words here, then more.", speaker="ryan", language="english"),
         Request("A third, somewhat longer sentence to say out loud.", speaker="vivian")]


def windowed():
    """Tiny shapes with sliding windows shorter than the sequences: every talker layer, one predictor layer."""
    config = tiny("custom_voice", predictor_hidden=32)
    talker = config.talker_config
    talker.use_sliding_window, talker.sliding_window = True, 8
    predictor = talker.code_predictor_config
    predictor.use_sliding_window, predictor.sliding_window, predictor.max_window_layers = True, 5, 1
    return config


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Random model folders: ``plain`` (EOS never wins), ``ending`` (rows end every few frames), ``windowed``."""
    made = {}

    def get(kind: str):
        if kind not in made:
            made[kind] = tmp_path_factory.mktemp(kind)
            config = windowed() if kind == "windowed" else tiny("custom_voice", predictor_hidden=32)
            write_random_release(made[kind], config, tiny_codec_config(), seed=5,
                                 eos_scale=2.0 if kind == "ending" else 0)
        return made[kind]

    return get


@pytest.fixture(scope="module")
def synth(folder):
    """CPU synthesizers of those folders."""
    made = {}

    def get(kind: str) -> Synthesizer:
        if kind not in made:
            made[kind] = Synthesizer.from_pretrained(folder(kind))
        return made[kind]

    return get


def frames(s: Synthesizer, requests, sampling: SamplingConfig, max_frames: int, static: StaticDecoding | None = None):
    """(codes (B, frames, G), alive (B, frames)) as ``Synthesizer.generate_codes`` generates them."""
    embeds, mask, trailing, pad = s._prefill(requests)
    config = s.model.config.talker_config
    sampler = CodeSampler(sampling, len(requests), config.vocab_size, config.code_predictor_config.vocab_size,
                          s.codec_ids.eos, s.device)
    out = list(generate_frames(s.model.talker, embeds, mask, trailing, pad, sampler, max_frames, static=static))
    return torch.stack([f.codes for f in out], 1), torch.stack([f.alive for f in out], 1)


def recorded(s: Synthesizer, requests, sampling: SamplingConfig, max_frames: int, static: StaticDecoding | None,
             record: str):
    """(codes (B, frames, G), log-probabilities (B, steps, G) of a sampler recording ``record``)."""
    embeds, mask, trailing, pad = s._prefill(requests)
    config = s.model.config.talker_config
    sampler = CodeSampler(sampling, len(requests), config.vocab_size, config.code_predictor_config.vocab_size,
                          s.codec_ids.eos, s.device, record=record)
    out = list(generate_frames(s.model.talker, embeds, mask, trailing, pad, sampler, max_frames, static=static))
    steps = [torch.stack([first, *rest], 1) for first, rest in zip(sampler.first_logprobs, sampler.residual_logprobs)]
    return torch.stack([f.codes for f in out], 1), torch.stack(steps[: len(out)], 1)  # the frames' steps


def assert_same(expected, got):
    assert expected[0].shape == got[0].shape
    assert torch.equal(expected[1], got[1]), "rows end at other frames"
    assert torch.equal(expected[0], got[0]), "codes differ"


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
@pytest.mark.parametrize("kind, requests", [("plain", ONE), ("ending", THREE), ("windowed", THREE)],
                         ids=["batch1", "padded-batch3", "sliding-window"])
def test_static_cache_chooses_the_dynamic_codes(synth, kind, requests, sampling):
    s = synth(kind)
    static = StaticDecoding(s.model.talker, graphs=False, min_capacity=16)  # small: the cache grows twice or more
    expected = frames(s, requests, sampling, FRAMES)
    assert_same(expected, frames(s, requests, sampling, FRAMES, static))
    assert s._prefill(requests)[0].shape[1] + FRAMES > 32  # the sequence outgrew two capacities
    if kind == "ending":
        ends = expected[1].sum(1)
        assert len(set(ends.tolist())) > 1 and int(ends.max()) < FRAMES, ends  # rows end at their own frames


def test_step_objects_are_reused_and_lent_to_one_generation_at_a_time(synth):
    s = synth("plain")
    static = StaticDecoding(s.model.talker, graphs=False, min_capacity=64)
    expected = [frames(s, ONE, SAMPLED, 12), frames(s, THREE[:1], SAMPLED, 12)]

    def generation(requests):
        embeds, mask, trailing, pad = s._prefill(requests)
        config = s.model.config.talker_config
        sampler = CodeSampler(SAMPLED, 1, config.vocab_size, config.code_predictor_config.vocab_size,
                              s.codec_ids.eos, s.device)
        return generate_frames(s.model.talker, embeds, mask, trailing, pad, sampler, 12, static=static)

    a, b = generation(ONE), generation(THREE[:1])
    interleaved = [[], []]
    for fa, fb in zip(a, b):  # two live generations of the same shapes: each must get its own caches
        interleaved[0].append(fa.codes)
        interleaved[1].append(fb.codes)
    a.close(), b.close()
    for want, got in zip(expected, interleaved):
        assert torch.equal(want[0], torch.stack(got, 1))
    idle = len(static._idle)
    assert idle == 4  # both generations' talker and code steps are back
    frames(s, ONE, SAMPLED, 12, static)
    assert len(static._idle) == idle  # a later call reuses them rather than building more


def test_static_attention_equals_dynamic_with_padding_and_window():
    torch.manual_seed(0)
    attention = Attention(32, 4, 2, 8, sliding_window=5, qk_norm=True).eval()
    rotary = RotaryEmbedding(8)
    x = torch.randn(2, 9, 32)
    padding = torch.ones(2, 9, dtype=torch.bool)
    padding[1, :3] = False
    dynamic, static = KVCache(), StaticKVCache(2, 2, 16, 8, torch.float32, "cpu")
    valid = torch.ones(2, 16, dtype=torch.bool)
    valid[:, :9] = padding
    cos, sin = rotary(torch.arange(9))
    expected = [attention(x[:, :6], cos[:6], sin[:6], dynamic, padding[:, None, None, :6])]
    got = [attention(x[:, :6], cos[:6], sin[:6], static, valid[:, None, None, :])]
    for t in range(6, 9):  # then one position at a time
        expected.append(attention(x[:, t:t + 1], cos[t:t + 1], sin[t:t + 1], dynamic, padding[:, None, None, :t + 1]))
        got.append(attention(x[:, t:t + 1], cos[t:t + 1], sin[t:t + 1], static, valid[:, None, None, :]))
    torch.testing.assert_close(torch.cat(got, 1), torch.cat(expected, 1), atol=1e-6, rtol=0)
    assert int(static.length) == 9


@pytest.mark.parametrize("record", ["all", "first"])
def test_static_steps_record_the_dynamic_logprobs(synth, record):
    """A recording sampler on static caches draws the default path's codes and records the same log-probabilities
    (groups 1..G-1 come from the static code step)."""
    s = synth("ending")
    static = StaticDecoding(s.model.talker, graphs=False, min_capacity=16)
    codes, logprobs = recorded(s, THREE, SAMPLED, FRAMES, None, record)
    assert logprobs.shape[-1] == (16 if record == "all" else 1)
    got_codes, got_logprobs = recorded(s, THREE, SAMPLED, FRAMES, static, record)
    assert torch.equal(codes, got_codes)
    torch.testing.assert_close(got_logprobs, logprobs, atol=1e-5, rtol=0)
    assert torch.equal(codes, frames(s, THREE, SAMPLED, FRAMES, static)[0])  # the same draws as without recording


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_cuda_graphs_choose_the_eager_codes(folder, dtype):
    """Graph replays equal the same static steps run eagerly, bit for bit, greedy and seeded; in float32 also the
    default growing caches, through the Synthesizer too. A small capacity makes the cache grow (new captures)."""
    s = Synthesizer.from_pretrained(folder("ending"), device="cuda", dtype=dtype, cuda_graphs=False)
    graphed = StaticDecoding(s.model.talker, graphs=True, min_capacity=16)
    eager = StaticDecoding(s.model.talker, graphs=False, min_capacity=16)
    for sampling in (GREEDY, SAMPLED):
        for requests in (ONE, THREE):
            want = frames(s, requests, sampling, FRAMES, eager)
            got = frames(s, requests, sampling, FRAMES, graphed)
            assert_same(want, got)
            assert_same(want, frames(s, requests, sampling, FRAMES, graphed))  # the kept graphs, replayed again
            if dtype == torch.float32:
                assert_same(frames(s, requests, sampling, FRAMES), got)
        want = recorded(s, requests, SAMPLED, FRAMES, eager, "all")  # recording inside the captured code step
        got = recorded(s, requests, SAMPLED, FRAMES, graphed, "all")
        assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1])
    options = dict(do_sample=True, subtalker_dosample=True, seed=3)
    without = s.generate_codes(THREE, max_new_tokens=30, **options)
    s.cuda_graphs = None  # the default on CUDA: graphs on
    assert s._static_decoding() is not None
    with_graphs = s.generate_codes(THREE, max_new_tokens=30, **options)
    assert len(with_graphs) == 3 and all(1 <= len(c) <= 30 for c in with_graphs)
    if dtype == torch.float32:
        assert all(torch.equal(a, b) for a, b in zip(without, with_graphs))
