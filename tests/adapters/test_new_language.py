"""A language held out of pretraining, taught afterwards as a new language (issue 6's acceptance run, on CPU).

Pretrain a tiny talker on the synthetic corpus without German (neither its rows nor a codec row for it) → ``qtts
languages add`` German with whole-word tokens (the text table grows) → ``experiment=new_language``: a language LoRA
plus the German row and the added tokens' rows, on German only → loss falls, only those rows of the frozen tables
move, and the run speaks German (a voice cloned from a German clip) with the added tokens in its prompt.
"""

import json
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from qtts.cli import main
from qtts.data.extract_codes import open_codes
from qtts.data.talker_dataset import TalkerCorpus
from qtts.inference import Synthesizer
from qtts.models.talker import TTSModel
from qtts.text.languages import get_language
from qtts.text.tokenizer import load_text_tokenizer
from tests.conftest import REPO, subprocess_env
from tests.training.test_train_script import TRAIN, only_run, step_losses

ALL_BUT_GERMAN = [lang for lang in ("zh", "en", "ja", "ko", "fr", "ru", "pt", "es", "it")]
CPU = ["trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
       "data.num_workers=0", "data.max_tokens_per_batch=600", "checkpoint.every_n_steps=1000"]


def test_dataset_takes_the_models_language_rows(talker_codes):
    rows = [dict(r) for r in open_codes(talker_codes).select(range(4))]
    for r in rows:
        r["language"] = "de"
    tok = load_text_tokenizer()
    corpus = TalkerCorpus(rows, tok, auto_language_prob=0.0, languages={"german": 2048, "english": 2050})
    seq = corpus[0]["sequence"]
    assert 2048 in seq.codec_ids.tolist() and get_language("de").codec_id not in seq.codec_ids.tolist()
    with pytest.raises(ValueError, match=r"field 'language'.*'de' \(rows .*its languages: \['english'\]"):
        TalkerCorpus(rows, tok, languages={"english": 2050})


def run(args, timeout=900):
    result = subprocess.run(TRAIN + args, env=subprocess_env(), cwd=REPO, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_held_out_language_learned_by_an_adapter(talker_codes, tmp_path, capsys):
    codec = json.loads((talker_codes / "info.json").read_text())["codec"]
    rows = open_codes(talker_codes)
    german_texts = [t for t, lang in zip(rows["text"], rows["language"]) if lang == "de"]
    assert german_texts

    # 1. pretraining without German: no German rows, and no codec row for it
    run(["experiment=talker_demo", "experiment_name=pretrain", f"run_root={tmp_path}",
         f"data.codes=[{{path: {talker_codes}, exclude_languages: [de]}}]", f"task.codec={codec}",
         f"model.languages=[{','.join(ALL_BUT_GERMAN)}]", "trainer.max_steps=12", "task.warmup_steps=2",
         "trainer.check_val_every_n_epoch=1000", "data.val_fraction=0.0", *CPU])
    base = only_run(tmp_path, "pretrain") / "export"
    assert "german" not in TTSModel.from_pretrained(base).config.talker_config.codec_language_id

    # 2. register German with whole-word tokens for its long words
    words = sorted({w.strip(".,!?") for t in german_texts for w in t.split() if len(w.strip(".,!?")) >= 9})[:6]
    assert words
    (tmp_path / "tokens.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    lang = tmp_path / "base_german"
    assert main(["languages", "add", str(base), str(lang), "--name", "german", "--code", "de",
                 "--tokens-file", str(tmp_path / "tokens.txt")]) == 0
    added = TTSModel.from_pretrained(lang)
    row = added.config.talker_config.codec_language_id["german"]
    assert row != get_language("de").codec_id  # a new row, not the released one
    builtin, tok = load_text_tokenizer(), load_text_tokenizer(lang)
    new_ids = list(range(builtin.vocab_size, tok.vocab_size))
    assert len(new_ids) == len(words) and all(len(tok.encode(w)) == 1 for w in words)

    # 3. the language adapter: LoRA (attention, MLP, embeddings) + the German row + the added tokens' rows
    run(["experiment=new_language", f"run_root={tmp_path}", f"task.init_from={lang}",
         f"data.codes=[{{path: {talker_codes}, languages: [de]}}]", "task.train_language_rows=[german]",
         "task.train_added_tokens=true", "task.lora.r=4", "task.lora.alpha=8", "task.lora.dropout=0.0",
         "task.lr=5e-3", "task.warmup_steps=2", "trainer.max_steps=24", "trainer.check_val_every_n_epoch=1000",
         "data.val_fraction=0.0", "~callbacks.early_stop", *CPU])
    adapter_run = only_run(tmp_path, "new_language")
    losses = list(step_losses(adapter_run).values())
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses

    # evaluated on German (teacher-forced, x-vector layout): the adapter lowered its loss
    def german_loss(model) -> float:
        capsys.readouterr()
        assert main(["eval-talker", str(model), str(talker_codes), "--languages", "de", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert list(report) == ["de"] and report["de"]["rows"] == len(german_texts)
        return report["de"]["loss"]

    assert german_loss(adapter_run) < 0.9 * german_loss(lang)

    # only the new rows of the frozen tables trained, and the checkpoint holds them, not the tables (LoRA adds
    # its own delta)
    ckpt = torch.load(max((adapter_run / "checkpoints").glob("*.ckpt")), map_location="cpu", weights_only=True)
    state = ckpt["state_dict"]
    before = load_file(lang / "model.safetensors")
    for name, moved in (("codec_embedding", [row]), ("text_embedding", new_ids)):
        assert not any(k.endswith(f"{name}.base_layer.weight") for k in state)
        assert state[f"trained_rows.{name}.rows"].tolist() == sorted(moved)
        start = before[f"talker.model.{name}.weight"][sorted(moved)]
        assert (state[f"trained_rows.{name}.weight"] != start).any(1).all(), name

    # 4. synthesis in German, the added tokens in the prompt, a voice cloned from a German clip
    synth = Synthesizer.from_pretrained(adapter_run)
    assert "german" in synth.languages
    text = f"{words[0]} und {words[-1]}."
    assert all(i in tok.encode(text) for i in (tok.token_to_id(words[0]), tok.token_to_id(words[-1])))
    ref = next(r for r in rows if r["language"] == "de")
    wav = synth.voice_clone(text, ref_audio=ref["audio"], language="german", x_vector_only=True,
                            max_new_tokens=6, do_sample=False, subtalker_dosample=False)
    assert wav.ndim == 1 and 0 < wav.numel() <= 6 * 1920 and torch.isfinite(wav).all()

    # 5. the adapter folder alone (LoRA + the German row, the token rows, the tokenizer) turns the pretrained base,
    # which has neither, into the run's model
    plain = Synthesizer.from_pretrained(base)
    assert "german" not in plain.languages and len(plain.tokenizer.encode(words[0])) > 1
    plain.load_adapter(adapter_run / "adapter", "german")
    assert "german" in plain.languages and len(plain.tokenizer.encode(words[0])) == 1
    again = plain.voice_clone(text, ref_audio=ref["audio"], language="german", x_vector_only=True,
                              max_new_tokens=6, do_sample=False, subtalker_dosample=False)
    torch.testing.assert_close(again, wav, atol=1e-4, rtol=1e-3)
