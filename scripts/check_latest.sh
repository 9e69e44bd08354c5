#!/usr/bin/env bash
# Runs the test suite against the newest releases of everything except torch, in a throw-away venv, so that
# an upstream release that breaks rest_hf is seen here before a user sees it. When it passes, refresh
# constraints.txt from the venv it leaves (`VENV/bin/pip freeze --exclude-editable`).
#
# Usage: scripts/check_latest.sh [VENV_DIR]   (default: .venv-latest; recreated on every run)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-latest}
torch_only=$(mktemp)
trap 'rm -f "$torch_only"' EXIT
# Only the torch pins stay: without them pip resolves a multi-GB CUDA build.
grep -E '^(torch|torchvision)[=<>]' constraints.txt >"$torch_only"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q --upgrade -c "$torch_only" -e '.[dev,demo]'
echo "newest releases under test:"
"$venv/bin/pip" freeze --exclude-editable | grep -iE "^(transformers|accelerate|huggingface.hub|safetensors|datasets|rasterio|numpy|gradio|pillow|selenium)=="
"$venv/bin/ruff" check .
HF_HUB_OFFLINE=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider tests
