#!/usr/bin/env bash
# Installs dfnas with its test extras into a virtual environment and runs the whole test suite:
# unit tests, the benchmarks as quick tests (one run each, no timing), and the CUDA compile check.
# Usage: bash scripts/test.sh            (venv in ./.venv; DFNAS_VENV=path to put it elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${DFNAS_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"

# torch first: the extension builds against the torch installed here (see _build/backend.py).
pip install --quiet --upgrade pip
pip install --quiet torch==2.13.0
pip install --quiet ".[test]"      # includes triton (Triton kernels run under its interpreter)

# `pytest`, not `python -m pytest`: the latter puts the source tree first on sys.path, and the
# tests must exercise the installed package (compiled extension, package data).
pytest -q tests
pytest -q benchmarks --benchmark-disable
