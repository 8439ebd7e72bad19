#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (Catch2 through ctest, one thread each).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test
./scripts/build.sh -DLTK_BUILD_TESTS=ON
# The Hugging Face tokenizers (JavaScript) that the WordPiece parity test compares with.
if [[ ! -d tests/parity/node_modules/@huggingface/tokenizers ]]; then
  (cd tests/parity && npm ci --no-audit --no-fund --silent)
fi
jobs=$(nproc 2>/dev/null || echo 2)
cd build
OMP_NUM_THREADS=1 ctest -j"$jobs" --output-on-failure --timeout 600
