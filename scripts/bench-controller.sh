#!/usr/bin/env bash
# Benchmark of the in-cluster controller holding N Companies: the release operator (`run`, a
# process of its own) against an in-memory Kubernetes API served by the bench and the AWS
# emulator (see operator/examples/bench_controller.rs). One row per N: from cold until all are
# Ready, then one resync period; AWS calls and operator CPU per reconcile, operator memory.
# usage: scripts/bench-controller.sh [--cluster] [N ...]   (default: 1000)
#        --cluster: the API is the local control plane (scripts/cluster.sh), restarted empty for
#        each N, instead of the bench's in-memory API; the API requests per Company are printed.
#        MULTICOMMS_RESYNC_SECONDS=120 sets the resync period measured;
#        MULTICOMMS_BENCH_COLD_ONLY=1 measures the cold pass only (for a resync of an hour);
#        MULTICOMMS_OPERATOR_UNDER="heaptrack -o target/operator" runs the operator under a profiler.
#        MULTICOMMS_OPERATOR_BINARY=path runs another build of the operator (a side-by-side comparison).
set -euo pipefail
source "$(dirname "$0")/emulator.sh"
cluster=""
if [ "${1:-}" = "--cluster" ]; then
  cluster=yes
  shift
fi
start_bench
echo
echo "| companies | concurrency | cold: seconds to all Ready | Companies/s | reconciles Company / Channel | AWS calls per Company reconcile | operator CPU ms per Company reconcile | operator RSS MiB | resync period s | resync: reconciles Company / Channel | AWS calls per Company reconcile | operator CPU ms per Company reconcile | operator RSS MiB after | peak RSS MiB | emulator busy, whose limit (cold) | the in-memory API's busy share (cold) | emulator (resync) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000)
for companies in "${sizes[@]}"; do
  if [ -n "$cluster" ]; then
    scripts/cluster.sh down
    scripts/cluster.sh up
    eval "$(scripts/cluster.sh env)"
    MULTICOMMS_BENCH_CLUSTER=1 target/release/examples/bench_controller "$companies" "${MULTICOMMS_RESYNC_SECONDS:-120}" 16
  else
    target/release/examples/bench_controller "$companies" "${MULTICOMMS_RESYNC_SECONDS:-120}" 16
  fi
done
