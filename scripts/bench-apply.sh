#!/usr/bin/env bash
# Benchmark of `apply` from cold against the AWS emulator (see operator/examples/bench_apply.rs),
# then the `multicomms-operator apply` command itself on the largest N, cold: its peak memory;
# and what one AWS call costs us (operator/examples/bench_sdk_call.rs), the floor under the rest.
# usage: scripts/bench-apply.sh [N ...]   (default: 100 1000)
set -euo pipefail
source "$(dirname "$0")/emulator.sh"
start_bench
echo
echo "| companies | concurrency | cold apply companies/s | AWS calls/company (cold) | cold calls/s ÷ raw PutItem/s | no-op re-apply, new process: companies/s | calls/company | no-op resync, same operator: companies/s | calls/company | AWS writes (no-op, resync) | operator CPU ms/company (cold) | (resync) | emulator raw PutItem/s | bench peak RSS MiB | emulator busy, whose limit (cold) | (re-apply) | (resync) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 1000)
for companies in "${sizes[@]}"; do
  target/release/examples/bench_apply "$companies" 16
done

echo
target/release/examples/bench_sdk_call 2000

# The command as CI runs it, on the largest N: generated Companies (as bench_apply makes them).
largest="$(printf '%s\n' "${sizes[@]}" | sort -n | tail -1)"
work="$(mktemp -d)"
trap 'rm -rf "$work"; kill "$EMULATOR_PID" 2>/dev/null || true' EXIT
python3 - "$largest" "$work" <<'PY'
import sys
n, out = int(sys.argv[1]), sys.argv[2]
template = open("config/companies/cucumber-recruitment-clarify-cv.yaml").read()
# The example's agents read a Secret bound to the example Company alone: the copies have none.
lines = template.splitlines(keepends=True)
start = next(i for i, line in enumerate(lines) if line.startswith("  agents:"))
end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("    "))
template = "".join(lines[:start] + lines[end:])
# Each copy reads Secrets of its own, bound to it as the example's are to the example.
import glob
label = "multicomms.io/company: cucumber-recruitment-clarify-cv"
bound = [doc for path in sorted(glob.glob("config/examples/local/*.yaml"))
         for doc in open(path).read().split("\n---") if label in doc]
names = [line.split("name:")[1].strip() for doc in bound for line in doc.splitlines() if line.startswith("  name:")]
for i in range(n):
    company, secrets = template, []
    for name, doc in zip(names, bound):
        company = company.replace(f"name: {name},", f"name: {name}-{i},")
        secrets.append(doc.replace(f"name: {name}", f"name: {name}-{i}")
                       .replace(label, f"multicomms.io/company: company-{i}").strip("\n-"))
    open(f"{out}/company-{i}.yaml", "w").write(
        company.replace("name: cucumber-recruitment-clarify-cv", f"name: company-{i}")
        .replace("companyId: ci-aaa-001", f"companyId: ci-bench-{i}")
        .replace("companyName: Cucumber Recruitment", f"companyName: Bench Company {i}")
        + "\n---\n" + "\n---\n".join(secrets) + "\n")
PY
python3 - "$largest" "$work" <<'PY'
import os, resource, subprocess, sys, time
n, work = sys.argv[1], sys.argv[2]
env = dict(os.environ, MULTICOMMS_PREFIX=f"cli{os.getpid()}", MULTICOMMS_ENV="bench")
started = time.time()
done = subprocess.run(["target/release/multicomms-operator", "apply", "-f", work, "-f", "config/channels",
                       "-f", "config/examples/local", "--namespace", "bench"], env=env, stdout=subprocess.DEVNULL)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"\n`multicomms-operator apply` of {n} Companies, cold: exit {done.returncode}, {time.time() - started:.0f} s, "
      f"CPU {(usage.ru_utime + usage.ru_stime) * 1000 / int(n):.1f} ms per Company, peak RSS {usage.ru_maxrss / 1024:.1f} MiB")
PY
