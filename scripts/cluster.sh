#!/usr/bin/env bash
# A real Kubernetes control plane on this machine, for the cluster suite (scripts/test-cluster.sh):
# etcd, kube-apiserver (secure port, RBAC, token auth), kube-controller-manager (garbage
# collector, namespaces, deployments, replicasets, service accounts and their tokens),
# kube-scheduler and kwok (simulated nodes whose pods become Ready; nothing pulls an image), plus
# kubectl and helm. Built once from Go modules (tests/control-plane/go.mod pins every version)
# into a cache outside target/, keyed by that go.mod and go.sum.
#
#   scripts/cluster.sh up     build if needed, start (idempotent), wait for /readyz, one Node Ready
#   scripts/cluster.sh env    print `export KUBECONFIG=...` and `export PATH=...` (eval it)
#   scripts/cluster.sh down   stop every process and remove the cluster's state
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODULE="$ROOT/tests/control-plane"
KEY="$(cat "$MODULE/go.mod" "$MODULE/go.sum" | sha256sum | cut -c1-12)"
BIN="${MULTICOMMS_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multicomms/control-plane}/$KEY"
STATE="${MULTICOMMS_CLUSTER_DIR:-$ROOT/target/cluster}"
TOKEN="multicomms-admin-token-for-the-local-cluster"
PROCESSES=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

build() {
  [ -f "$BIN/.complete" ] && return 0
  echo "Building the control plane into $BIN (once per machine: 6 to 11 minutes on 2 cores, about 4 GB of Go caches) ..." >&2
  local started=$SECONDS version
  version="$(awk '$1 == "k8s.io/kubernetes" {print $2}' "$MODULE/go.mod")"
  mkdir -p "$BIN"
  (
    cd "$MODULE"
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
    local x=k8s.io/component-base/version minor="${version#v1.}"
    go build -trimpath -ldflags "-s -w -X $x.gitVersion=$version -X $x.gitMajor=1 -X $x.gitMinor=${minor%%.*} \
      -X $x.gitTreeState=clean" -o "$BIN/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
      go.etcd.io/etcd/server/v3 sigs.k8s.io/kwok/cmd/kwok helm.sh/helm/v4/cmd/helm
  )
  mv "$BIN/server" "$BIN/etcd"
  # kwok's stages (what its simulated kubelet does): nodes initialised with a Lease heartbeat,
  # pods Ready at once, deleted pods gone; from its own module, as kwokctl's "fast" set.
  local kwok
  kwok="$(cd "$MODULE" && GOTOOLCHAIN=local go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
  for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    printf -- '---\n'
    cat "$kwok/kustomize/stage/$stage.yaml"
  done > "$BIN/kwok-stages.yaml"
  echo "$version" > "$BIN/.complete"
  echo "control plane $version built in $((SECONDS - started)) s" >&2
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

running() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

start() { # name, then the command line; its output goes to $STATE/<name>.log
  local name="$1"
  shift
  setsid "$@" > "$STATE/$name.log" 2>&1 < /dev/null &
  echo $! > "$STATE/$name.pid"
}

# Polls `$2...` every half second for up to $1 seconds; fails naming what it waited for.
wait_until() {
  local seconds="$1" what="$2"
  shift 2
  for _ in $(seq 1 $((seconds * 2))); do
    if "$@" > /dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "timed out after ${seconds}s waiting until $what (logs in $STATE)" >&2
  return 1
}

api() { curl -fsk -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$(cat "$STATE/apiserver.port")$1"; }

up() {
  build
  if running kube-apiserver && api /readyz > /dev/null 2>&1; then
    echo "the control plane is already up (KUBECONFIG=$STATE/kubeconfig)" >&2
    return 0
  fi
  down_quietly
  local started=$SECONDS
  mkdir -p "$STATE/pki"
  local etcd_port peer_port api_port
  etcd_port="$(free_port)" peer_port="$(free_port)" api_port="$(free_port)"
  echo "$api_port" > "$STATE/apiserver.port"
  openssl genrsa -out "$STATE/pki/sa.key" 2048 2> /dev/null
  openssl rsa -in "$STATE/pki/sa.key" -pubout -out "$STATE/pki/sa.pub" 2> /dev/null
  echo "$TOKEN,multicomms-admin,multicomms-admin,system:masters" > "$STATE/tokens.csv"

  start etcd "$BIN/etcd" --name=local --data-dir="$STATE/etcd" --unsafe-no-fsync=true \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="local=http://127.0.0.1:$peer_port" --log-level=warn
  wait_until 30 "etcd serves" curl -fs "http://127.0.0.1:$etcd_port/health"

  start kube-apiserver "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --cert-dir="$STATE/pki" --token-auth-file="$STATE/tokens.csv" --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc --api-audiences=https://kubernetes.default.svc \
    --service-account-key-file="$STATE/pki/sa.pub" --service-account-signing-key-file="$STATE/pki/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true --enable-priority-and-fairness=false
  wait_until 180 "kube-apiserver is ready" api /readyz

  cat > "$STATE/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster: {server: "https://127.0.0.1:$api_port", certificate-authority: "$STATE/pki/apiserver.crt"}
users:
  - name: admin
    user: {token: "$TOKEN"}
contexts:
  - name: local
    context: {cluster: local, user: admin}
current-context: local
EOF
  local kubeconfig="$STATE/kubeconfig"
  start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$kubeconfig" \
    --authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port="$(free_port)" \
    --service-account-private-key-file="$STATE/pki/sa.key" --root-ca-file="$STATE/pki/apiserver.crt" \
    --use-service-account-credentials=true \
    --controllers=namespace,garbagecollector,serviceaccount,serviceaccount-token,deployment,replicaset
  start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$kubeconfig" \
    --authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port="$(free_port)"
  start kwok "$BIN/kwok" --kubeconfig="$kubeconfig" --config="$BIN/kwok-stages.yaml" --manage-all-nodes=true \
    --node-ip=127.0.0.1 --server-address="127.0.0.1:$(free_port)"

  "$BIN/kubectl" --kubeconfig="$kubeconfig" apply -f - > /dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: local-node
  annotations: {node.alpha.kubernetes.io/ttl: "0", kwok.x-k8s.io/node: fake}
  labels: {kubernetes.io/hostname: local-node, kubernetes.io/os: linux, type: kwok}
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "500"}
  capacity: {cpu: "32", memory: 256Gi, pods: "500"}
EOF
  wait_until 60 "the simulated node is Ready" \
    sh -c "'$BIN/kubectl' --kubeconfig='$kubeconfig' get node local-node -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  # The API server taints a new Node not-ready; the node-lifecycle controller, not run here (it
  # would evict pods on a missed heartbeat), is what lifts it.
  "$BIN/kubectl" --kubeconfig="$kubeconfig" taint nodes local-node node.kubernetes.io/not-ready:NoSchedule- > /dev/null
  wait_until 60 "namespace default has its ServiceAccount" \
    "$BIN/kubectl" --kubeconfig="$kubeconfig" -n default get serviceaccount default
  for name in "${PROCESSES[@]}"; do
    running "$name" || { echo "$name exited; see $STATE/$name.log" >&2; return 1; }
  done
  echo "the control plane is up in $((SECONDS - started)) s: eval \"\$(scripts/cluster.sh env)\"" >&2
}

down_quietly() {
  local name pid
  for name in "${PROCESSES[@]}"; do
    if [ -f "$STATE/$name.pid" ]; then
      pid="$(cat "$STATE/$name.pid")"
      kill -- "-$pid" 2> /dev/null || kill "$pid" 2> /dev/null || true
    fi
  done
  for name in "${PROCESSES[@]}"; do
    if [ -f "$STATE/$name.pid" ]; then
      pid="$(cat "$STATE/$name.pid")"
      for _ in $(seq 1 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
      kill -9 -- "-$pid" 2> /dev/null || kill -9 "$pid" 2> /dev/null || true
    fi
  done
  rm -rf "$STATE"
}

case "${1:-}" in
  up) up ;;
  down) down_quietly ;;
  env)
    echo "export KUBECONFIG=$STATE/kubeconfig"
    echo "export PATH=$BIN:\$PATH"
    ;;
  build) build ;;
  *) echo "usage: scripts/cluster.sh up|down|env|build" >&2; exit 2 ;;
esac
