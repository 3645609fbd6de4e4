#!/usr/bin/env bash
# Builds the worker (build/index.js + build/index_bg.wasm) with local tools only: worker-build
# would otherwise try to download wasm-bindgen and wasm-opt from GitHub.
set -euo pipefail
cd "$(dirname "$0")/.."
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/esbuild/bin/esbuild}"
worker-build --release "$@"
# worker-build keeps the function-name section (16% of the module); nothing reads it at run time
# (panics abort), so it goes, with the producers section. The features are worker-build's own.
"$WASM_OPT_BIN" build/index_bg.wasm -o build/index_bg.wasm --strip-debug --strip-producers \
  --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int \
  --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling
