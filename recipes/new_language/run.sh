#!/usr/bin/env bash
# Usage: run.sh RECORDINGS_DIR CODE NAME BASE_FOLDER WORK_DIR [--tokens FILE] [Hydra overrides...]   (README.md)
set -euo pipefail
if [ $# -lt 5 ]; then sed -n 's/^# Usage: //p' "$0" >&2; exit 2; fi
code=$2 name=$3
recordings=$(realpath "$1") base=$(realpath "$4") work=$(realpath -m "$5")
shift 5
tokens=() train_tokens=() overrides=()
while [ $# -gt 0 ]; do
  case $1 in
    --tokens)
      [ $# -ge 2 ] || { echo "--tokens needs a file (one token a line)" >&2; exit 2; }
      tokens=(--tokens-file "$(realpath "$2")") train_tokens=(task.train_added_tokens=true)
      shift 2 ;;
    *) overrides+=("$1"); shift ;;
  esac
done
repo=$(cd "$(dirname "$0")/../.." && pwd)
py="$repo/.venv/bin/python" qtts="$repo/.venv/bin/qtts"
mkdir -p "$work"
known=$("$py" -c "from qtts.text.languages import is_known_language as k; print(int(k('$code')))")
spec=$code
[ "$known" = 1 ] || spec="$code:$name"
(cd "$repo" && "$py" -m data_prep.folder "$recordings" "$work/manifest.jsonl" --language "$spec")
"$qtts" data validate "$work/manifest.jsonl" "$work/validated" --language "$spec"
"$qtts" data extract-codes "$work/validated/clean.jsonl" "$base" "$work/codes"
"$qtts" languages add "$base" "$work/base_lang" --name "$name" --code "$code" "${tokens[@]}"
languages=()
[ "$known" = 1 ] || languages=("languages=[{code: $code, name: $name}]")
"$py" "$repo/scripts/train.py" experiment=new_language task.init_from="$work/base_lang" data.codes="$work/codes" \
  run_root="$work/runs" "task.train_language_rows=[$name]" "${train_tokens[@]}" "${languages[@]}" "${overrides[@]}"
run=$(ls -d "$work"/runs/new_language/*/ | sort | tail -1); run=${run%/}
echo "language adapter: $run/adapter (merged model: $run/export)"
echo "listen: qtts synth $run --ref-audio REF.wav --ref-text '...' --language $name --text '...' --out out.wav"
