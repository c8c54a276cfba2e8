#!/usr/bin/env bash
# The main job, locally: start the AWS emulator, `apply` the example Channels and Company from
# config/ (with the local-only Secrets), show that a second run changes nothing, and show the
# deliberately invalid examples being rejected.
set -euo pipefail
source "$(dirname "$0")/emulator.sh"
start_emulator
cd "$ROOT"
cargo build --locked --quiet -p multicomms-operator
operator="$ROOT/target/debug/multicomms-operator"
examples=(-f config/channels -f config/companies -f config/examples/local --namespace multicomms-dev)

echo; echo "== plan (nothing exists yet)"
"$operator" plan "${examples[@]}"
echo; echo "== apply"
"$operator" apply "${examples[@]}"
echo; echo "== apply again: nothing to change"
"$operator" apply "${examples[@]}"
echo; echo "== plan the invalid examples: each is rejected, naming the field"
"$operator" plan -f config/examples/invalid || true
