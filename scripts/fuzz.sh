#!/usr/bin/env bash
# Runs every fuzz target of core/fuzz for FUZZ_SECONDS each (default 30), so that a regression in
# a parser of outside input fails the build. cargo-fuzz needs the nightly toolchain, which
# scripts/setup.sh installs with cargo-fuzz itself.
set -euo pipefail
cd "$(dirname "$0")/../core"
seconds="${FUZZ_SECONDS:-30}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo +nightly fuzz build --release
for target in $(cargo +nightly fuzz list); do
  # Each target's corpus is kept under core/fuzz/corpus (ignored by git) between local runs.
  if ! cargo +nightly fuzz run --release "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "[fuzz] $target failed: the input is under core/fuzz/artifacts/$target" >&2
    exit 1
  fi
  printf '[fuzz] %-16s %s\n' "$target" "$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1)"
done
