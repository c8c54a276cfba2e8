# Sourced by the other scripts: a project venv with the moto AWS emulator, started on a free
# loopback port, with the standard AWS SDK environment pointing at it. Stopped on exit.
# MULTICOMMS_EMULATOR=ministack starts ministack instead (faster, for the benchmarks; the tests
# keep moto). It lives in its own venv: it pins an older botocore than moto's boto3 accepts.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MULTICOMMS_VENV:-$ROOT/.venv}"
MOTO_VERSION="5.2.5"
EMULATOR="${MULTICOMMS_EMULATOR:-moto}"
MINISTACK_VENV="${MULTICOMMS_MINISTACK_VENV:-$ROOT/.venv-ministack}"
MINISTACK_VERSION="1.5.33"

ensure_venv() {
  if [ ! -x "$VENV/bin/moto_server" ]; then
    echo "Installing moto $MOTO_VERSION into $VENV ..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  fi
}

ensure_ministack() {
  if [ ! -x "$MINISTACK_VENV/bin/ministack" ]; then
    echo "Installing ministack $MINISTACK_VERSION into $MINISTACK_VENV ..." >&2
    python3 -m venv "$MINISTACK_VENV"
    "$MINISTACK_VENV/bin/pip" install --quiet --disable-pip-version-check "ministack==$MINISTACK_VERSION"
  fi
}

start_emulator() {
  ensure_venv
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  mkdir -p "$ROOT/target"
  case "$EMULATOR" in
    moto) "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" > "$ROOT/target/moto.log" 2>&1 & ;;
    ministack)
      ensure_ministack
      GATEWAY_PORT="$port" BIND_HOST=127.0.0.1 "$MINISTACK_VENV/bin/ministack" > "$ROOT/target/moto.log" 2>&1 & ;;
    *) echo "MULTICOMMS_EMULATOR must be moto or ministack (got $EMULATOR)" >&2; return 1 ;;
  esac
  EMULATOR_PID=$!
  # The benchmarks report how busy the emulator was (tests/kit/src/bench.rs reads this).
  export MULTICOMMS_EMULATOR_PID="$EMULATOR_PID"
  trap 'kill "$EMULATOR_PID" 2>/dev/null || true' EXIT
  local ready=""
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      ready=yes
      break
    fi
    if ! kill -0 "$EMULATOR_PID" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  if [ -z "$ready" ]; then
    echo "$EMULATOR did not start on port $port; see target/moto.log" >&2
    return 1
  fi
  # Fake credentials and a loopback endpoint: nothing here can reach a real AWS account.
  unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_PROFILE
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=eu-north-1 \
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
  echo "$EMULATOR AWS emulator on $AWS_ENDPOINT_URL (log: target/moto.log)" >&2
}

# For the benchmarks: the emulator started, the working directory the repository's, and the
# release binaries and examples built (the same packages and features for every bench script).
start_bench() {
  start_emulator
  cd "$ROOT"
  cargo build --locked --release -q --workspace --bins --examples
}

# For the benchmarks: the example Channels and Company applied by the release operator under
# PREFIX (env "bench"), the company's rate and conversation limits raised so they are not the
# bottleneck.
# usage: apply_bench_examples PREFIX WORKDIR
apply_bench_examples() {
  sed -e 's/requestsPerMinute: 60/requestsPerMinute: 10000000/' -e 's/requestsPerDay: 2000/requestsPerDay: 100000000/' \
    -e 's/concurrentConversations: 30/concurrentConversations: 100000000/' \
    "$ROOT/config/companies/cucumber-recruitment-clarify-cv.yaml" > "$2/company.yaml"
  "$ROOT/target/release/multicomms-operator" --prefix "$1" --env bench apply \
    -f "$ROOT/config/channels" -f "$2/company.yaml" -f "$ROOT/config/examples/local" --namespace bench > /dev/null
}

# The emulator's CPU seconds so far (user + system), for the bench scripts' "emulator busy".
emulator_cpu_seconds() {
  awk '{print ($14 + $15) / 100}' "/proc/$EMULATOR_PID/stat"
}
