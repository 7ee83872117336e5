"""The recipe scripts end to end on CPU (slow): a folder of German recordings from the synthetic corpus → custom
voices (``recipes/custom_voice/run.sh``) and a new language (``recipes/new_language/run.sh``) on a tiny random Base
folder, each ending in a folder that speaks; post-training (``recipes/post_training/run.sh``) from the demo's model to
a before/after table."""

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from qtts.inference import Synthesizer
from qtts.models.random_release import tiny_codec_config, write_random_release
from qtts.models.talker import tiny
from tests.conftest import REPO, subprocess_env
from tests.helpers.recipes import documented_args, readme_step

pytestmark = pytest.mark.slow
CPU = ["trainer.accelerator=cpu", "trainer.max_steps=4", "data.num_workers=0", "data.max_tokens_per_batch=600",
       "data.val_fraction=0.0", "trainer.check_val_every_n_epoch=1000", "~callbacks.early_stop",
       "trainer.enable_progress_bar=false", "task.warmup_steps=1"]


@pytest.fixture(scope="module")
def recordings(tiny_corpus, tmp_path_factory) -> Path:
    """ROOT/<speaker>/<id>.wav + <id>.txt for the corpus's German clips."""
    root = tmp_path_factory.mktemp("recordings")
    synthetic = tiny_corpus.parent / "synthetic"
    for line in (synthetic / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["language"] == "de":
            folder = root / row["speaker"]
            folder.mkdir(exist_ok=True)
            audio = Path(row["audio"]) if Path(row["audio"]).is_absolute() else synthetic / row["audio"]
            shutil.copy(audio, folder / f"{row['id']}.wav")
            (folder / f"{row['id']}.txt").write_text(row["text"], encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return write_random_release(tmp_path_factory.mktemp("base"), tiny("base", predictor_hidden=32),
                                tiny_codec_config(), seed=5)


def recipe(name: str, values: dict[str, object], env: dict[str, str] | None = None) -> str:
    """Run the recipe's script with the command line its README documents, placeholders filled from ``values`` (and
    ``env`` over the environment: the sizes of a script that reads them from there)."""
    args = documented_args(name, values)
    result = subprocess.run(["bash", str(REPO / "recipes" / name / "run.sh"), *args],
                            env=subprocess_env() | (env or {}), capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_custom_voice_recipe(recordings, base, tmp_path):
    out = recipe("custom_voice", {"RECORDINGS_DIR": recordings, "LANGUAGE": "de", "BASE_FOLDER": base,
                                  "WORK_DIR": tmp_path / "work", "[Hydra overrides...]": CPU})
    assert "custom voices in" in out
    synth = Synthesizer.from_pretrained(tmp_path / "work" / "export")
    assert synth.model_type == "custom_voice" and len(synth.speakers) == 3
    wav = synth.custom_voice("Guten Morgen.", speaker=synth.speakers[0], language="german", max_new_tokens=4)
    assert 0 < wav.numel() <= 4 * 1920

    # step 6 as the README writes it, on the run it documents (`qtts synth` refused a Base-type run's names before)
    run = next((tmp_path / "work" / "runs" / "custom_voice").iterdir())
    command = readme_step("custom_voice", "6. listen").replace("<run>", run.name).replace("alice", synth.speakers[0])
    words = shlex.split(command)
    assert words[0] == "qtts"
    result = subprocess.run([str(REPO / ".venv" / "bin" / "qtts"), *words[1:], "--max-new-tokens", "4"],
                            cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "hello.wav").is_file()


def test_new_language_recipe(recordings, base, tmp_path):
    (tmp_path / "tokens.txt").write_text("Grüezi\nChuchichäschtli\n", encoding="utf-8")
    out = recipe("new_language", {"RECORDINGS_DIR": recordings, "CODE": "gsw", "NAME": "swissgerman",
                                  "BASE_FOLDER": base, "WORK_DIR": tmp_path / "work",
                                  "[--tokens FILE]": ["--tokens", tmp_path / "tokens.txt"],
                                  "[Hydra overrides...]": CPU})
    run = Path(out.split("language adapter: ")[1].split("/adapter")[0])
    synth = Synthesizer.from_pretrained(base)
    synth.load_adapter(run / "adapter")
    assert "swissgerman" in synth.languages and len(synth.tokenizer.encode("Grüezi")) == 1
    wav = synth.voice_clone("Grüezi mitenand.", ref_audio=next(recordings.rglob("*.wav")), x_vector_only=True,
                            language="swissgerman", max_new_tokens=4)
    assert 0 < wav.numel() <= 4 * 1920


# run.sh's sizes at their smallest: a 4-step codec and talker, two prompts and two held-out sentences, 8 frames each
POST_TRAINING = {"PER_SPEAKER": "2", "CODEC_STEPS": "4", "TALKER_STEPS": "4", "PROMPTS": "2", "HELD_OUT": "2",
                 "MAX_NEW_TOKENS": "8", "GROUP_SIZE": "2", "MIN_GAP": "0", "DPO_STEPS": "2", "GSPO_STEPS": "2",
                 "GSPO_GROUP": "2", "GSPO_PROMPTS": "2"}


def test_post_training_recipe(tmp_path):
    """Demo model → prompts and held-out test sets → eval before → pairs → DPO → GSPO from the DPO export → eval after
    → a table of WER, SIM and MOS for the model before and after (and after DPO alone), from the reports."""
    from datasets import load_from_disk
    from omegaconf import OmegaConf

    work = tmp_path / "work"
    out = recipe("post_training", {"WORK_DIR": work}, env=POST_TRAINING)

    (talker,) = (work / "demo" / "runs" / "talker_demo").iterdir()
    base = talker / "export"
    assert (base / "config.json").is_file() and (base / "speech_tokenizer" / "config.json").is_file()
    for testset in ("prompts", "heldout"):
        rows = [json.loads(line) for line in (work / testset / "testset.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and all(row["language"] == "en" and row["ref_audio"] for row in rows)
    pairs = load_from_disk(str(work / "pairs" / "dataset"))
    assert 1 <= len(pairs) <= 2 and all(row["chosen_reward"] >= row["rejected_reward"] for row in pairs)
    assert set(pairs[0]["chosen_components"]) >= {"intelligibility", "similarity", "naturalness", "eos", "duration"}
    (dpo,) = (work / "runs" / "dpo").iterdir()
    (gspo,) = (work / "runs" / "gspo").iterdir()
    for run, parent in ((dpo, base), (gspo, dpo / "export")):
        assert (run / "adapter" / "adapter_config.json").is_file() and (run / "export" / "config.json").is_file()
        assert OmegaConf.load(run / "config.yaml").task.init_from == str(parent)

    reports = {}
    for name, model in (("before", base), ("after_dpo", dpo / "export"), ("after_gspo", gspo / "export")):
        report = json.loads((work / "eval" / name / "report.json").read_text())
        assert report["settings"]["model"] == str(model), report["settings"]
        reports[name] = report["systems"]["generated"]["overall"]
        assert reports[name]["n"] == 2
    table = (work / "before_after.md").read_text()
    assert table in out
    header, _, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()]
    columns = {name: header.index(name) for name in ("WER/CER ×100 (mean)", "SIM", "DNSMOS/MOS")}
    assert [row[0] for row in rows] == ["Base (before)", "after DPO", "after DPO + GSPO (after)"]
    for row, stats in zip(rows, reports.values()):
        wer, sim, mos = (float(row[i]) for i in columns.values())
        assert wer == pytest.approx(stats["wer"], abs=0.01) and 0 <= wer
        assert sim == pytest.approx(stats["sim"], abs=1e-3) and -1 <= sim <= 1
        assert mos == pytest.approx(stats["mos"], abs=1e-3) and 1 <= mos <= 5
