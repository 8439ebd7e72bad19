#!/usr/bin/env bash
# Builds ltk against a CUDA LibTorch (e.g. the one inside a PyTorch 2.x installation) with the same
# CMake code, then trains and evaluates every example config on the GPU and checks that a
# GPU-trained run evaluates the same on the CPU. Needs the build dependencies (scripts/setup.sh)
# and data/fortunes_en (scripts/data.sh). Extra CMAKE_PREFIX_PATH entries go in LTK_PREFIX_PATH.
#   scripts/gpu_check.sh [python3-with-torch]
set -euo pipefail
cd "$(dirname "$0")/.."
py="${1:-python3}"
torch_prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DLTK_BUILD_TESTS=OFF \
  -DCMAKE_PREFIX_PATH="$torch_prefix${LTK_PREFIX_PATH:+;$LTK_PREFIX_PATH}" >/dev/null
cmake --build build-gpu -j"$(nproc)"
for m in bow textcnn rnn transformer; do
  build-gpu/bin/ltk-train --config "configs/fortunes_$m.json" --set device=cuda --set output_dir="runs/gpu_$m" \
    --set trainer.log_every=1000 --overwrite
done
echo "== GPU-trained rnn on cuda, then on the cpu (the same figures expected)"
build-gpu/bin/ltk-eval --run runs/gpu_rnn --data data/fortunes_en/test.tsv --device cuda 2>&1 | head -2
build-gpu/bin/ltk-eval --run runs/gpu_rnn --data data/fortunes_en/test.tsv --device cpu 2>&1 | head -2
# The Hugging Face fixtures of tests/test_io.cpp (reported as skipped until they are committed): made
# wherever transformers is installed, as on the device machine.
if "$py" -c 'import transformers' 2>/dev/null; then
  "$py" scripts/make_hf_fixtures.py make tests/fixtures/hf_bert
  echo "== made tests/fixtures/hf_bert: commit it"
fi
