#!/usr/bin/env bash
# Replies benchmark: the router's webhook and the reply processor in one release process against
# the AWS emulator and the fake providers (OpenAI answers after 1 s, a 2 s batching window).
# Prints, per number of concurrent conversations: webhook CPU and AWS calls per inbound message,
# reply-turn CPU and AWS calls per turn, and the latency from a conversation's last message to
# its reply reaching Twilio (p50, p99, max).
# usage: scripts/bench-replies.sh [conversations ...]   (default 1 200)
set -euo pipefail
source "$(dirname "$0")/emulator.sh"
start_bench
trap 'kill "$EMULATOR_PID" 2>/dev/null || true' EXIT
RUST_LOG=error target/release/examples/bench_replies "$@"
