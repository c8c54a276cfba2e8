#!/usr/bin/env bash
# The test command: starts the AWS emulator, runs every test of the workspace against it.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -p multicomms-operator company).
set -euo pipefail
source "$(dirname "$0")/emulator.sh"
start_emulator
# The inbox's test drives a real browser: Debian's Chromium through ChromeDriver.
if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium chromium-driver >/dev/null
fi
cd "$ROOT"
# The end-to-end tests run the built binaries: build every target first, in one invocation, so
# dependencies are built once with the features the tests unify (`--bins` alone resolves a
# second set without the dev-dependencies' features: twice the time and the disk).
cargo build --locked --workspace --all-targets
cargo test --locked --workspace "$@"
