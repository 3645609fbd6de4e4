#!/usr/bin/env bash
# Runs the relay locally on wrangler's embedded workerd with local KV and the demo settings in
# demo/demo.env. Pass your own settings file with ENV_FILE=path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# No network beyond the registries here: skip telemetry and the Request.cf download.
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
exec npx wrangler dev --local --ip 127.0.0.1 --port "${PORT:-8787}" \
  --env-file "${ENV_FILE:-demo/demo.env}" --test-scheduled --show-interactive-dev-session=false "$@"
