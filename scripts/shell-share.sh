#!/usr/bin/env bash
# The shell's share of the non-test Rust lines: every line of src/ and core/src/ (subfolders
# included) before a file's first `#[cfg(test)]`, blank lines included. Test code is not counted:
# core/src/testing/ (the in-memory ports, compiled only for tests) and the `tests.rs` and
# `*_tests.rs` files of module folders (declared under `#[cfg(test)]`).
set -euo pipefail
cd "$(dirname "$0")/.."
count() {
  local total=0 n f
  for f in "$@"; do
    n=$(awk '/^#\[cfg\(test\)\]/ { exit } { n++ } END { print n + 0 }' "$f")
    total=$((total + n))
  done
  echo "$total"
}
shell=$(count $(find src -name '*.rs' ! -name tests.rs | sort))
core=$(count $(find core/src -name '*.rs' ! -name tests.rs ! -name '*_tests.rs' ! -path 'core/src/testing/*' | sort))
all=$((shell + core))
printf 'shell (src/)       %5d\ncore (core/src/)   %5d\nshell share        %5s%%\n' \
  "$shell" "$core" "$(awk -v s="$shell" -v a="$all" 'BEGIN { printf "%.1f", 100 * s / a }')"
