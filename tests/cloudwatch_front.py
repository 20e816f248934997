#!/usr/bin/env python3
"""The strict front for the cloudwatch sink's end-to-end tests.

It sits between logwharf and moto (which accepts anything) and answers the way the real
CloudWatch Logs service would to requests that break its documented rules:

- an `Authorization` header that is not a SigV4 one for service `logs` (and, with --secret,
  a signature that does not verify), a stale or missing `X-Amz-Date`, a wrong
  `Content-Type` or `X-Amz-Target`;
- PutLogEvents with no events or more than 10,000, more than 1,048,576 bytes (UTF-8 message
  length + 26 per event), an event over 262,144 bytes (message + 26), an empty message,
  events out of chronological order, or a span over 24 hours.

Each violation is recorded and answered with `400 InvalidParameterException` (or an auth
error). Everything else is forwarded to moto. The test drives it over HTTP:

- `POST /_front/throttle?n=N` answers the next N PutLogEvents with `ThrottlingException`;
- `GET /_front/ecs-credentials` serves credentials as the container credentials endpoint does;
- `GET /_front/stats` returns counters, every violation, and the arrival times of
  PutLogEvents requests (to observe backoff).

usage: cloudwatch_front.py serve --port P --upstream-port M [--secret S]
       cloudwatch_front.py dump --endpoint URL --group G      (reads a group back with boto3:
                                                               one JSON line per event)
"""

import argparse
import datetime
import hashlib
import hmac
import http.client
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

MAX_EVENTS = 10_000
MAX_BYTES = 1_048_576
OVERHEAD = 26
MAX_EVENT = 262_144
MAX_SPAN_MS = 24 * 3600 * 1000
TARGETS = {
    "Logs_20140328.PutLogEvents",
    "Logs_20140328.CreateLogGroup",
    "Logs_20140328.CreateLogStream",
    "Logs_20140328.PutRetentionPolicy",
    "Logs_20140328.DescribeLogStreams",
    "Logs_20140328.DescribeLogGroups",
    "Logs_20140328.GetLogEvents",
    "Logs_20140328.FilterLogEvents",
}
AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([A-Za-z0-9]+)/(\d{8})/([a-z0-9-]+)/logs/aws4_request, "
    r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$"
)


class State:
    def __init__(self, upstream_port, secret):
        self.upstream_port = upstream_port
        self.secret = secret
        self.lock = threading.Lock()
        self.throttle = 0
        self.stats = {
            "requests": 0,
            "put_requests": 0,
            "put_events": 0,
            "put_max_events": 0,
            "put_max_bytes": 0,
            "throttled": 0,
            "forward_errors": 0,
            "access_keys": [],
            "targets": {},
            "violations": [],
            "put_times": [],
        }


def signing_key(secret, date, region):
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, "logs", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def check_auth(handler, body, secret):
    """None when the request carries a valid-looking (with a secret: valid) SigV4 signature."""
    auth = handler.headers.get("Authorization", "")
    m = AUTH_RE.match(auth)
    if not m:
        return "Authorization header is not SigV4 for service logs"
    key_id, date, region, signed, signature = m.groups()
    amz_date = handler.headers.get("X-Amz-Date", "")
    try:
        t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return "X-Amz-Date missing or malformed"
    if not amz_date.startswith(date):
        return "credential scope date differs from X-Amz-Date"
    if abs((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()) > 15 * 60:
        return "X-Amz-Date is more than 15 minutes off"
    names = signed.split(";")
    for required in ("host", "x-amz-date"):
        if required not in names:
            return f"{required} is not signed"
    if names != sorted(names):
        return "SignedHeaders not sorted"
    if secret is not None:
        canon_headers = ""
        for n in names:
            v = handler.headers.get(n)
            if v is None:
                return f"signed header {n} is missing"
            canon_headers += n + ":" + " ".join(v.split()) + "\n"
        path = urlparse(handler.path).path or "/"
        creq = "\n".join([
            handler.command, path, "", canon_headers, signed, hashlib.sha256(body).hexdigest()
        ])
        sts = "\n".join([
            "AWS4-HMAC-SHA256", amz_date, f"{date}/{region}/logs/aws4_request",
            hashlib.sha256(creq.encode()).hexdigest(),
        ])
        want = hmac.new(signing_key(secret, date, region), sts.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, signature):
            return "signature does not match"
    return None, key_id


def check_put(req):
    """None when a PutLogEvents body keeps every documented limit, else the broken rule."""
    events = req.get("logEvents")
    if not isinstance(events, list) or not events:
        return "logEvents is empty"
    if len(events) > MAX_EVENTS:
        return f"{len(events)} events > {MAX_EVENTS}"
    total = 0
    prev = None
    first = events[0].get("timestamp")
    for i, e in enumerate(events):
        msg = e.get("message")
        ts = e.get("timestamp")
        if not isinstance(msg, str) or not isinstance(ts, int):
            return f"event {i} lacks a message or a timestamp"
        if not msg:
            return f"event {i} has an empty message"
        size = len(msg.encode("utf-8")) + OVERHEAD
        if size > MAX_EVENT:
            return f"event {i} is {size} bytes > {MAX_EVENT}"
        total += size
        if prev is not None and ts < prev:
            return f"event {i} is out of chronological order ({ts} < {prev})"
        prev = ts
    if total > MAX_BYTES:
        return f"{total} bytes > {MAX_BYTES}"
    if prev - first > MAX_SPAN_MS:
        return f"batch spans {prev - first} ms > 24 h"
    return None, len(events), total


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None

    def log_message(self, *args):
        pass

    def reply(self, status, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, kind, message):
        self.reply(status, {"__type": kind, "message": message})

    def violation(self, target, rule):
        with self.state.lock:
            self.state.stats["violations"].append({"target": target, "rule": rule, "time": time.time()})

    def do_GET(self):
        if self.path.startswith("/_front/ecs-credentials"):
            # The container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI).
            exp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
            with self.state.lock:
                self.state.stats["ecs_credential_requests"] = self.state.stats.get("ecs_credential_requests", 0) + 1
            self.reply(200, {
                "AccessKeyId": "AKIDFROMECS", "SecretAccessKey": self.state.secret or "x",
                "Token": "session-token-from-ecs", "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            })
        elif self.path.startswith("/_front/stats"):
            with self.state.lock:
                self.reply(200, self.state.stats)
        else:
            self.error(404, "UnknownOperationException", "GET is not part of the API")

    def do_POST(self):
        st = self.state
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/_front/throttle"):
            n = int(parse_qs(urlparse(self.path).query).get("n", ["1"])[0])
            with st.lock:
                st.throttle += n
            self.reply(200, {"throttle": n})
            return
        target = self.headers.get("X-Amz-Target", "")
        with st.lock:
            st.stats["requests"] += 1
            st.stats["targets"][target] = st.stats["targets"].get(target, 0) + 1
        if target not in TARGETS:
            self.violation(target, "unknown X-Amz-Target")
            self.error(400, "UnknownOperationException", f"unknown target {target!r}")
            return
        if self.headers.get("Content-Type") != "application/x-amz-json-1.1":
            self.violation(target, "Content-Type is not application/x-amz-json-1.1")
            self.error(400, "SerializationException", "bad content type")
            return
        auth = check_auth(self, body, st.secret)
        if isinstance(auth, str):
            self.violation(target, auth)
            self.error(403, "InvalidSignatureException", auth)
            return
        with st.lock:
            if auth[1] not in st.stats["access_keys"]:
                st.stats["access_keys"].append(auth[1])
        if target == "Logs_20140328.PutLogEvents":
            try:
                req = json.loads(body)
            except ValueError:
                self.violation(target, "body is not JSON")
                self.error(400, "SerializationException", "body is not JSON")
                return
            ok = check_put(req)
            if isinstance(ok, str):
                self.violation(target, ok)
                self.error(400, "InvalidParameterException", ok)
                return
            with st.lock:
                s = st.stats
                s["put_requests"] += 1
                s["put_times"].append(time.time())
                if st.throttle > 0:
                    st.throttle -= 1
                    s["throttled"] += 1
                    throttle = True
                else:
                    throttle = False
                    s["put_events"] += ok[1]
                    s["put_max_events"] = max(s["put_max_events"], ok[1])
                    s["put_max_bytes"] = max(s["put_max_bytes"], ok[2])
            if throttle:
                self.error(400, "ThrottlingException", "Rate exceeded")
                return
        self.forward(body)

    def forward(self, body):
        st = self.state
        try:
            c = http.client.HTTPConnection("127.0.0.1", st.upstream_port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
            c.request("POST", self.path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            c.close()
        except OSError as e:
            with st.lock:
                st.stats["forward_errors"] += 1
            self.error(503, "ServiceUnavailableException", f"upstream: {e}")
            return
        self.send_response(r.status)
        self.send_header("Content-Type", r.getheader("Content-Type", "application/x-amz-json-1.1"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(args):
    Handler.state = State(args.upstream_port, args.secret)
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    print(f"front listening on 127.0.0.1:{args.port} -> 127.0.0.1:{args.upstream_port}", flush=True)
    srv.serve_forever()


def dump(args):
    import boto3

    c = boto3.client(
        "logs", endpoint_url=args.endpoint, region_name="us-east-1",
        aws_access_key_id="AKIDDUMP", aws_secret_access_key="dump",
    )
    try:
        streams = []
        kw = {"logGroupName": args.group}
        while True:
            r = c.describe_log_streams(**kw)
            streams += [s["logStreamName"] for s in r["logStreams"]]
            if not r.get("nextToken"):
                break
            kw["nextToken"] = r["nextToken"]
    except c.exceptions.ResourceNotFoundException:
        return
    out = sys.stdout
    for s in streams:
        kw = {"logGroupName": args.group, "logStreamName": s, "startFromHead": True, "limit": 1000}
        token = None
        while True:
            if token:
                kw["nextToken"] = token
            r = c.get_log_events(**kw)
            for e in r["events"]:
                m = e["message"]
                out.write(json.dumps({
                    "stream": s, "timestamp": e["timestamp"], "len": len(m.encode("utf-8")),
                    "head": m[:80], "tail": m[-40:],
                }) + "\n")
            nxt = r.get("nextForwardToken")
            if not r["events"] or nxt == token:
                break
            token = nxt


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--upstream-port", type=int, required=True)
    s.add_argument("--secret")
    d = sub.add_parser("dump")
    d.add_argument("--endpoint", required=True)
    d.add_argument("--group", required=True)
    args = p.parse_args()
    serve(args) if args.cmd == "serve" else dump(args)


if __name__ == "__main__":
    main()
