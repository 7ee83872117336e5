"""Log-probabilities the Synthesizer records while it samples equal the teacher-forced ones of the training forward."""

import pytest
import torch

from qtts.inference import Request, Synthesizer, VoicePrompt
from qtts.inference.logprobs import sequence_logprobs
from qtts.inference.rollouts import sample_rollouts
from qtts.models.random_release import tiny_codec_config, write_random_release
from qtts.models.talker import tiny
from qtts.tasks.talker_losses import dual_track_loss

MAX_FRAMES = 16
# the released defaults (penalty, EOS blocked for 2 frames, top-k 50); plain softmax; a sharper, nucleus-cut policy
POLICIES = {
    "released": {},
    "plain": dict(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0, min_new_tokens=0,
                  subtalker_temperature=1.0, subtalker_top_k=0, subtalker_top_p=1.0),
    "top-p": dict(temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.3, subtalker_temperature=0.8,
                  subtalker_top_k=0, subtalker_top_p=0.9),
}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Float32 CPU synthesizers of tiny random folders whose rows end (EOS) after a few frames, or run on."""
    def make(kind):
        folder = tmp_path_factory.mktemp(kind)
        write_random_release(folder, tiny(kind, predictor_hidden=32), tiny_codec_config(), seed=2, eos_scale=4.0)
        return Synthesizer.from_pretrained(folder)

    return {"base": make("base"), "custom_voice": make("custom_voice")}


def requests(kind: str) -> list[Request]:
    """Different lengths and every layout the tiny models support: in-context and x-vector cloning (streaming and
    non-streaming text), no voice at all; preset speakers, with and without instruct, both text layouts."""
    if kind == "base":
        g = torch.Generator().manual_seed(0)
        icl = VoicePrompt(torch.randn(64, generator=g), torch.randint(0, 2048, (6, 16), generator=g), "Some words.")
        xvec = VoicePrompt(torch.randn(64, generator=g))
        return [Request("Then the new words, a little longer.", "english", prompt=icl, non_streaming_mode=False),
                Request("Hi.", prompt=xvec),
                Request("A voice of its own, said without any prompt at all.", "english", non_streaming_mode=False),
                Request("Short and cloned.", prompt=icl)]
    return [Request("Hello there.", speaker="serena"),
            Request("A longer sentence, streamed with its text beside the audio.", "english", speaker="ryan",
                    non_streaming_mode=False),
            Request("Slowly, please.", speaker="vivian", instruct="Speak slowly and softly.")]


def sample(s: Synthesizer, reqs, groups, policy, seed=11):
    return s.generate_codes(reqs, return_logprobs=groups, max_new_tokens=MAX_FRAMES, seed=seed, **POLICIES[policy])


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("groups", ["all", "first"])
@pytest.mark.parametrize("kind", ["base", "custom_voice"])
def test_recorded_logprobs_equal_teacher_forced(synth, kind, groups, policy):
    s, reqs = synth[kind], requests(kind)
    codes, recorded = sample(s, reqs, groups, policy)
    assert recorded.values.shape[-1] == (16 if groups == "all" else 1)
    lengths = [len(c) for c in codes]
    assert torch.equal(recorded.steps, torch.tensor(lengths) + recorded.ended)
    assert torch.equal(recorded.ended, torch.tensor(lengths) < MAX_FRAMES)
    with torch.no_grad():
        scored = s.code_logprobs(reqs, codes, recorded.ended, groups, **POLICIES[policy])
    assert torch.equal(scored.mask.cpu(), recorded.mask) and torch.equal(scored.ended.cpu(), recorded.ended)
    assert bool(torch.isfinite(recorded.values).all()) and bool(torch.isfinite(scored.values).all())
    assert float(recorded.sequence.max()) < 0  # real probabilities, not a zero-filled record
    torch.testing.assert_close(scored.values.cpu(), recorded.values, atol=1e-4, rtol=0)  # per step and group
    torch.testing.assert_close(scored.frames.cpu(), recorded.frames, atol=1e-4, rtol=0)
    torch.testing.assert_close(scored.sequence.cpu(), recorded.sequence, atol=1e-4, rtol=0)
    torch.testing.assert_close(scored.mean.cpu(), recorded.mean, atol=1e-4, rtol=0)


def test_batches_mix_ended_and_unended_rows(synth):
    """The settings above cover both kinds of rows: EOS after a few frames, and rows stopped at max_new_tokens."""
    for kind in synth:
        ended = sample(synth[kind], requests(kind), "all", "released")[1].ended
        assert bool(ended.any()) and not bool(ended.all()), (kind, ended)


def test_recording_leaves_the_draws_unchanged(synth):
    s, reqs = synth["custom_voice"], requests("custom_voice")
    plain = s.generate_codes(reqs, max_new_tokens=MAX_FRAMES, seed=11)
    for groups in ("all", "first"):
        recorded, logprobs = s.generate_codes(reqs, return_logprobs=groups, max_new_tokens=MAX_FRAMES, seed=11)
        assert all(torch.equal(a, b) for a, b in zip(plain, recorded))
    assert torch.equal(logprobs.values, sample(s, reqs, "all", "released")[1].first_group().values)


def test_a_changed_code_changes_the_logprob(synth):
    s, reqs = synth["custom_voice"], requests("custom_voice")
    codes, recorded = sample(s, reqs, "all", "plain")
    row = max(range(len(codes)), key=lambda i: len(codes[i]))
    for group in (0, 7):
        changed = [c.clone() for c in codes]
        changed[row][1, group] = (changed[row][1, group] + 1) % 2048
        with torch.no_grad():
            scored = s.code_logprobs(reqs, changed, recorded.ended, "all", **POLICIES["plain"])
        before, after = recorded.values[row], scored.values[row]
        torch.testing.assert_close(after[:1], before[:1], atol=1e-4, rtol=0)  # frame 0 does not see frame 1
        assert float((after[1] - before[1]).abs().max()) > 1e-3, group
        others = [i for i in range(len(codes)) if i != row]
        torch.testing.assert_close(scored.values[others], recorded.values[others], atol=1e-4, rtol=0)


def test_padding_and_batch_neighbours_do_not_change_values(synth):
    s, reqs = synth["base"], requests("base")
    codes, recorded = sample(s, reqs, "all", "released")
    with torch.no_grad():
        batch = s.code_logprobs(reqs, codes, recorded.ended)
        for i in range(len(reqs)):
            alone = s.code_logprobs(reqs[i:i + 1], codes[i:i + 1], recorded.ended[i:i + 1])
            n = int(alone.steps[0])
            assert int(batch.steps[i]) == n
            torch.testing.assert_close(batch.values[i, :n], alone.values[0, :n], atol=1e-5, rtol=0)
            assert not bool(batch.values[i, n:].any())  # padding steps are 0
    # rows as the Synthesizer sampled them alone (no left padding in its prefill) score the same
    codes_alone, recorded_alone = sample(s, reqs[1:2], "all", "released")
    with torch.no_grad():
        scored = s.code_logprobs(reqs[1:2], codes_alone, recorded_alone.ended)
    torch.testing.assert_close(scored.values, recorded_alone.values, atol=1e-4, rtol=0)


def test_model_policy_is_the_training_loss(synth):
    """The raw-logits policy scores exactly what the training loss's cross-entropies average."""
    s, reqs = synth["custom_voice"], requests("custom_voice")
    codes, recorded = sample(s, reqs, "all", "released")
    tracks, xvectors = s.teacher_forced_batch(reqs, codes, recorded.ended)
    with torch.no_grad():
        scored = sequence_logprobs(s.model, tracks, xvectors)
        out = s.model.forward_tracks(tracks, xvectors, packed=False)
        loss = dual_track_loss(out.hidden, out.logits, tracks.labels, tracks.code_labels,
                               s.model.talker.predictor_logits)
    torch.testing.assert_close(-scored.values[..., 0][scored.mask].mean(), loss.talker, atol=1e-5, rtol=1e-5)
    frames = scored.mask.clone()
    frames[torch.arange(len(reqs)), scored.steps - 1] &= ~scored.ended  # EOS steps have no groups 1..15
    torch.testing.assert_close(-scored.values[..., 1:][frames].mean(), loss.predictor, atol=1e-5, rtol=1e-5)


def test_gradients_flow(synth):
    s, reqs = synth["custom_voice"], requests("custom_voice")[:2]
    codes, recorded = sample(s, reqs, "all", "plain")
    scored = s.code_logprobs(reqs, codes, recorded.ended, **POLICIES["plain"])
    torch.exp(scored.mean - recorded.mean).sum().backward()  # GSPO's ratio: the record is a plain tensor
    talker = s.model.talker
    assert float(talker.codec_head.weight.grad.abs().sum()) > 0
    assert float(talker.code_predictor.lm_head[3].weight.grad.abs().sum()) > 0
    s.model.zero_grad(set_to_none=True)


def test_ids_outside_top_k_are_minus_inf_and_flagged(synth):
    """Codes drawn with top-k 50, scored under top-k 1: the steps that did not draw the argmax are -inf (marked by
    ``outside``), the others log 1 = 0; nothing is NaN."""
    s, reqs = synth["custom_voice"], requests("custom_voice")
    codes, recorded = sample(s, reqs, "first", "released")
    with torch.no_grad():
        greedy = s.code_logprobs(reqs, codes, recorded.ended, "first", top_k=1)
    assert not bool(torch.isnan(greedy.values).any())
    outside = greedy.outside
    assert bool(outside.any()) and bool((~outside & greedy.mask).any())
    assert bool(torch.isneginf(greedy.frames[outside]).all())
    assert float(greedy.frames[~outside & greedy.mask].abs().max()) < 1e-6
    assert bool(torch.isneginf(greedy.sequence[outside.any(1)]).all())
    assert not bool(recorded.outside.any())


def test_eos_at_once_and_other_edges(synth):
    s = synth["custom_voice"]
    reqs = requests("custom_voice")[:1]
    empty = torch.zeros(0, 16, dtype=torch.long)
    with torch.no_grad():
        scored = s.code_logprobs(reqs, [empty], [True], policy="model")
        embeds, mask, _, _ = s._prefill(reqs)
        logits = s.model.talker(embeds, attention_mask=mask).logits[0, -1]
    eos = s.codec_ids.eos
    assert scored.steps.tolist() == [1] and scored.ended.tolist() == [True]
    torch.testing.assert_close(scored.sequence[0].float(), logits.log_softmax(-1)[eos], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="nothing to score"):
        s.code_logprobs(reqs, [empty], [False])
    with pytest.raises(ValueError, match="greedy"):
        s.generate_codes(reqs, return_logprobs=True, do_sample=False, max_new_tokens=2)
    with pytest.raises(ValueError, match="subtalker_dosample"):
        s.code_logprobs(reqs, [torch.zeros(2, 16, dtype=torch.long)], subtalker_dosample=False)
    with pytest.raises(ValueError, match="2 code tensors for 1"):
        s.code_logprobs(reqs, [empty, empty])


def test_rollouts_sample_groups_with_their_logprobs_and_audio(synth):
    s = synth["base"]
    reqs = requests("base")[:3]  # in-context clone (streaming text), x-vector clone, no voice
    out = sample_rollouts(s, reqs, group_size=3, batch_size=4, seed=5, max_new_tokens=MAX_FRAMES)
    assert len(out) == 9 and out.num_prompts == 3 and out.prompt_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [r.text for r in out.requests[out.group(1)]] == [reqs[1].text] * 3
    for i in range(3):  # the samples of one prompt differ
        group = out.codes[out.group(i)]
        assert any(len(a) != len(b) or not torch.equal(a, b) for a in group for b in group if a is not b)
    assert torch.equal(out.logprobs.steps, torch.tensor([len(c) for c in out.codes]) + out.logprobs.ended)
    assert [len(w) for w in out.audio] == [len(c) * s.codec.config.decode_upsample_rate for c in out.codes]
    with torch.no_grad():  # batches of 4 rows (across prompts), scored as one batch of 9
        scored = s.code_logprobs(out.requests, out.codes, out.logprobs.ended)
    torch.testing.assert_close(scored.values, out.logprobs.values, atol=1e-4, rtol=0)
    torch.testing.assert_close(scored.sequence, out.logprobs.sequence, atol=1e-4, rtol=0)
    again = sample_rollouts(s, reqs, group_size=3, batch_size=4, seed=5, groups="first", audio=False,
                            max_new_tokens=MAX_FRAMES)
    assert again.audio is None and all(torch.equal(a, b) for a, b in zip(out.codes, again.codes))
    torch.testing.assert_close(again.logprobs.values, out.logprobs.first_group().values, atol=1e-6, rtol=0)
    first = out.logprobs.select(list(range(3)))
    assert first.values.shape[1] == int(first.steps.max())
    with pytest.raises(ValueError, match="group_size"):
        sample_rollouts(s, reqs, group_size=0)
