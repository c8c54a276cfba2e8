#!/usr/bin/env bash
# The whole system in a kind cluster (the repository host's CI runs it; no cluster runs on the
# development machines): the images built here and loaded into kind, moto and the fake providers
# in the cluster, the chart installed, config/environments/dev applied with the local Secrets.
# Then: every Channel gets its workers Ready (the operator's Deployments), and one request flows
# end to end (router → queue → processor → fake Twilio → the conversation record).
# Needs docker, kind, helm and kubectl on PATH and a kind cluster named by $KIND_CLUSTER (default kind).
set -euo pipefail
cd "$(dirname "$0")/.."
cluster="${KIND_CLUSTER:-kind}"
for target in operator runtime fakes; do
  docker build --target "$target" -t "ghcr.io/multicomms/multicomms-$target:kind" .
  kind load docker-image --name "$cluster" "ghcr.io/multicomms/multicomms-$target:kind"
done
kubectl create namespace multicomms-dev --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f tests/cluster/emulators.yaml
kubectl -n multicomms-dev rollout status deployment/moto deployment/fake-providers --timeout=300s
helm upgrade --install multicomms charts/multicomms-operator -n multicomms-dev -f tests/cluster/values-kind.yaml --wait
kubectl apply -n multicomms-dev -f config/examples/local/secrets.yaml
kubectl apply -k config/environments/dev
kubectl -n multicomms-dev wait channels --all --for=condition=Ready --timeout=300s
kubectl -n multicomms-dev wait companies --all --for=condition=Ready --timeout=300s
kubectl -n multicomms-dev wait channels --all --for=condition=WorkersReady --timeout=600s
kubectl -n multicomms-dev get channels,companies,deployments

# One request end to end, through port-forwards to the router and the emulator.
kubectl -n multicomms-dev port-forward svc/multicomms-multicomms-router 18080:80 > /dev/null &
kubectl -n multicomms-dev port-forward svc/moto 15000:5000 > /dev/null &
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
sleep 3
request_id="$(python3 -c 'import uuid; print(uuid.uuid4())')"
curl -fsS -X POST http://127.0.0.1:18080/initiate-conversation \
  -H 'x-api-key: local-demo-router-key-not-a-secret' -H 'content-type: application/json' \
  -d "{\"company_data\": {\"company_id\": \"ci-aaa-001\", \"project_id\": \"pi-aaa-001\"},
       \"recipient_data\": {\"recipient_first_name\": \"Lee\", \"recipient_tel\": \"+447835065013\", \"comms_consent\": true},
       \"project_data\": {\"jobRole\": \"Healthcare Assistant\"},
       \"request_data\": {\"request_id\": \"$request_id\", \"channel_method\": \"whatsapp\",
                          \"initial_request_timestamp\": \"2026-11-29T10:00:00Z\"}}"
echo
for _ in $(seq 1 60); do
  status="$(AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test aws --endpoint-url http://127.0.0.1:15000 --region eu-north-1 \
    dynamodb get-item --table-name ai-multi-comms-conversations-dev --output text \
    --query 'Item.conversation_status.S' \
    --key "{\"primary_channel\": {\"S\": \"+447835065013\"}, \"conversation_id\": {\"S\": \"ci-aaa-001#pi-aaa-001#$request_id#447588713814\"}}" || true)"
  if [ "$status" = "initial_message_sent" ]; then echo "end to end: $status"; exit 0; fi
  sleep 2
done
echo "the request did not reach initial_message_sent (last status: ${status:-none})" >&2
exit 1
