#!/usr/bin/env bash
# Router benchmark: the release router against the AWS emulator, loaded over loopback by
# the test kit's load-generator. Prints accepted/s, p50/p99, the router's CPU seconds per 1000 accepted
# requests, SQS requests per accepted request, the router's resident memory before and after
# (each client holds one keep-alive connection: concurrency 10000 holds 10,000), and how busy
# the emulator was (its CPU time over
# wall time; at >= 0.85 of its one core the emulator is the limit, else ours).
# Then, in the same run, the original's router handler (tests/original/router_lambda.py, Python
# and boto3, reconstructed from the spec) against the same emulator and company with a tenth of
# the requests (MULTICOMMS_ORIGINAL_REQUESTS; 0 skips it), at most 64 clients, and the ratio of
# CPU per accepted request.
# usage: scripts/bench-router.sh [requests] [concurrency]   (default 2000 64)
#        MULTICOMMS_ROUTER_BINARY=target/dist/multicomms-router runs another build of the router
#        (the images' `dist` profile, say) for a side-by-side comparison.
set -euo pipefail
ulimit -n 65536 2>/dev/null || true # one descriptor per client on both sides
requests="${1:-2000}"
concurrency="${2:-64}"
source "$(dirname "$0")/emulator.sh"
start_bench

work="$(mktemp -d)"
prefix="bench$$"
apply_bench_examples "$prefix" "$work"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="$(free_port)"; metrics_port="$(free_port)"
MULTICOMMS_PREFIX="$prefix" MULTICOMMS_ENV=bench RUST_LOG=warn \
  "${MULTICOMMS_ROUTER_BINARY:-target/release/multicomms-router}" --address "127.0.0.1:$port" \
  --metrics-address "127.0.0.1:$metrics_port" > "$ROOT/target/router-bench.log" 2>&1 &
router=$!
trap 'kill "$router" 2>/dev/null || true; kill "$EMULATOR_PID" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

cpu() { awk '{print $14 + $15}' "/proc/$router/stat"; }
rss() { awk '/VmRSS/ {print $2 / 1024}' "/proc/$router/status"; }
rss_before="$(rss)"
# The router's memory once a second while loaded: flat means the last quarter of the run holds
# no more than the second quarter did.
(while kill -0 "$router" 2>/dev/null; do rss; sleep 1; done) > "$work/rss" 2>/dev/null &
before="$(cpu)"; emulator_before="$(emulator_cpu_seconds)"; start="$(date +%s.%N)"
target/release/load-generator "http://127.0.0.1:$port/initiate-conversation" local-demo-router-key-not-a-secret \
  "$requests" "$concurrency"
after="$(cpu)"; emulator_after="$(emulator_cpu_seconds)"; end="$(date +%s.%N)"
echo "router RSS MiB: ${rss_before} before, $(rss) after, peak $(awk '/VmHWM/ {print $2 / 1024}' "/proc/$router/status")"
python3 - "$work/rss" <<'PY'
import sys
samples = [float(l) for l in open(sys.argv[1]) if l.strip()]
if len(samples) >= 8:
    q = len(samples) // 4
    second, last = samples[q:2 * q], samples[3 * q:]
    print(f"router RSS MiB over the run ({len(samples)} samples, 1 s apart): second quarter max {max(second):.1f}, "
          f"last quarter max {max(last):.1f}, growth {max(last) - max(second):+.1f}")
PY
python3 - "$metrics_port" "$before" "$after" "$emulator_before" "$emulator_after" "$start" "$end" "$work/ours" <<'PY'
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
open(sys.argv[8], "w").write(str(cpu_seconds / accepted))
PY
kill "$router" 2>/dev/null || true

original_requests="${MULTICOMMS_ORIGINAL_REQUESTS:-$((requests / 10))}"
[ "$original_requests" -gt 0 ] || exit 0
export AWS_DEFAULT_REGION="$AWS_REGION" # boto3's name for it
queues="$("$VENV/bin/python" -c 'import boto3, sys
sqs = boto3.client("sqs")
print(" ".join(sqs.get_queue_url(QueueName=f"{sys.argv[1]}-{c}-queue-bench")["QueueUrl"] for c in ("whatsapp", "sms", "email")))' "$prefix")"
read -r whatsapp_queue sms_queue email_queue <<< "$queues"
original_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
COMPANY_DATA_TABLE="$prefix-company-data-bench" WHATSAPP_QUEUE_URL="$whatsapp_queue" SMS_QUEUE_URL="$sms_queue" \
  EMAIL_QUEUE_URL="$email_queue" VERSION=router-bench-1.0.0 \
  "$VENV/bin/python" tests/original/router_lambda.py "$original_port" > "$ROOT/target/original-router-bench.log" 2>&1 &
router=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$original_port") 2>/dev/null && break; sleep 0.1; done
before="$(cpu)"; emulator_before="$(emulator_cpu_seconds)"; start="$(date +%s.%N)"
result="$(target/release/load-generator "http://127.0.0.1:$original_port/initiate-conversation" unused \
  "$original_requests" "$((concurrency < 64 ? concurrency : 64))" all "$requests")"
after="$(cpu)"; emulator_after="$(emulator_cpu_seconds)"; end="$(date +%s.%N)"
echo "original handler: $result"
python3 - "$result" "$before" "$after" "$emulator_before" "$emulator_after" "$start" "$end" "$work/ours" <<'PY'
import sys
fields = dict(f.split("=") for f in sys.argv[1].split())
accepted = float(fields["accepted"])
cpu = (float(sys.argv[3]) - float(sys.argv[2])) / 100.0
emulator_busy = (float(sys.argv[5]) - float(sys.argv[4])) / (float(sys.argv[7]) - float(sys.argv[6]))
ours = float(open(sys.argv[8]).read())
print(f"original handler: accepted={accepted:.0f} cpu_s_per_1000_accepted={cpu / accepted * 1000:.3f} "
      f"emulator_busy={emulator_busy:.2f} limit={'emulator' if emulator_busy >= 0.85 else 'the handler'}; "
      f"ours uses {cpu / accepted / ours:.0f}x less CPU per accepted request")
PY
