#!/usr/bin/env bash
# The main job: installs what is missing, builds, makes the fortunes corpus, trains
# configs/fortunes_bow.json and evaluates its best checkpoint on the test split.
#   scripts/run.sh [CONFIG [--set key=value ...]]
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-configs/fortunes_bow.json}"
shift || true
./scripts/setup.sh
./scripts/build.sh -DLTK_BUILD_TESTS=OFF
[[ -s data/fortunes_en/train.tsv ]] || ./scripts/data.sh fortunes_en
# The resolved config (pretty-printed, one key per line) names the run directory and test file.
resolved=$(build/bin/ltk-train --config "$config" "$@" --dump-config)
run_dir=$(sed -n 's/^ *"output_dir": *"\([^"]*\)".*/\1/p' <<<"$resolved")
test_file=$(sed -n 's/^ *"test": *"\([^"]*\)".*/\1/p' <<<"$resolved")
build/bin/ltk-train --config "$config" "$@" --overwrite
[[ -n $test_file ]] || { echo "run.sh: $config has no data.test; nothing to evaluate" >&2; exit 0; }
echo "== test metrics (best checkpoint of $run_dir on $test_file)"
build/bin/ltk-eval --run "$run_dir" --data "$test_file" 2>&1
