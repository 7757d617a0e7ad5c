#!/usr/bin/env bash
# Run one libFuzzer target for a bounded time on a scratch copy of its corpus.
set -euo pipefail
exe=$(realpath "$1") corpus=$(realpath -m "$2")  # absolute: we cd below
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
[ -d "$corpus" ] && cp -r "$corpus"/. "$work/corpus/"
[ -n "$(ls -A "$work/corpus")" ] || { echo "empty corpus: $corpus" >&2; exit 1; }
cd "$work"
exec "$exe" -max_total_time="${FUZZ_SECONDS:-20}" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 "$work/corpus"
