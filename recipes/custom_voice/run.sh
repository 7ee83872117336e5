#!/usr/bin/env bash
# Usage: run.sh RECORDINGS_DIR LANGUAGE BASE_FOLDER WORK_DIR [Hydra overrides...]   (README.md)
set -euo pipefail
if [ $# -lt 4 ]; then sed -n 's/^# Usage: //p' "$0" >&2; exit 2; fi
language=$2
recordings=$(realpath "$1") base=$(realpath "$3") work=$(realpath -m "$4")
shift 4
repo=$(cd "$(dirname "$0")/../.." && pwd)
py="$repo/.venv/bin/python" qtts="$repo/.venv/bin/qtts"
mkdir -p "$work"
(cd "$repo" && "$py" -m data_prep.folder "$recordings" "$work/manifest.jsonl" --language "$language")
"$qtts" data validate "$work/manifest.jsonl" "$work/validated"
"$qtts" data extract-codes "$work/validated/clean.jsonl" "$base" "$work/codes"
"$qtts" speakers add "$base" "$work/codes" "$work/base_with_speakers"
"$py" "$repo/scripts/train.py" experiment=custom_voice task.init_from="$work/base_with_speakers" \
  data.codes="$work/codes" run_root="$work/runs" "$@"
run=$(ls -d "$work"/runs/custom_voice/*/ | sort | tail -1); run=${run%/}
"$qtts" export "$run" "$work/export" --model-type custom_voice
echo "custom voices in $work/export: qtts synth $work/export --speaker NAME --text '...' --out out.wav"
