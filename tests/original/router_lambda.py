"""The original system's channel router, reconstructed from docs/spec/template-sender.md (§1.4
processing order, §1.5 error catalogue, §3 context object, §4.2 SendMessage) to measure it
beside ours in scripts/bench-router.sh. The original's source is not in this repository; this is
a Python 3.11 + boto3 Lambda handler written to the spec, as the original was deployed (boto3
clients made once per container, DynamoDB read through the resource API, numbers normalised,
`json.dumps` of the whole context, one SendMessage per request).

API Gateway checked the API key before the Lambda ran, so the handler does not; `serve` stands
in for API Gateway's proxy integration (one event per HTTP request, keep-alive connections).

usage: python router_lambda.py <port>
  env: COMPANY_DATA_TABLE, WHATSAPP_QUEUE_URL, SMS_QUEUE_URL, EMAIL_QUEUE_URL, VERSION,
       AWS_ENDPOINT_URL, AWS_REGION (the bench points them at the emulator)
"""
import base64
import json
import logging
import os
import re
import sys
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

logger = logging.getLogger()
logger.setLevel(logging.INFO)

dynamodb = boto3.resource("dynamodb")
sqs = boto3.client("sqs")

CHANNELS = ["whatsapp", "email", "sms"]
UUID_V4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
STATUS = {
    "INVALID_REQUEST": 400, "MISSING_IDENTIFIERS": 400, "UNSUPPORTED_CHANNEL": 400, "INVALID_TIMESTAMP": 400,
    "COMPANY_NOT_FOUND": 404, "PROJECT_INACTIVE": 403, "CHANNEL_NOT_ALLOWED": 403, "DATABASE_ERROR": 500,
    "QUEUE_ERROR": 500, "CONFIGURATION_ERROR": 500, "INTERNAL_ERROR": 500,
}
HEADERS = {
    "Content-Type": "application/json",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Content-Type,X-Amz-Date,Authorization,X-Api-Key,X-Amz-Security-Token",
    "Access-Control-Allow-Methods": "OPTIONS,POST",
}


def respond(status, body):
    return {"statusCode": status, "headers": HEADERS, "body": json.dumps(body)}


def error(code, message, request_id, hint=400):
    return respond(STATUS.get(code, hint), {
        "status": "error", "error_code": code, "message": message, "request_id": request_id or "unknown"})


def normalise(value):
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def validate(body):
    """(error_code, message) of the first failing rule of §1.4 step 6, or None."""
    for section in ("company_data", "recipient_data", "request_data"):
        if section not in body:
            return f"MISSING_{section.upper()}", f"'{section}' section is required"
        if not isinstance(body[section], dict):
            return f"INVALID_{section.upper()}_TYPE", f"'{section}' must be a dictionary"
    request, recipient = body["request_data"], body["recipient_data"]
    for field in ("request_id", "channel_method", "initial_request_timestamp"):
        if field not in request:
            return f"MISSING_{field.upper()}", f"'{field}' is required in request_data"
        if not isinstance(request[field], str) or not request[field].strip():
            return f"INVALID_{field.upper()}_FORMAT", f"'{field}' must be a non-empty string"
    if not UUID_V4.match(request["request_id"]):
        return "INVALID_REQUEST_ID", "request_id must be a valid UUID v4 string"
    channel = request["channel_method"].lower()
    if channel not in CHANNELS:
        return "UNSUPPORTED_CHANNEL", (
            f"Channel method '{request['channel_method']}' is not supported. Must be one of: {CHANNELS}")
    try:
        datetime.fromisoformat(request["initial_request_timestamp"].replace("Z", "+00:00"))
    except ValueError:
        return "INVALID_TIMESTAMP", ("initial_request_timestamp must be a valid ISO 8601 string "
                                     "(e.g., YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DDTHH:MM:SS+00:00)")
    field = "recipient_email" if channel == "email" else "recipient_tel"
    if field not in recipient:
        return f"MISSING_{field.upper()}", f"{channel} channel requires '{field}' in recipient_data"
    if not isinstance(recipient[field], str) or not recipient[field].strip():
        return f"INVALID_{field.upper()}", f"'{field}' must be a non-empty string"
    if "comms_consent" not in recipient:
        return "MISSING_COMMS_CONSENT", "'comms_consent' is required in recipient_data"
    if not isinstance(recipient["comms_consent"], bool):
        return "INVALID_COMMS_CONSENT_TYPE", "'comms_consent' must be a boolean (true or false)"
    return None


def conversation_id(body, item, channel):
    config = item.get("channel_config", {})
    if channel == "whatsapp":
        part = (config.get("whatsapp", {}).get("company_whatsapp_number") or "").lstrip("+") or "unknown_whatsapp_number"
    elif channel == "sms":
        part = (config.get("sms", {}).get("company_sms_number") or "").lstrip("+") or "unknown_sms_number"
    else:
        part = config.get("email", {}).get("company_email") or "unknown_company_email"
    ids = body["company_data"]
    return f"{ids['company_id']}#{ids['project_id']}#{body['request_data']['request_id']}#{part}"


def lambda_handler(event, context):
    table_name = os.environ.get("COMPANY_DATA_TABLE")
    if not table_name:
        return error("CONFIGURATION_ERROR", "Server configuration error (missing table info).", str(uuid.uuid4()))
    fallback_id = str(uuid.uuid4())
    try:
        raw = event.get("body")
        if not isinstance(raw, str):
            return error("INVALID_REQUEST", "Invalid or missing request body", fallback_id)
        if event.get("isBase64Encoded"):
            raw = base64.b64decode(raw).decode("utf-8")
        if not raw.strip():
            return error("INVALID_REQUEST", "Invalid or missing request body", fallback_id)
        body = json.loads(raw)
        if body is None:
            return error("INVALID_REQUEST", "Invalid or missing request body", fallback_id)
    except (ValueError, UnicodeDecodeError):
        return error("INVALID_REQUEST", "Invalid or missing request body", fallback_id)
    try:
        request_id = body.get("request_data", {}).get("request_id", fallback_id)
        ids = body.get("company_data", {})
        if not ids.get("company_id") or not ids.get("project_id"):
            return error("MISSING_IDENTIFIERS", "company_id and project_id are required in company_data", request_id)
        invalid = validate(body)
        if invalid:
            return error(invalid[0], invalid[1], request_id)
        channel = body["request_data"]["channel_method"].lower()
        logger.info("Request %s for %s/%s on %s", request_id, ids["company_id"], ids["project_id"], channel)
        try:
            found = dynamodb.Table(table_name).get_item(
                Key={"company_id": ids["company_id"], "project_id": ids["project_id"]})
        except Exception:
            logger.exception("DynamoDB error")
            return error("DATABASE_ERROR", "Failed to access the database", request_id)
        if "Item" not in found:
            return error("COMPANY_NOT_FOUND", "Company and project combination not found", request_id)
        item = normalise(found["Item"])
        if item.get("project_status") != "active":
            return error("PROJECT_INACTIVE", "Project is not active", request_id)
        if channel not in item.get("allowed_channels", []):
            return error("CHANNEL_NOT_ALLOWED", f"Channel '{channel}' is not permitted for this project.", request_id)
        conversation = conversation_id(body, item, channel)
        context_object = {
            "frontend_payload": body,
            "company_data_payload": item,
            "conversation_data": {"conversation_id": conversation, "conversation_status": "initiated"},
            "metadata": {"router_version": os.environ.get("VERSION", "")},
        }
        queue_url = os.environ.get(f"{channel.upper()}_QUEUE_URL")
        if not queue_url:
            return error("CONFIGURATION_ERROR", f"Processing queue for channel '{channel}' is not configured.",
                         request_id)
        recipient = body["recipient_data"]
        attributes = {
            "channelMethod": {"DataType": "String", "StringValue": channel},
            "conversationId": {"DataType": "String", "StringValue": conversation},
            "routerTimestamp": {"DataType": "String", "StringValue": datetime.now(timezone.utc).isoformat()},
        }
        field, name = ("recipient_email", "recipientEmail") if channel == "email" else ("recipient_tel", "recipientTel")
        if recipient.get(field):
            attributes[name] = {"DataType": "String", "StringValue": recipient[field]}
        try:
            sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(context_object),
                             MessageAttributes=attributes)
        except Exception:
            logger.exception("SQS error")
            return error("QUEUE_ERROR", "Failed to send message to processing queue.", request_id)
        logger.info("Queued %s", conversation)
        return respond(200, {
            "status": "success", "request_id": request_id,
            "message": "Request accepted and queued for processing",
            "queue_timestamp": datetime.now(timezone.utc).isoformat()})
    except Exception:
        logger.exception("Unexpected error")
        return error("INTERNAL_ERROR", "An internal server error occurred.", fallback_id)


class ProxyIntegration(BaseHTTPRequestHandler):
    """API Gateway's Lambda proxy integration, in the small: one event per request."""
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        event = {"httpMethod": "POST", "path": self.path, "headers": dict(self.headers), "body": body,
                 "isBase64Encoded": False}
        result = lambda_handler(event, None)
        payload = result["body"].encode()
        self.send_response(result["statusCode"])
        for name, value in result["headers"].items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), ProxyIntegration).serve_forever()
