#!/usr/bin/env bash
# Usage: run.sh WORK_DIR   (README.md)
set -euo pipefail
if [ $# -lt 1 ]; then sed -n 's/^# Usage: //p' "$0" >&2; exit 2; fi
# Sizes (CPU by default; each may be set from the environment, README.md has the GPU sizes).
BASE=${BASE:-}                        # the model to improve (a released or exported folder); empty: step 1 makes one
PER_SPEAKER=${PER_SPEAKER:-6}         # step 1's model: `qtts demo` corpus (utterances per synthetic speaker) ...
CODEC_STEPS=${CODEC_STEPS:-60}        # ... its codec training ...
TALKER_STEPS=${TALKER_STEPS:-80}      # ... and its talker pretraining
LANGUAGES=${LANGUAGES:-en}            # test-set languages (codes, comma-separated; the built-in ASR is multilingual)
PROMPTS=${PROMPTS:-12}                # prompts per language to mine pairs and roll out on (the corpus's sentences)
HELD_OUT=${HELD_OUT:-8}               # held-out sentences per language for `qtts eval tts` before and after
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-60}  # most frames (80 ms) per sample, everywhere
GROUP_SIZE=${GROUP_SIZE:-8}           # samples per prompt when mining pairs
MIN_GAP=${MIN_GAP:-0.1}               # prompts whose best and worst rewards differ by less give no pair
REWARDS=${REWARDS:-$(dirname "$0")/rewards.yaml}  # the rewards of mining and GSPO (RewardConfig YAML)
DPO_STEPS=${DPO_STEPS:-40} DPO_LR=${DPO_LR:-5.0e-4}
GSPO_STEPS=${GSPO_STEPS:-20} GSPO_LR=${GSPO_LR:-1.0e-3} GSPO_GROUP=${GSPO_GROUP:-4} GSPO_PROMPTS=${GSPO_PROMPTS:-2}
DEVICE=${DEVICE:-cpu}                 # cpu | cuda (eval, mining, trainer.accelerator)
work=$(realpath -m "$1") rewards=$(realpath "$REWARDS")
repo=$(cd "$(dirname "$0")/../.." && pwd)
py="$repo/.venv/bin/python" qtts="$repo/.venv/bin/qtts"
accelerator=$([ "$DEVICE" = cpu ] && echo cpu || echo gpu)
train=(trainer.accelerator="$accelerator" trainer.devices=1 data.num_workers=0 run_root="$work/runs"
       trainer.enable_progress_bar=false)
mkdir -p "$work"

# 1. a Base model to improve: BASE, or what `make demo` trains (corpus, codec, talker; no custom voice, no evaluation)
if [ -n "$BASE" ]; then
  base=$(realpath "$BASE")
else
  "$qtts" demo --out "$work/demo" --per-speaker "$PER_SPEAKER" --train-steps 0 --codec-steps "$CODEC_STEPS" \
    --talker-steps "$TALKER_STEPS" --voice-steps 0 --eval-sentences 0 | tee "$work/demo.log"
  base=$(sed -n 's/^released-layout Base folder → \(.*\): .*$/\1/p' "$work/demo.log" | tail -1)
  [ -n "$base" ] || { echo "the demo printed no Base folder ($work/demo.log)" >&2; exit 1; }
fi

# 2. prompts (the corpus's sentences, read by corpus voices: the model's own domain) and held-out sentences
(cd "$repo" && "$py" -m data_prep.synthetic "$work/prompts" --testset --text corpus --languages "$LANGUAGES" \
  --per-language "$PROMPTS")
(cd "$repo" && "$py" -m data_prep.synthetic "$work/heldout" --testset --languages "$LANGUAGES" \
  --per-language "$HELD_OUT")

evaluate() {  # evaluate MODEL NAME: WER, SIM and MOS of the model's samples of the held-out sentences
  "$qtts" eval tts "$1" "$work/heldout/testset.jsonl" --out "$work/eval/$2" --sim --mos --device "$DEVICE" \
    --max-new-tokens "$MAX_NEW_TOKENS" --no-progress
}
newest() { local run; run=$(ls -d "$work/runs/$1"/*/ | sort | tail -1); echo "${run%/}"; }

# 3. before
evaluate "$base" before
# 4. preference pairs from the model's own samples, ranked by the rewards (ASR intelligibility, SIM, MOS, EOS, length)
"$qtts" mine-pairs "$base" "$work/prompts/testset.jsonl" --out "$work/pairs" --rewards "$rewards" --group-size "$GROUP_SIZE" \
  --min-gap "$MIN_GAP" --max-new-tokens "$MAX_NEW_TOKENS" --device "$DEVICE" --no-progress
# 5. DPO (LoRA; the reference is the adapter turned off), exported merged
"$qtts" train experiment=dpo task.init_from="$base" data.pairs="$work/pairs" "${train[@]}" \
  trainer.max_steps="$DPO_STEPS" task.lr="$DPO_LR" task.warmup_steps=0 trainer.log_every_n_steps=1
dpo=$(newest dpo)
evaluate "$dpo/export" after_dpo
# 6. GSPO from the DPO export, on-line on the same prompts
"$qtts" train experiment=gspo task.init_from="$dpo/export" data.prompts="$work/prompts/testset.jsonl" "${train[@]}" \
  trainer.max_steps="$GSPO_STEPS" task.lr="$GSPO_LR" task.group_size="$GSPO_GROUP" task.rewards="$rewards" data.batch_size="$GSPO_PROMPTS" \
  task.sampling.max_new_tokens="$MAX_NEW_TOKENS" checkpoint.every_n_steps="$GSPO_STEPS"
gspo=$(newest gspo)
# 7. after
evaluate "$gspo/export" after_gspo

# 8. before / after: one table from the three report.json files
"$py" - "$work" <<'EOF'
import json, sys
from pathlib import Path
from qtts.eval.report import format_comparison

work = Path(sys.argv[1])
labels = {"before": "Base (before)", "after_dpo": "after DPO", "after_gspo": "after DPO + GSPO (after)"}
table = format_comparison({label: json.loads((work / "eval" / name / "report.json").read_text())
                           ["systems"]["generated"]["overall"] for name, label in labels.items()})
(work / "before_after.md").write_text(table, encoding="utf-8")
print(table)
EOF
echo "before/after on the held-out sentences: $work/before_after.md (per utterance: $work/eval/*/results.jsonl)"
echo "improved model: $gspo/export"
