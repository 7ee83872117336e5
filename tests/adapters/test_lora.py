"""LoRA presets on the released module names, peft adapter folders, switching / scaling / merging."""

import copy

import pytest
import torch

from qtts.adapters.lora import (
    LoraSettings,
    adapter_names,
    add_lora,
    load_adapters,
    lora_layers,
    merge_lora,
    save_adapter,
    set_adapter,
)
from qtts.models.random_weights import randomize_tts
from qtts.models.talker import TTSModel, tiny


def model(seed=1) -> TTSModel:
    m = TTSModel(tiny("base", predictor_hidden=32))
    randomize_tts(m, seed)
    return m.eval()


def trained_adapter(m: TTSModel, settings: LoraSettings, seed: int):
    """LoRA with random B (a trained adapter), so it changes the outputs."""
    peft_model = add_lora(m, settings)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "lora_B" in name or "lora_embedding_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    m.eval()  # new LoRA layers start in training mode (dropout on)
    return peft_model


def logits(m: TTSModel, seed=0) -> torch.Tensor:
    x = torch.randn(2, 7, 64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return m.talker(x).logits


def test_presets_wrap_the_released_modules():
    m = model()
    add_lora(m, LoraSettings(targets=["attention", "predictor"], r=2))
    wrapped = {name for name, module in m.named_modules() if module in lora_layers(m)}
    assert "talker.model.layers.0.self_attn.q_proj" in wrapped and "talker.model.layers.1.self_attn.o_proj" in wrapped
    assert "talker.code_predictor.model.layers.0.mlp.down_proj" in wrapped
    assert not any(".mlp." in n and n.startswith("talker.model.") for n in wrapped)  # talker MLP not targeted
    assert "talker.codec_head" not in wrapped and not any("speaker_encoder" in n for n in wrapped)
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with pytest.raises(ValueError, match="LoRA targets"):
        LoraSettings(targets=["attn"])


def test_adapter_folders_switch_scale_and_merge(tmp_path):
    base_state = model().state_dict()
    plain = logits(model())
    folders = {}
    for name, seed in (("one", 1), ("two", 2)):
        m = model()
        peft_model = trained_adapter(m, LoraSettings(targets=["attention", "mlp", "embeddings"], r=4, alpha=8), seed)
        folders[name] = save_adapter(peft_model, tmp_path / name)
        folders[name + "_logits"] = logits(m)
    assert (folders["one"] / "adapter_config.json").is_file()

    m = model()
    m.load_state_dict(base_state)
    peft_model = load_adapters(m, {"one": folders["one"], "two": folders["two"]})
    m.eval()
    assert adapter_names(m) == {"one", "two"}
    set_adapter(m, "one")
    torch.testing.assert_close(logits(m), folders["one_logits"])
    set_adapter(m, "two")
    torch.testing.assert_close(logits(m), folders["two_logits"])
    set_adapter(m, None)
    torch.testing.assert_close(logits(m), plain)
    set_adapter(m, "one", scale=0.0)
    torch.testing.assert_close(logits(m), plain)
    set_adapter(m, "one", scale=0.5)
    half = logits(m)
    assert not torch.allclose(half, plain) and not torch.allclose(half, folders["one_logits"])
    with pytest.raises(ValueError, match="no adapter 'three'"):
        set_adapter(m, "three")

    set_adapter(m, "one")
    merged = merge_lora(peft_model)
    assert set(merged.state_dict()) == set(base_state)  # the released keys again
    torch.testing.assert_close(logits(merged), folders["one_logits"], atol=1e-4, rtol=1e-4)
    merged.save_pretrained(tmp_path / "merged")  # and it is a model folder like any other (continue from it)
    torch.testing.assert_close(logits(TTSModel.from_pretrained(tmp_path / "merged")), logits(merged))


def test_merged_and_unmerged_gradients_free_copy():
    """Merging a deep copy (what the task does at export) leaves the training model's adapters in place."""
    m = model()
    peft_model = trained_adapter(m, LoraSettings(r=2), 3)
    before = logits(m)
    merged = merge_lora(copy.deepcopy(peft_model))
    assert lora_layers(m) and not lora_layers(merged)
    torch.testing.assert_close(logits(m), before)
    torch.testing.assert_close(logits(merged), before, atol=1e-4, rtol=1e-4)
