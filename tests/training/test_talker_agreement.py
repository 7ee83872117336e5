"""Training and inference are one function: the codes a model generates greedily are the argmaxes of the training
forward over the training example built from them, in every prompt layout (plain, streaming text, x-vector)."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("layout", ["plain", "streaming", "xvector"])
def test_greedy_generation_is_the_argmax_of_the_training_forward(layout):
    """Whatever a model has learnt, its greedy generation and its training forward must be one function: build the
    TRAINING example of the codes it generated (``build_sequence`` with target codes, as ``TalkerCorpus`` does) and
    the training pass's argmaxes must be those codes, for group 0 (talker logits at the labelled positions) and for
    groups 1..15 (``predictor_logits``, teacher-forced). Catches any drift of prompt layout, positions, text track
    or code-predictor inputs between training and inference, on a random model in a second."""
    from qtts.data.batching import collate_training
    from qtts.inference.synthesizer import Request, Synthesizer
    from qtts.models.codec.model import SpeechTokenizer
    from qtts.models.random_release import tiny_codec_config
    from qtts.models.talker.config import tiny
    from qtts.models.talker.layout import IGNORE_INDEX, build_sequence
    from qtts.models.talker.model import TTSModel
    from qtts.text.templates import target_ids
    from qtts.text.tokenizer import load_text_tokenizer

    torch.manual_seed(0)
    model = TTSModel(tiny(tts_model_type="base" if layout == "xvector" else "custom_voice")).eval()
    tokenizer = load_text_tokenizer(None)
    synth = Synthesizer(model, SpeechTokenizer(tiny_codec_config()), tokenizer)
    text = "Hi there."
    xvector = torch.randn(model.config.talker_config.hidden_size) if layout == "xvector" else None
    prompt = None
    if xvector is not None:
        from qtts.inference.voice import VoicePrompt

        prompt = VoicePrompt(xvector, None, None)
    request = Request(text, "english", prompt=prompt, non_streaming_mode=layout != "streaming")
    codes = synth.generate_codes([request], do_sample=False, subtalker_dosample=False, repetition_penalty=1.0,
                                 min_new_tokens=0, max_new_tokens=10)[0]
    assert len(codes) == 10  # a random model does not stop: every frame is compared

    language = model.config.talker_config.language_row("english")
    seq = build_sequence(target_ids(tokenizer, text).content, language=language, xvector=xvector is not None,
                         target_codes=codes, streaming=layout == "streaming")
    tracks = collate_training([seq])
    with torch.no_grad():
        out = model.forward_tracks(tracks, None if xvector is None else xvector[None], packed=False)
        labels = tracks.labels[0]
        frames = (labels != IGNORE_INDEX) & (tracks.code_labels[0, :, 0] != IGNORE_INDEX)
        assert int(frames.sum()) == 10
        logits = out.logits[0][frames]
        # the generated code is the training forward's argmax over the codes generation may choose (the audio codes;
        # EOS was never chosen, so its logit stays below), up to float rounding between the two passes
        chosen = logits.gather(-1, codes[:, :1]).squeeze(-1)
        audio_codes = model.config.talker_config.code_predictor_config.vocab_size
        torch.testing.assert_close(chosen, logits[:, :audio_codes].max(-1).values, atol=1e-4, rtol=0)
        assert (logits[:, synth.codec_ids.eos] < chosen).all()
        predicted = model.talker.predictor_logits(out.hidden[0][frames], codes).argmax(-1)
    assert torch.equal(predicted, codes[:, 1:])
