"""Initialising the 25 Hz encoder from a local Whisper folder: the blocks compute what Whisper's layers compute."""

from __future__ import annotations

import json

import pytest
import torch

from qtts.models.tokenizer_25hz import Tokenizer25HzConfig, WhisperVQEncoder
from qtts.models.tokenizer_25hz.encoder import sinusoids
from qtts.models.tokenizer_25hz.whisper_init import init_from_whisper_

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def whisper_folder(tmp_path_factory):
    """A random tiny Whisper as wide as the tiny tokenizer (16, 2 heads, 3 layers, 128 mels), one 20-frame window
    long, its biases and norms scaled off their init so a wrong mapping shows."""
    config = transformers.WhisperConfig(num_mel_bins=128, d_model=16, encoder_layers=3, encoder_attention_heads=2,
                                        decoder_layers=1, decoder_attention_heads=2, encoder_ffn_dim=64,
                                        decoder_ffn_dim=64, max_source_positions=20, max_target_positions=8,
                                        vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                        decoder_start_token_id=1)
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" not in name:
                p.add_(0.2 * torch.randn_like(p))
        model.model.encoder.embed_positions.weight.copy_(sinusoids(20, 16))
    folder = tmp_path_factory.mktemp("whisper")
    model.save_pretrained(folder)
    return folder, model


def test_blocks_equal_whisper_layers(whisper_folder):
    folder, whisper = whisper_folder
    encoder = WhisperVQEncoder(Tokenizer25HzConfig.tiny().encoder_config).eval()
    fresh = init_from_whisper_(encoder, folder)
    assert "proj.weight" in fresh and "audio_vq_downsample.weight" in fresh and "conv1.weight" not in fresh
    assert not any(k.startswith("blocks.") for k in fresh)
    mel = torch.randn(1, 128, 40)
    with torch.no_grad():
        theirs = whisper.model.encoder(mel, output_hidden_states=True).hidden_states
        x, lengths = encoder._stem(mel, torch.tensor([40]))
        mask = encoder._key_mask(x.shape[1], lengths)
        assert torch.allclose(x, theirs[0], atol=1e-5)
        for n in (1, 2):
            ours = encoder._run_blocks(x, mask, range(n))
            assert torch.allclose(ours, theirs[n], atol=1e-5), n
        assert torch.allclose(encoder.ln_post(encoder._run_blocks(x, mask, range(3))), theirs[3], atol=1e-5)


def test_mismatches_are_named(whisper_folder, tmp_path):
    folder, _ = whisper_folder
    deeper = Tokenizer25HzConfig.tiny().encoder_config
    deeper.n_layer = 4
    with pytest.raises(ValueError, match="3 Whisper blocks, but the encoder has encoder_config.n_layer 4"):
        init_from_whisper_(WhisperVQEncoder(deeper), folder)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        init_from_whisper_(WhisperVQEncoder(Tokenizer25HzConfig.tiny().encoder_config), tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type 'bert'"):
        init_from_whisper_(WhisperVQEncoder(Tokenizer25HzConfig.tiny().encoder_config), tmp_path)


def test_the_stage1_task_starts_from_whisper(whisper_folder):
    from qtts.tasks.tokenizer_25hz import Tokenizer25HzASRTask

    folder, whisper = whisper_folder
    task = Tokenizer25HzASRTask(Tokenizer25HzConfig.tiny(), list("ab "), whisper_init=str(folder))
    encoder = task.encoder.tokenizer
    assert torch.equal(encoder.blocks[2].mlp[2].weight, whisper.model.encoder.layers[2].fc2.weight)
    assert not bool(encoder.audio_quantizer.codebook.initialized.item())  # the codebook still starts by k-means
    with pytest.raises(ValueError, match="set one of them"):
        Tokenizer25HzASRTask(Tokenizer25HzConfig.tiny(), list("ab "), whisper_init=str(folder), init_from="x")
