#!/usr/bin/env bash
# Installs what is missing, checks function sizes and the formatting of changed lines, builds, and
# runs every test (Catch2 through ctest, one thread each; a test whose environment is missing here
# is reported as skipped), then every fuzz target for 20 s (scripts/fuzz.sh: clang, libFuzzer, ASan
# and UBSan).
#   LTK_FUZZ_SECONDS=0 scripts/test.sh   skips the fuzzing (the regression inputs still replay in ctest)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test
# The habits a script can check: no function in lib/ over 100 lines, changed lines formatted.
./scripts/check_function_size.sh
./scripts/check_format.sh
./scripts/build.sh -DLTK_BUILD_TESTS=ON
# The Hugging Face tokenizers (JavaScript) that the WordPiece parity test compares with.
if [[ ! -d tests/parity/node_modules/@huggingface/tokenizers ]]; then
  (cd tests/parity && npm ci --no-audit --no-fund --silent)
fi
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)  # (nproc obeys OMP_NUM_THREADS)
(
  cd build
  # One test more than cores: some wait on subprocesses, Python or fsync (measured here: 179 s against 201 s).
  OMP_NUM_THREADS=1 ctest -j"$((jobs + 1))" --output-on-failure --timeout 900
)
seconds=${LTK_FUZZ_SECONDS:-20}
if ((seconds > 0)); then
  ./scripts/fuzz.sh --seconds "$seconds"
fi
