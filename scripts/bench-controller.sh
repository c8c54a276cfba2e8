#!/usr/bin/env bash
# Benchmark of the in-cluster controller holding N Companies: the release operator (`run`, a
# process of its own) against an in-memory Kubernetes API served by the bench and the AWS
# emulator (see operator/examples/bench_controller.rs). One row per N: from cold until all are
# Ready, then one resync period; AWS calls and operator CPU per reconcile, operator memory.
# usage: scripts/bench-controller.sh [N ...]   (default: 1000)
#        MULTICOMMS_RESYNC_SECONDS=120 sets the resync period measured;
#        MULTICOMMS_OPERATOR_UNDER="heaptrack -o target/operator" runs the operator under a profiler.
#        MULTICOMMS_OPERATOR_BINARY=path runs another build of the operator (a side-by-side comparison).
set -euo pipefail
source "$(dirname "$0")/emulator.sh"
start_bench
echo
echo "| companies | concurrency | cold: seconds to all Ready | Companies/s | reconciles Company / Channel | AWS calls per Company reconcile | operator CPU ms per Company reconcile | operator RSS MiB | resync period s | resync: reconciles Company / Channel | AWS calls per Company reconcile | operator CPU ms per Company reconcile | operator RSS MiB after | peak RSS MiB | emulator busy, whose limit (cold) | the in-memory API's busy share (cold) | emulator (resync) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000)
for companies in "${sizes[@]}"; do
  target/release/examples/bench_controller "$companies" "${MULTICOMMS_RESYNC_SECONDS:-120}" 16
done
