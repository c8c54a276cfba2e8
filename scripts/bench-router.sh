#!/usr/bin/env bash
# Router benchmark: the release router against the AWS emulator, loaded over loopback by
# the test kit's load-generator. Prints accepted/s, p50/p99, the router's CPU seconds per 1000 accepted
# requests, SQS requests per accepted request, the router's resident memory before and after
# (each client holds one keep-alive connection: concurrency 10000 holds 10,000), and how busy
# the emulator was (its CPU time over
# wall time; at >= 0.85 of its one core the emulator is the limit, else ours).
# usage: scripts/bench-router.sh [requests] [concurrency]   (default 2000 64)
set -euo pipefail
ulimit -n 65536 2>/dev/null || true # one descriptor per client on both sides
requests="${1:-2000}"
concurrency="${2:-64}"
source "$(dirname "$0")/emulator.sh"
start_emulator
cd "$ROOT"
cargo build --locked --release -q --workspace --bins --examples

work="$(mktemp -d)"
prefix="bench$$"
apply_bench_examples "$prefix" "$work"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
MULTICOMMS_PREFIX="$prefix" MULTICOMMS_ENV=bench RUST_LOG=warn \
  target/release/multicomms-router --address "127.0.0.1:$port" > "$ROOT/target/router-bench.log" 2>&1 &
router=$!
trap 'kill "$router" 2>/dev/null || true; kill "$EMULATOR_PID" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

cpu() { awk '{print $14 + $15}' "/proc/$router/stat"; }
rss() { awk '/VmRSS/ {print $2 / 1024}' "/proc/$router/status"; }
rss_before="$(rss)"
before="$(cpu)"; emulator_before="$(emulator_cpu_seconds)"; start="$(date +%s.%N)"
target/release/load-generator "http://127.0.0.1:$port/initiate-conversation" local-demo-router-key-not-a-secret \
  "$requests" "$concurrency"
after="$(cpu)"; emulator_after="$(emulator_cpu_seconds)"; end="$(date +%s.%N)"
echo "router RSS MiB: ${rss_before} before, $(rss) after, peak $(awk '/VmHWM/ {print $2 / 1024}' "/proc/$router/status")"
python3 - "$port" "$before" "$after" "$emulator_before" "$emulator_after" "$start" "$end" <<'PY'
import sys, urllib.request
port, before, after = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
emulator_busy = (float(sys.argv[5]) - float(sys.argv[4])) / (float(sys.argv[7]) - float(sys.argv[6]))
metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
def value(prefix):
    return sum(float(l.split()[-1]) for l in metrics.splitlines() if l.startswith(prefix))
accepted = value('multicomms_router_requests_total{route="/initiate-conversation",status="200"')
batches = value("multicomms_router_sqs_batch_size_count")
cpu_seconds = (after - before) / 100.0
print(f"router: accepted={accepted:.0f} cpu_s_per_1000_accepted={cpu_seconds / accepted * 1000:.3f} "
      f"sqs_requests_per_accepted={batches / accepted:.3f} emulator_busy={emulator_busy:.2f} "
      f"limit={'emulator' if emulator_busy >= 0.85 else 'ours'}")
PY
