#!/usr/bin/env bash
# The main job, locally: start the AWS emulator, `apply` the example Channels and Company from
# config/ (with the local-only Secrets), show that a second run changes nothing, and show the
# deliberately invalid examples being rejected; then run the router, a WhatsApp processor, a
# WhatsApp reply processor and the fake providers, send one request end to end (the fake Twilio
# then reports its delivery through the router's signed status callback), and answer it
# as the recipient would: two signed inbound WhatsApp messages, one AI reply (after the example
# company's 10 s batching window); then STOP, which opts them out (the next first message for them
# is refused 409), and START, which opts them back in.
set -euo pipefail
source "$(dirname "$0")/emulator.sh"
start_emulator
cd "$ROOT"
cargo build --locked --quiet --workspace --bins --examples # the features every other script builds with
operator="$ROOT/target/debug/multicomms-operator"
examples=(-f config/channels -f config/companies -f config/examples/local --namespace multicomms-dev)

echo; echo "== plan (nothing exists yet)"
"$operator" plan "${examples[@]}"
echo; echo "== apply"
"$operator" apply "${examples[@]}"
echo; echo "== apply again: nothing to change"
"$operator" apply "${examples[@]}"
echo; echo "== plan the invalid examples: each is rejected, naming the field"
"$operator" plan -f config/examples/invalid || true

echo; echo "== the pods: router, WhatsApp processor, fake OpenAI/Twilio/SendGrid; one request end to end"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
fakes_port="$(free_port)"; router_port="$(free_port)"; router_metrics_port="$(free_port)"
processor_port="$(free_port)"; replies_port="$(free_port)"; events_port="$(free_port)"
logs="$ROOT/target/demo"; mkdir -p "$logs"
target/debug/fake-providers "127.0.0.1:$fakes_port" > "$logs/fakes.log" 2>&1 &
pods=($!)
MULTICOMMS_ENV=dev target/debug/multicomms-router --address "127.0.0.1:$router_port" \
  --metrics-address "127.0.0.1:$router_metrics_port" \
  --public-base-url "http://127.0.0.1:$router_port" --twilio-base-url "http://127.0.0.1:$fakes_port" \
  --session-key "local-demo-inbox-session-key-not-a-secret" > "$logs/router.log" 2>&1 &
pods+=($!)
MULTICOMMS_ENV=dev target/debug/multicomms-processor --channel whatsapp --address "127.0.0.1:$processor_port" \
  --openai-base-url "http://127.0.0.1:$fakes_port/v1" --twilio-base-url "http://127.0.0.1:$fakes_port" \
  --sendgrid-base-url "http://127.0.0.1:$fakes_port" --public-base-url "http://127.0.0.1:$router_port" \
  > "$logs/processor.log" 2>&1 &
pods+=($!)
MULTICOMMS_ENV=dev target/debug/multicomms-processor --channel whatsapp --flow replies --address "127.0.0.1:$replies_port" \
  --openai-base-url "http://127.0.0.1:$fakes_port/v1" --twilio-base-url "http://127.0.0.1:$fakes_port" \
  --public-base-url "http://127.0.0.1:$router_port" > "$logs/replies.log" 2>&1 &
pods+=($!)
MULTICOMMS_ENV=dev target/debug/multicomms-processor --flow events --address "127.0.0.1:$events_port" \
  --retry-base-seconds 1 > "$logs/events.log" 2>&1 &
pods+=($!)
trap 'kill "${pods[@]}" 2>/dev/null || true; kill "$EMULATOR_PID" 2>/dev/null || true' EXIT
wait_port "$fakes_port"; wait_port "$router_port"; wait_port "$processor_port"; wait_port "$replies_port"
wait_port "$events_port"

echo; echo "== a commit: the company's events go to its applicant tracking system (the fakes' /client/events)"
mkdir -p "$logs/companies"
cp config/companies/cucumber-recruitment-clarify-cv.yaml "$logs/companies/"
cat >> "$logs/companies/cucumber-recruitment-clarify-cv.yaml" <<YAML
  events:
    url: http://127.0.0.1:$fakes_port/client/events
    signingSecret: {secretKeyRef: {name: cucumber-recruitment-events, key: signingSecret}}
YAML
"$operator" apply -f config/channels -f "$logs/companies" -f config/examples/local --namespace multicomms-dev
request_id="$(python3 -c 'import uuid; print(uuid.uuid4())')"
"$VENV/bin/python" - "$router_port" "$request_id" "$fakes_port" <<'PY'
import json, os, sys, time, urllib.request, boto3
port, request_id, fakes_port = sys.argv[1], sys.argv[2], sys.argv[3]
body = {
    "company_data": {"company_id": "ci-aaa-001", "project_id": "pi-aaa-001"},
    "recipient_data": {"recipient_first_name": "Lee", "recipient_last_name": "Hayton",
                       "recipient_tel": "+447835065013", "recipient_email": "lee@example.com", "comms_consent": True},
    "project_data": {"jobID": "9999", "jobRole": "Healthcare Assistant"},
    "request_data": {"request_id": request_id, "channel_method": "whatsapp",
                     "initial_request_timestamp": "2023-09-15T11:45:32.789Z"},
}
request = urllib.request.Request(f"http://127.0.0.1:{port}/initiate-conversation", data=json.dumps(body).encode(),
                                 headers={"x-api-key": "local-demo-router-key-not-a-secret", "content-type": "application/json"})
print("router:", urllib.request.urlopen(request).read().decode())
table = boto3.client("dynamodb", region_name=os.environ["AWS_REGION"])
key = {"primary_channel": {"S": "+447835065013"},
       "conversation_id": {"S": f"ci-aaa-001#pi-aaa-001#{request_id}#447588713814"}}
for _ in range(100):
    item = table.get_item(TableName="ai-multi-comms-conversations-dev", Key=key).get("Item")
    if item and item["conversation_status"]["S"] not in ("processing", "sending"):
        break
    time.sleep(0.2)
message = item["messages"]["L"][0]["M"] if item and item["messages"]["L"] else {}
print("conversation record:", item["conversation_status"]["S"] if item else "missing",
      "| message", message.get("message_id", {}).get("S"), "|", message.get("content", {}).get("S"),
      "| tokens", message.get("total_tokens", {}).get("N"))
if not item or item["conversation_status"]["S"] != "initial_message_sent":
    sys.exit("the first message was not sent: see target/demo/processor.log")
# Twilio (the fake) reports the message's fate to the router's status callback, signed.
for _ in range(100):
    item = table.get_item(TableName="ai-multi-comms-conversations-dev", Key=key, ConsistentRead=True).get("Item")
    delivery = item["messages"]["L"][0]["M"].get("delivery_status", {}).get("S")
    if delivery == "delivered":
        break
    time.sleep(0.2)
print("delivery status of the first message:", delivery)
if delivery != "delivered":
    sys.exit("no delivery status was recorded: see target/demo/router.log and target/demo/fakes.log")

# The recipient answers. Twilio signs each webhook: base64(HMAC-SHA1(auth token, URL + sorted
# name+value pairs)); signed here independently of the router's own code.
import base64, hashlib, hmac, urllib.error, urllib.parse, uuid
url = f"http://127.0.0.1:{port}/webhooks/twilio/whatsapp"
def inbound(text, token="local-demo-twilio-token-not-a-secret"):
    sid = "SM" + uuid.uuid4().hex
    params = {"MessageSid": sid, "SmsMessageSid": sid, "AccountSid": "AC00000000000000000000000000000000",
              "From": "whatsapp:+447835065013", "To": "whatsapp:+447588713814", "Body": text,
              "NumMedia": "0", "ProfileName": "Lee", "WaId": "447835065013", "MessagingServiceSid": ""}
    signed = url + "".join(k + params[k] for k in sorted(params))
    signature = base64.b64encode(hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()).decode()
    request = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(), headers={
        "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature})
    try:
        answer = urllib.request.urlopen(request)
    except urllib.error.HTTPError as refusal:  # a 4xx is the webhook's answer, not a crash
        answer = refusal
    print(f"webhook <- {text!r}: {answer.status} {answer.read().decode()}")
    return answer.status
# Signed with a token that is not the tenant's: the router refuses it (403) and stages nothing.
forged = inbound("a forged one", token="not-the-tenants-token")
assert forged == 403, f"a forged webhook must be refused with 403, got {forged}"
assert inbound("Hi! Yes, I drive") == 200
time.sleep(2)
assert inbound("but I have no car at the moment") == 200
print("(the reply waits until the recipient has been quiet for the company's 10 s window)")
for _ in range(150):
    item = table.get_item(TableName="ai-multi-comms-conversations-dev", Key=key, ConsistentRead=True).get("Item")
    if item["conversation_status"]["S"] in ("reply_sent", "send_outcome_unknown", "failed_to_process_reply_ai"):
        break
    time.sleep(0.2)
print("conversation record:", item["conversation_status"]["S"])
for m in item["messages"]["L"]:
    m = m["M"]
    delivery = m.get("delivery_status", {}).get("S", "")
    print(f"  {m['role']['S']:9} {m['message_id']['S'][:14]}  {delivery:9}  {m['content']['S'][:60]}")
roles = [m["M"]["role"]["S"] for m in item["messages"]["L"]]
if item["conversation_status"]["S"] != "reply_sent" or roles[-3:] != ["user", "user", "assistant"]:
    sys.exit(f"the demo's conversation did not end with the AI's reply to both answers: {roles}")

# The recipient opts out: STOP is answered with the company's confirmation (in the TwiML; no AI
# call), the conversation ends, and a first message for them is refused until they send START.
assert inbound("STOP") == 200
item = table.get_item(TableName="ai-multi-comms-conversations-dev", Key=key, ConsistentRead=True)["Item"]
print("conversation record:", item["conversation_status"]["S"])
if item["conversation_status"]["S"] != "recipient_opted_out":
    sys.exit("STOP did not end the conversation")
body["request_data"]["request_id"] = str(uuid.uuid4())
request = urllib.request.Request(f"http://127.0.0.1:{port}/initiate-conversation", data=json.dumps(body).encode(),
                                 headers={"x-api-key": "local-demo-router-key-not-a-secret", "content-type": "application/json"})
try:
    urllib.request.urlopen(request)
    sys.exit("a first message for a recipient who said STOP must be refused")
except urllib.error.HTTPError as refusal:
    print("router:", refusal.status, refusal.read().decode())
    assert refusal.status == 409, refusal.status
assert inbound("START") == 200

# A recruiter in the loop: a new conversation, which the agent carol takes over from the API the
# inbox uses (http://127.0.0.1:<router>/inbox signs in with the same token), answers, and gives
# back to the AI.
body["request_data"]["request_id"] = str(uuid.uuid4())
request = urllib.request.Request(f"http://127.0.0.1:{port}/initiate-conversation", data=json.dumps(body).encode(),
                                 headers={"x-api-key": "local-demo-router-key-not-a-secret", "content-type": "application/json"})
print("router:", urllib.request.urlopen(request).read().decode())
base = f"http://127.0.0.1:{port}/companies/ci-aaa-001/projects/pi-aaa-001/conversations"
agent = {"authorization": "Bearer local-demo-agent-carol-token-not-a-secret", "content-type": "application/json"}
def api(method, path, payload=None):
    request = urllib.request.Request(base + path, method=method, headers=agent,
                                     data=None if payload is None else json.dumps(payload).encode())
    try:
        return json.loads(urllib.request.urlopen(request).read() or b"{}")
    except urllib.error.HTTPError as refusal:
        return json.loads(refusal.read() or b"{}")
conversation_id = f"ci-aaa-001#pi-aaa-001#{body['request_data']['request_id']}#447588713814"
for _ in range(100):
    listed = api("GET", "?state=open")["conversations"]
    mine = [c for c in listed if base64.urlsafe_b64decode(c["id"] + "==").decode().endswith(conversation_id)]
    if mine and mine[0]["conversation_status"] == "initial_message_sent":
        break
    time.sleep(0.2)
else:
    sys.exit("the new conversation did not start: see target/demo/processor.log")
cid = mine[0]["id"]
print("agent carol, refused while the AI answers:", api("POST", f"/{cid}/messages", {"text": "hello"})["error_code"])
print("agent carol takes over:", api("POST", f"/{cid}/take-over")["conversation"]["state"])
assert inbound("Can I talk to someone about the shifts?") == 200
print("the candidate's message waits for her:", api("GET", "?state=waiting_for_person")["conversations"][0]["last_message"]["content"])
said = "Hi Lee, Carol here: the shifts are 8-4, Monday to Friday."
sent = api("POST", f"/{cid}/messages", {"text": said})
if sent.get("status") != "success":
    sys.exit(f"the agent's message was not sent: {sent}")
print("agent carol answers:", sent["status"], sent["message"]["id"], "|", sent["message"]["content"])
print("agent carol gives it back to the AI:", api("POST", f"/{cid}/give-back")["conversation"]["state"])
wanted = {"conversation_started", "taken_over", "message_sent", "given_back"}
for _ in range(150):
    got = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{fakes_port}/client/events").read())
    mine = [e for e in got if e["event"]["conversation"]["id"] == cid]
    if wanted <= {e["event"]["type"] for e in mine if e["verified"]}:
        break
    time.sleep(0.2)
print("events the applicant tracking system received for it (signature checked):")
for e in mine:
    print(f"  {e['event']['type']:22} {e['event']['id']}  verified={e['verified']}")
if not wanted <= {e["event"]["type"] for e in mine if e["verified"]}:
    sys.exit("the company's events were not delivered: see target/demo/events.log")
PY
echo "(pod logs: target/demo/)"
