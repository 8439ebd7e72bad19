#!/usr/bin/env bash
# Fails when a C++ line changed since BASE (default: the commit before HEAD; uncommitted changes
# count too) is not as clang-format (.clang-format: Google style, 120 columns) would write it; the
# lines it would change are printed. Code nobody touched is left as it is.
#   scripts/check_format.sh [BASE]        e.g. scripts/check_format.sh origin/main
set -euo pipefail
cd "$(dirname "$0")/.."
diff_tool=$(command -v clang-format-diff-14 || command -v clang-format-diff || true)
[[ -n $diff_tool ]] || { echo "check_format: needs clang-format (scripts/setup.sh --test)" >&2; exit 2; }
base=${1:-${LTK_FORMAT_BASE:-HEAD~1}}
if ! git rev-parse --verify -q "$base^{commit}" >/dev/null; then
  echo "check_format: no commit $base to compare with (a shallow clone?): nothing checked"
  exit 0
fi
out=$(git diff -U0 --no-color "$base" -- 'lib/*.cpp' 'lib/*.h' 'apps/*.cpp' 'apps/*.h' 'tests/*.cpp' 'tests/*.h' \
        'examples/*.cpp' 'bench/*.cpp' | "$diff_tool" -p1 || true)
if [[ -n $out ]]; then
  echo "$out"
  echo "check_format: lines changed since $base are not clang-format's (above); run: git diff -U0 $base | $(basename "$diff_tool") -p1 -i" >&2
  exit 1
fi
echo "check_format: the C++ lines changed since $base are formatted"
