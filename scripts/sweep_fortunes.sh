#!/usr/bin/env bash
# The sweeps behind docs/sweeps.md, on data/fortunes_en: bow and sparse bow over learning rate,
# embedding size and hashed n-grams (3 seeds each), and trainer.bucket_pool on/off for the
# sequence models (3 seeds, 1 epoch) and for BERT fine-tuned from the masked-LM run (3 seeds, 5
# epochs). Run alone: they use every core (--jobs = cores).
# An asha sweep (successive halving) beside the full grid it replaces, sparse bow at 9 epochs.
# BERT's fine-tuning in bf16 autocast beside float32 (3 seeds; needs a CPU with native bf16).
#   scripts/sweep_fortunes.sh [bow|sparse|asha|bucket|bucket_bert|bf16_bert ...]   (default: all six)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f data/fortunes_en/train.tsv ]] || ./scripts/data.sh fortunes_en
jobs=$(getconf _NPROCESSORS_ONLN)  # not nproc: it obeys OMP_NUM_THREADS
mkdir -p docs/sweeps
which=("$@")
((${#which[@]})) || which=(bow sparse asha bucket bucket_bert bf16_bert)
for w in "${which[@]}"; do
  start=$(date +%s)
  case $w in
    bow) build/bin/ltk-sweep --config configs/fortunes_bow.json --space configs/sweeps/fortunes_bow_space.json \
           --out runs/sweep_bow --seeds 3 --jobs "$jobs" > /dev/null ;;
    sparse) build/bin/ltk-sweep --config configs/fortunes_bow_sparse.json \
              --space configs/sweeps/fortunes_bow_sparse_space.json --out runs/sweep_bow_sparse --seeds 3 \
              --jobs "$jobs" > /dev/null ;;
    asha) # successive halving against the full grid, sparse bow at 9 epochs
      build/bin/ltk-sweep --config configs/fortunes_bow_sparse.json --set trainer.epochs=9 \
        --space configs/sweeps/fortunes_bow_sparse_space.json --out runs/sweep_sparse9_asha --seeds 3 --jobs "$jobs" \
        --strategy asha --eta 3 > /dev/null
      build/bin/ltk-sweep --config configs/fortunes_bow_sparse.json --set trainer.epochs=9 \
        --space configs/sweeps/fortunes_bow_sparse_space.json --out runs/sweep_sparse9_grid --seeds 3 --jobs "$jobs" \
        > /dev/null ;;
    bucket)
      for m in textcnn rnn transformer; do
        build/bin/ltk-sweep --config "configs/fortunes_$m.json" --set trainer.epochs=1 \
          --space configs/sweeps/bucket_pool_space.json --out "runs/sweep_bucket_$m" --seeds 3 --jobs "$jobs" > /dev/null
      done ;;
    bucket_bert) # BERT fine-tuned as configs/fortunes_bert.json does it (5 epochs), from the MLM run
      [[ -f runs/fortunes_mlm/bert/config.json ]] || build/bin/ltk-train --config configs/fortunes_mlm.json > /dev/null
      build/bin/ltk-sweep --config configs/fortunes_bert.json --space configs/sweeps/bucket_pool_space.json \
        --out runs/sweep_bucket_bert --seeds 3 --jobs "$jobs" > /dev/null ;;
    bf16_bert) # the same fine-tuning, trainer.precision fp32 against bf16
      [[ -f runs/fortunes_mlm/bert/config.json ]] || build/bin/ltk-train --config configs/fortunes_mlm.json > /dev/null
      build/bin/ltk-sweep --config configs/fortunes_bert.json --space configs/sweeps/precision_space.json \
        --out runs/sweep_bf16_bert --seeds 3 --jobs "$jobs" > /dev/null ;;
    *) echo "unknown sweep $w" >&2; exit 2 ;;
  esac
  echo "$w: $(( $(date +%s) - start )) s wall" | tee -a docs/sweeps/wall_times.txt >&2
done
for d in runs/sweep_*; do
  [[ -f $d/leaderboard.md ]] && cp "$d/leaderboard.md" "docs/sweeps/$(basename "$d").md" && cp "$d/leaderboard.json" "docs/sweeps/$(basename "$d").json"
done
