#!/usr/bin/env bash
# The cluster suite (tests/tests/e2e/cluster.rs): the operator installed from its chart on the local
# control plane (scripts/cluster.sh up, built from Go modules on first use), AWS on the emulator.
# One test at a time: they share the cluster. The in-memory suites (scripts/test.sh) stay the
# fast ones.
set -euo pipefail
source "$(dirname "$0")/emulator.sh"
cd "$ROOT"
scripts/cluster.sh up
eval "$(scripts/cluster.sh env)"
start_emulator
# The same packages and features as scripts/test.sh, so nothing is rebuilt.
cargo build --locked --workspace --all-targets
cargo test --locked -p multicomms-e2e --test e2e -- --ignored --test-threads=1 cluster:: "$@"
