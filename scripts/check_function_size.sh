#!/usr/bin/env bash
# Fails when a function in lib/ is longer than LIMIT lines (100; its signature to its closing
# brace, as universal-ctags measures it) and is not in scripts/function_size_allowlist.txt, or when
# an entry of that list no longer needs to be there. Each entry says why it stays one function.
#   scripts/check_function_size.sh [LIMIT]
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${1:-100}
allow=scripts/function_size_allowlist.txt
command -v ctags >/dev/null || { echo "check_function_size: needs universal-ctags (scripts/setup.sh --test)" >&2; exit 2; }
long=$(ctags --languages=C++ --c++-kinds=f --fields=+ne -f - -R lib/ltk |
  awk -F'\t' -v limit="$limit" '{
      line = ""; end = ""
      for (i = 4; i <= NF; i++) { if ($i ~ /^line:/) line = substr($i, 6); if ($i ~ /^end:/) end = substr($i, 5) }
      if (end != "" && end - line + 1 > limit) printf "%s:%s %d\n", $2, $1, end - line + 1
    }' | sort)
status=0
while read -r where lines; do
  [[ -n $where ]] || continue
  if ! grep -q "^$where " "$allow"; then
    echo "check_function_size: $where is $lines lines (over $limit): split it, or add it to $allow with the reason it must stay one function" >&2
    status=1
  fi
done <<< "$long"
while read -r where reason; do
  [[ -z $where || $where == \#* ]] && continue
  if ! grep -q "^$where " <<< "$long"; then
    echo "check_function_size: $allow lists $where, which is no longer over $limit lines (or is gone): remove the entry" >&2
    status=1
  fi
done < "$allow"
if ((status == 0)); then
  echo "check_function_size: no function in lib/ over $limit lines but the $(grep -cv '^#\|^$' "$allow" || true) allowed in $allow"
fi
exit $status
