#!/usr/bin/env bash
# The fault suite (tests/examples/faults/): crash storms, AWS outages, provider faults, abuse of
# the router, replies under faults, operator restarts, the recipient lifecycle (STOP races,
# shuffled status callbacks, erasures mid-turn), and a search for leaked credentials,
# driving the built binaries against the AWS emulator and the fake providers. Prints one table
# row per scenario and exits non-zero when anything was lost, duplicated or leaked.
# usage: scripts/faults.sh [--full] [scenario-number ...]
#   default: the small sizes CI runs; --full: the sizes users run (see tests/examples/faults/).
# Logs of the last run: target/faults/ (FAULTS_LOG sets the binaries' and the suite's log filter).
set -euo pipefail
source "$(dirname "$0")/emulator.sh"
SCHEMATHESIS_VERSION="4.32.5"
ensure_venv
if [ ! -x "$VENV/bin/schemathesis" ]; then
  echo "Installing schemathesis $SCHEMATHESIS_VERSION into $VENV ..." >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
export SCHEMATHESIS="$VENV/bin/schemathesis"
start_emulator
cd "$ROOT"
# The debug build the tests use (built once, shared with scripts/test.sh): the suite's figures
# are counts, not speeds.
cargo build --locked -q --workspace --bins --examples
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
target/debug/examples/faults "$@"
