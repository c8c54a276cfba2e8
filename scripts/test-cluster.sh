#!/usr/bin/env bash
# The controller against a real cluster (e.g. `kind create cluster`), AWS on the local emulator.
# Needs KUBECONFIG; fails without it (it never skips).
set -euo pipefail
if [ -z "${KUBECONFIG:-}" ]; then
  echo "KUBECONFIG is not set: point it at a test cluster (e.g. kind) to run this suite" >&2
  exit 1
fi
source "$(dirname "$0")/emulator.sh"
start_emulator
cd "$ROOT"
cargo test --locked -p multicomms-operator --test integration cluster:: -- --ignored "$@"
