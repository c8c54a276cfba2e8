#!/usr/bin/env bash
# The test command: starts the AWS emulator, runs every test of the workspace against it.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -p multicomms-operator company).
set -euo pipefail
source "$(dirname "$0")/emulator.sh"
start_emulator
cd "$ROOT"
# The end-to-end tests run the operator binary: build it first.
cargo build --locked --workspace --bins
cargo test --locked --workspace "$@"
