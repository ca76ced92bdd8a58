#!/usr/bin/env bash
# README command (b), which CI runs (.ci/run): install, then the plain test process, then the
# interpreted-Triton test process (last, so that the log closes on pytest's summary).
# tests/test_readme.py checks that the command line below is README's "# (b)" line verbatim.
set -euo pipefail
cd "$(dirname "$0")/.."
set -x
pip install torch==2.13.0 ninja && pip install --no-build-isolation -e ".[test]" && export ALAE_FAST_DATA=../shared/data/mnist && python -m pytest tests -q && TRITON_INTERPRET=1 python -m pytest tests -q
