#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang, AddressSanitizer and UndefinedBehaviorSanitizer
# into build-fuzz/, and runs each for a bounded time, two at a time on two cores.
#   scripts/fuzz.sh                     every target, 20 s each (what CI runs)
#   scripts/fuzz.sh --seconds 600 tokenize config
#   scripts/fuzz.sh --runs 0            build only
# A target's corpus grows in build-fuzz/corpus/TARGET (seeded from tests/fuzz/seeds and
# tests/fuzz/regressions); a finding (crash, hang > 10 s, leak, sanitizer report, an exception other
# than an ltk error, more than 2.5 GB of memory) is written to build-fuzz/findings/TARGET/ and makes the
# script exit 1. Keep it: copy it into tests/fuzz/regressions/TARGET/, fix the cause, and ctest replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=20
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)  # (nproc obeys OMP_NUM_THREADS)
build_only=0
targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --runs) [[ "$2" == 0 ]] && build_only=1; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

./scripts/setup.sh --fuzz
cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang -DLTK_FUZZ=ON \
      -DLTK_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz --target ltk_fuzz -j"$jobs"
((build_only)) && exit 0

if ((${#targets[@]} == 0)); then
  for f in build-fuzz/bin/fuzz-*; do targets+=("${f##*/fuzz-}"); done
fi
dict_of() {
  case "$1" in
    reader_tsv|reader_csv) echo csv ;;
    reader_jsonl|config|hf_config|checkpoint_state|shard) echo json ;;
    tokenize|vocab|jieba_dict|http_request) echo text ;;
    weights|raw_weights) echo pickle ;;
    safetensors) echo safetensors ;;
  esac
}
mkdir -p build-fuzz/logs
export OMP_NUM_THREADS=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp
run_one() {
  local t=$1 exe=build-fuzz/bin/fuzz-$1
  [[ -x $exe ]] || { echo "fuzz.sh: no target $t (have: $(ls build-fuzz/bin | sed -n 's/^fuzz-//p' | tr '\n' ' '))" >&2; return 2; }
  mkdir -p "build-fuzz/corpus/$t" "build-fuzz/findings/$t"
  local dirs=("build-fuzz/corpus/$t")
  for d in tests/fuzz/seeds/$t tests/fuzz/regressions/$t; do [[ -d $d ]] && dirs+=("$d"); done
  local dict=() d
  d=$(dict_of "$t")
  [[ -n $d ]] && dict=(-dict="tests/fuzz/dicts/$d.dict")
  "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 -print_final_stats=1 "${dict[@]}" \
         -artifact_prefix="build-fuzz/findings/$t/" "${dirs[@]}" >"build-fuzz/logs/$t.log" 2>&1
}
status=0
pids=() names=()
for t in "${targets[@]}"; do
  while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
  run_one "$t" & pids+=($!) names+=("$t")
done
for i in "${!pids[@]}"; do
  t=${names[$i]}
  if wait "${pids[$i]}"; then result=ok; else result=FINDING; status=1; fi
  line=$(grep -a -E '^#[0-9]+[[:space:]]+(DONE|INITED)' "build-fuzz/logs/$t.log" | tail -1 || true)
  execs=$(grep -a -m1 'stat::number_of_executed_units' "build-fuzz/logs/$t.log" | awk '{print $2}' || true)
  printf '%-17s %-7s %8s runs  %s\n' "$t" "$result" "${execs:-?}" "$(sed -E 's/^#[0-9]+[[:space:]]+[A-Z]+[[:space:]]+//; s/ (lim|exec\/s|rss).*//' <<<"$line")"
  if [[ $result != ok ]]; then
    grep -a -E 'ltk fuzz finding|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY' "build-fuzz/logs/$t.log" | head -5 | sed 's/^/    /'
    ls build-fuzz/findings/"$t"/ | sed 's/^/    input: build-fuzz\/findings\/'"$t"'\//' | head -3
  fi
done
exit $status
