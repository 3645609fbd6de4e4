#!/usr/bin/env bash
# Builds the worker (build/index.js + build/index_bg.wasm) with local tools only: worker-build
# would otherwise try to download wasm-bindgen and wasm-opt from GitHub.
set -euo pipefail
cd "$(dirname "$0")/.."
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/esbuild/bin/esbuild}"
exec worker-build --release "$@"
