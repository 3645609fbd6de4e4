#!/usr/bin/env bash
# Every test: formatting and lints (host and wasm32), the native core tests, every fuzz target
# for 30 s, the Miniflare tests against the built worker, then the operator console in a real
# browser against `wrangler dev` with the demo settings.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

step() { printf '\n=== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (host)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo clippy (wasm32)"
cargo clippy --workspace --lib --target wasm32-unknown-unknown --locked -- -D warnings

step "native tests"
cargo test --workspace --locked

step "fuzz every parser of outside input (FUZZ_SECONDS=${FUZZ_SECONDS:-30} each)"
bash scripts/fuzz.sh

step "build the worker"
bash scripts/build.sh

step "Miniflare tests"
node --test --test-concurrency=1 tests/miniflare/

step "the console in a real browser (Chromium, wrangler dev)"
node --test --test-concurrency=1 tests/browser/
