#!/usr/bin/env bash
# Benchmark of `apply` from cold against the AWS emulator (see operator/examples/bench_apply.rs).
# usage: scripts/bench-apply.sh [N ...]   (default: 100 1000)
set -euo pipefail
source "$(dirname "$0")/emulator.sh"
start_emulator
cd "$ROOT"
cargo build --locked --release -q --workspace --bins --examples
echo
echo "| companies | concurrency | cold apply companies/s | AWS calls/company (cold) | cold calls/s ÷ raw PutItem/s | no-op re-apply, new process: companies/s | calls/company | no-op resync, same operator: companies/s | calls/company | AWS writes (no-op, resync) | operator CPU ms/company (cold) | (resync) | emulator raw PutItem/s | peak RSS MiB | emulator busy, whose limit (cold) | (re-apply) | (resync) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 1000)
for companies in "${sizes[@]}"; do
  target/release/examples/bench_apply "$companies" 16
done
