#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/corpus/TARGET/) from tests/fixtures and a few
hand-made inputs. Each seed starts with the control bytes its target reads first (see the
target's doc comment). Run from anywhere: python3 fuzz/seeds.py"""
import gzip, os, struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


# --- a little msgpack, enough for seeds -------------------------------------------------
def mp(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        return bytes([v]) if 0 <= v < 128 else b"\xce" + struct.pack(">I", v)
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(v, bytes):
        return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        return bytes([0x80 | len(v)]) + b"".join(mp(k) + mp(x) for k, x in v.items())
    if isinstance(v, EventTime):
        return b"\xd7\x00" + struct.pack(">II", v.s, v.ns)
    raise TypeError(v)


class EventTime:
    def __init__(self, s, ns):
        self.s, self.ns = s, ns


ID = "d2ae8d3a9846e1ba1cc4b1b14b3d2f1c7d9e5d8f1a2b3c4d5e6f708192a3b4c5"
T = EventTime(1795611862, 901652423)

# --- json_file: [cap, timeout] + lines --------------------------------------------------
lines = [
    b'{"log":"hello\\n","stream":"stdout","time":"2026-11-25T13:04:22.901652423Z"}',
    b'{"log":"part one ","stream":"stderr","time":"2026-11-25T13:04:22.901652423Z"}',
    b'{"log":"part two\\n","stream":"stderr","time":"2026-11-25T13:04:22.901652424Z"}',
    b'{"log":"esc \\"q\\" \\u00e9 \\ud83d\\ude00 \\ud800 \\t\\n","stream":"stdout","attrs":{"tag":"web","k":"v"},"time":"2026-11-25T13:04:23Z"}',
    b'{"stream":"stdout","time":"2026-11-25T13:04:23+01:00","log":"other order\\n"}',
    b'not json at all',
    b'{"log":"no newline","stream":"stdout","time":"2026-11-25T13:04:24Z"}',
]
put("json_file", "docker", b"\x10\x03" + b"\n".join(lines) + b"\n")
put("json_file", "partials-small-cap", b"\x02\x00" + b"\n".join(lines[1:3] * 3) + b"\n")

# --- syslog: [max_frame, read size] + stream --------------------------------------------
for f in sorted((ROOT / "tests/fixtures/syslog").glob("*.bin")):
    put("syslog", f.stem, b"\xff\x07" + f.read_bytes())
put(
    "syslog",
    "mixed",
    b"\x20\x05"
    + b"34 <14>1 2026-11-25T13:04:34Z h a - -\n"
    + b"<165>1 2026-11-25T13:04:34Z h app 1 ID47 [ex@1 iut=\"3\"] sd\n"
    + b"<14>Nov 25 13:04:34 h app[1]: bsd\n"
    + b"<191>1 - h app 1 m - nil time\r\n"
    + b"99999999999 x\n\x00\x00\n",
)

# --- forward: [mode] + data --------------------------------------------------------------
for f in sorted((ROOT / "tests/fixtures/fluent").glob("*.msgpack")):
    if f.stat().st_size <= 4096:
        put("forward", f.stem, b"\x00" + f.read_bytes())
rec = {"container_id": ID, "container_name": "/web", "source": "stdout", "log": "piece "}
pieces = b"".join(
    mp(["docker.web", T, dict(rec, partial_message="true", partial_id="p1",
                              partial_ordinal=str(i), partial_last=str(i == 3).lower())])
    for i in (1, 2, 3)
)
legacy = mp(["t", T, dict(rec, partial_message="true")]) + mp(["t", T, {"log": "end", "source": "stdout", "container_id": ID}])
hostile = mp(["t", T, {"container_id": "0123456789a\u20acbcdef", "container_name": "../../x\n<14>1 fake", "log": "x"}])
put("forward", "partials", b"\x00" + pieces + legacy + hostile)
entries = b"".join(mp([T, {"log": f"packed {i}", "source": "stderr"}]) for i in range(3))
entries += mp([[T, {}], {"message": "fluent-bit pair"}])
put("forward", "gzip-entries", b"\x01" + entries)
put("forward", "helo", b"\x02" + mp(["HELO", {"nonce": b"0123456789abcdef", "auth": b"", "keepalive": True}]))
put("forward", "ping", b"\x02" + mp(["PING", "client", b"salt", "00" * 64, "", ""]))
put("forward", "pong", b"\x02" + mp(["PONG", True, "", "server", "00" * 64]))

# --- docker_logs: [tty, read size] + stream ----------------------------------------------
def frame(stream, payload):
    return bytes([stream, 0, 0, 0]) + struct.pack(">I", len(payload)) + payload


put(
    "docker_logs",
    "multiplexed",
    b"\x00\x05"
    + frame(1, b"2026-11-25T13:04:22.901652423Z hello\n")
    + frame(2, b"2026-11-25T13:04:22.901652423Z \x01err\n")
    + frame(1, b"2026-11-25T13:04:23Z part"),
)
put("docker_logs", "tty", b"\x01\x03" + b"2026-11-25T13:04:22Z \x01\x00\x00\x00tty line\r\n2026-11-25T13:04:23Z tail")

# --- config: TOML ------------------------------------------------------------------------
for f in sorted((ROOT / "examples").glob("*.toml")):
    put("config", f.stem, f.read_bytes())
put(
    "config",
    "all-shapes",
    b"""data_dir = "${HOME}/lw"
checkpoint_interval = "5s"

[api]
address = "127.0.0.1:9598"

[sources.c]
type = "docker_json_file"
include = ["web*"]
max_line_bytes = "1MiB"
multiline = { start = '^\\d' }

[sources.f]
type = "fluent"
address = "tcp://0.0.0.0:24224"

[sources.s]
type = "syslog"
address = "udp://0.0.0.0:514"

[sources.a]
type = "docker_api"

[sinks.out]
type = "file"
inputs = ["c", "f"]
path = "/srv/logs/{{.Name}}/{{.ID}}.log"
encoding = "json"
max_size = "10MB"
buffer = { max_events = 1000, when_full = "block" }

[sinks.sys]
type = "syslog"
inputs = ["s"]
address = "tcp+tls://logs.example:6514"
tag = "{{.Name | upper}}"
batch = { max_events = 10, timeout = "1s" }

[sinks.fwd]
type = "fluentd"
inputs = ["a"]
address = "tcp://127.0.0.1:24224"
auth = { shared_key = "k" }
""",
)

# --- template: template NUL id NUL name NUL image NUL image id NUL labels ----------------
meta = b"\0".join([ID.encode(), b"web", b"nginx:1", b"sha256:e8487cbb", b"com.docker.compose.service=web", b"env=prod"])
for i, t in enumerate([
    b"{{.Name}}/{{.ID}}",
    b"/var/log/lw/{{.Name}}/{{.FullID}}.log",
    b"{{- .ImageName | lower -}} {{ printf \"%-10s|%05d|%q|%x\" .Name 42 .ID .Name }}",
    b"{{ index .ContainerLabels \"env\" }}.{{ .Labels.env }} {{ json .Labels }} {{ len .Name }}",
    b"{{ pad .Name 2 3 }}{{ truncate .ID 4 }}{{ split .ImageName \":\" | join \"_\" }}{{ title \"a b\" }}{{ print 1 2 \"x\" }}",
    b"/srv/out/.{{.Name}}/x.log{{/* comment */}}",
]):
    put("template", f"t{i}", t + b"\0" + meta)
put("template", "hostile", b"/srv/{{.Name}}/{{.ID}}\0" + "0123456789a\u20acbc".encode() + b"\0../../etc/\n<14>1 x")
print("seeds written to", CORPUS)
