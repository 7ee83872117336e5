#!/usr/bin/env bash
# Usage: run.sh MANIFEST.jsonl WORK_DIR [Hydra overrides...]   (README.md)
set -euo pipefail
if [ $# -lt 2 ]; then sed -n 's/^# Usage: //p' "$0" >&2; exit 2; fi
manifest=$1 work=$2
shift 2
repo=$(cd "$(dirname "$0")/../.." && pwd)
"$repo/.venv/bin/qtts" data validate "$manifest" "$work/validated"
"$repo/.venv/bin/qtts" data build "$work/validated/clean.jsonl" "$work/corpus" --no-text-ids
"$repo/.venv/bin/python" "$repo/scripts/train.py" experiment=speaker_encoder_demo model=speaker_encoder \
  data.corpus="$work/corpus" run_root="$work/runs" trainer.max_steps=20000 checkpoint.every_n_steps=1000 "$@"
