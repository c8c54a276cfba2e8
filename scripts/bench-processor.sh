#!/usr/bin/env bash
# Processor benchmark: one release WhatsApp processor against the AWS emulator, with the fake
# providers answering after 1 s (OpenAI) and 200 ms (Twilio). For each concurrency the queue is
# first filled through the release router, then a fresh processor drains it. Prints messages/s
# beside the latency-bound ideal (concurrency / 1.2 s), the processor's peak RSS and CPU seconds
# per 1000 messages, the emulator's raw PutItem rate measured in the same run, and how busy the
# emulator was (its CPU time over wall time) and whose limit the row shows: the providers'
# latency (ratio >= 0.9), the emulator (busy >= 0.85 of its one core), the processor's CPU, or
# else the AWS round trips' latency. Logs of the last run: target/bench-processor/.
# usage: scripts/bench-processor.sh [concurrency:messages ...]   (default 1:20 64:640 512:2000)
#        MULTICOMMS_PROCESSOR_BINARY=target/dist/multicomms-processor drains with another build
set -euo pipefail
runs=("$@")
[ ${#runs[@]} -eq 0 ] && runs=(1:20 64:640 512:2000)
source "$(dirname "$0")/emulator.sh"
start_bench

work="$ROOT/target/bench-processor"   # logs of the last run stay here
rm -rf "$work"; mkdir -p "$work"
prefix="pbench$$"
apply_bench_examples "$prefix" "$work"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
fakes_port="$(free_port)"; router_port="$(free_port)"
target/release/fake-providers "127.0.0.1:$fakes_port" 1000 200 > "$work/fakes.log" 2>&1 &
fakes=$!
MULTICOMMS_PREFIX="$prefix" MULTICOMMS_ENV=bench target/release/multicomms-router --address "127.0.0.1:$router_port" \
  --metrics-address "127.0.0.1:$(free_port)" \
  > "$work/router.log" 2>&1 &
router=$!
processor=""
trap 'kill $fakes $router $processor 2>/dev/null || true; kill "$EMULATOR_PID" 2>/dev/null || true' EXIT
wait_port "$fakes_port"; wait_port "$router_port"

"$VENV/bin/python" - "$prefix" <<'PY'
import sys, time, threading, boto3
import os
client = boto3.client("dynamodb", region_name=os.environ["AWS_REGION"])
name = f"{sys.argv[1]}-conversations-bench"
count, stop = [0], time.time() + 3
def put(worker):
    i = 0
    while time.time() < stop:
        client.put_item(TableName=name, Item={"primary_channel": {"S": f"raw-{worker}"}, "conversation_id": {"S": str(i)}})
        i += 1
        count[0] += 1
threads = [threading.Thread(target=put, args=(w,)) for w in range(16)]
[t.start() for t in threads]; [t.join() for t in threads]
print(f"emulator raw PutItem/s (16 threads): {count[0] / 3:.1f}")
PY

first_id=0
printf "%-12s %-9s %-10s %-10s %-9s %-8s %-14s %-8s %-14s %s\n" concurrency messages seconds msgs_per_s ideal ratio cpu_s_per_1000 rss_mib emulator_busy limit
for run in "${runs[@]}"; do
  concurrency="${run%%:*}"; messages="${run##*:}"
  loaded="$(target/release/load-generator "http://127.0.0.1:$router_port/initiate-conversation" \
    local-demo-router-key-not-a-secret "$messages" 32 whatsapp "$first_id")"
  first_id=$((first_id + messages))
  echo "router load: $loaded" >&2
  # What the router accepted is what the processor must drain.
  messages="$(sed -n 's/.* accepted=\([0-9]*\).*/\1/p' <<< "$loaded")"
  metrics_port="$(free_port)"
  emulator_before="$(emulator_cpu_seconds)"
  start="$(date +%s.%N)"
  MULTICOMMS_PREFIX="$prefix" MULTICOMMS_ENV=bench "${MULTICOMMS_PROCESSOR_BINARY:-target/release/multicomms-processor}" --channel whatsapp \
    --concurrency "$concurrency" --address "127.0.0.1:$metrics_port" --openai-base-url "http://127.0.0.1:$fakes_port/v1" \
    --twilio-base-url "http://127.0.0.1:$fakes_port" --sendgrid-base-url "http://127.0.0.1:$fakes_port" \
    > "$work/processor-$concurrency.log" 2>&1 &
  processor=$!
  wait_port "$metrics_port"
  python3 - "$metrics_port" "$messages" <<'PY'
import sys, time, http.client
port, expected = sys.argv[1], int(sys.argv[2])
last, since = -1, time.time()
# One keep-alive connection, ten polls a second: each poll is the processor's CPU too (a new
# connection and 20 polls a second cost 0.2 ms a poll, 4.5 ms a message at concurrency 1).
connection = http.client.HTTPConnection("127.0.0.1", int(port))
while True:
    connection.request("GET", "/metrics")
    metrics = connection.getresponse().read().decode()
    done = sum(float(l.split()[-1]) for l in metrics.splitlines() if l.startswith("multicomms_processor_messages_total{"))
    if done >= expected:
        break
    if done != last:
        last, since = done, time.time()
    elif time.time() - since > 60:
        print(f"stalled at {done:.0f} of {expected} messages", file=sys.stderr)
        break
    time.sleep(0.1)
PY
  end="$(date +%s.%N)"
  emulator_cpu="$(awk -v before="$emulator_before" -v now="$(emulator_cpu_seconds)" 'BEGIN {print now - before}')"
  cpu="$(awk '{print ($14 + $15) / 100}' "/proc/$processor/stat")"
  rss="$(awk '/VmHWM/ {print $2 / 1024}' "/proc/$processor/status")"
  sent="$(python3 -c "import urllib.request; m=urllib.request.urlopen('http://127.0.0.1:$metrics_port/metrics').read().decode(); print(int(sum(float(l.split()[-1]) for l in m.splitlines() if 'outcome=\"sent\"' in l)))")"
  kill -TERM "$processor"; wait "$processor" || true; processor=""
  python3 - "$concurrency" "$messages" "$start" "$end" "$cpu" "$rss" "$sent" "$emulator_cpu" <<'PY'
import sys
c, n, start, end, cpu, rss, sent = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
emulator_cpu = float(sys.argv[8])
seconds = end - start
rate = n / seconds
ideal = min(c, n) / 1.2
# emulator_busy: the emulator's CPU time over the run's wall time (1.0 = one core saturated).
busy = emulator_cpu / seconds
if rate / ideal >= 0.9:
    limit = "provider latency (the ideal)"
elif busy >= 0.85:
    limit = "emulator"
elif cpu / seconds >= 0.85:
    limit = "processor CPU"
else:
    limit = "AWS round trips"
print(f"{c:<12} {n:<9} {seconds:<10.2f} {rate:<10.1f} {ideal:<9.1f} {rate / ideal:<8.2f} {cpu / n * 1000:<14.2f} {rss:<8.1f} {busy:<14.2f} {limit}"
      + ("" if sent == n else f"  (only {sent} sent!)"))
PY
done
