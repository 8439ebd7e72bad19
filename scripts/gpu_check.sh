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
# trainer.precision on the GPU: a BERT-base-shaped encoder (12 x 768, from scratch, its own
# wordpiece vocabulary) fine-tuned for one epoch in fp32, bf16 and fp16 (autocast with ltk's loss
# scaler, which the CPU tests check against PyTorch's GradScaler but no GPU has run yet): samples/s,
# the loss scale and skipped steps, and test accuracy, to compare with fp32's.
base='{"type": "bert", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
  "intermediate_size": 3072, "max_position_embeddings": 128}'
for p in fp32 bf16 fp16; do
  echo "== BERT-base shape, trainer.precision $p"
  # (the whole log kept: a failed run must show its error, not stop the script in a grep)
  build-gpu/bin/ltk-train --config configs/fortunes_bert.json --set model="$base" \
    --set data.tokenizer='{"type": "wordpiece", "vocab_size": 8000}' --set trainer.epochs=1 \
    --set trainer.precision="$p" --set device=cuda --set output_dir="runs/gpu_bert_$p" --overwrite \
    > "runs/gpu_bert_$p.log" 2>&1 || echo "ltk-train failed, exit $?: see runs/gpu_bert_$p.log"
  grep -E "\[precision\]|\[train\] (done|loss scale)|\[test\]|error" "runs/gpu_bert_$p.log" || true
done
# The Hugging Face fixtures of tests/test_io.cpp (reported as skipped until they are committed): made
# wherever transformers is installed, as on the device machine.
if "$py" -c 'import transformers' 2>/dev/null; then
  "$py" scripts/make_hf_fixtures.py make tests/fixtures/hf_bert
  echo "== made tests/fixtures/hf_bert: commit it"
fi
