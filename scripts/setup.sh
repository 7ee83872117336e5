#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: espeak-ng, ffmpeg, sox (gcc if missing), then .venv (pinned stack).
# Quick when nothing changed: the pip step runs only when pyproject.toml differs from the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v sox >/dev/null 2>&1 || missing+=(sox)  # the sox Python package (via qwen-tts) warns on import without it
command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)  # pesq (a dev dependency) ships only as source
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -c 'import sys; assert sys.version_info >= (3, 11), "qtts needs Python 3.11+"'
  "$python" -m venv .venv
fi
stamp=.venv/.qtts-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch from PyPI is a CUDA build: ~6 GB installed. No pip cache, so the wheels are not kept twice.
  free_gb=$(df -Pk . | awk 'NR==2 {print int($4 / 1048576)}')
  if [ "$free_gb" -lt 8 ]; then
    echo "setup needs about 8 GB free for .venv; $(pwd) has ${free_gb} GB (df -h .)" >&2
    exit 1
  fi
  echo "installing the Python stack into .venv (first time: a few minutes)"
  if ! .venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check -e ".[dev,deepspeed,eval]" >.venv/pip.log 2>&1; then
    grep -v "^WARNING: Location" .venv/pip.log | tail -40
    exit 1
  fi
  .venv/bin/python -c "import qtts, torch, torchaudio, lightning, qwen_tts" >/dev/null
  echo "$want" > "$stamp"
fi
