#!/usr/bin/env bash
# The CloudWatch Logs API emulator: moto's server (`moto[server]`) and boto3, in a virtualenv
# under $TESTBED_DIR. Only installed here: each test starts its own `moto_server` on a free
# port (through tests/cloudwatch_front.py) and stops it by pid. Idempotent.
set -euo pipefail
venv=$TESTBED_DIR/venv-moto
py=${PYTHON:-python3}
if ! "$venv/bin/python" -c 'import moto, boto3, flask' >/dev/null 2>&1; then
    if ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        apt_install python3-venv
        py=/usr/bin/python3
    fi
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]>=5,<6' boto3
fi
# Smoke test: a server on a free port accepts a group and an event and gives it back.
"$venv/bin/python" - "$venv" <<'PY'
import os, socket, subprocess, sys, time
import boto3
venv = sys.argv[1]
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
p = subprocess.Popen([os.path.join(venv, "bin", "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    c = boto3.client("logs", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                     aws_access_key_id="AKIDTESTBED", aws_secret_access_key="testbed")
    for _ in range(100):
        try:
            c.create_log_group(logGroupName="testbed"); break
        except Exception:
            time.sleep(0.1)
    c.create_log_stream(logGroupName="testbed", logStreamName="s")
    c.put_log_events(logGroupName="testbed", logStreamName="s",
                     logEvents=[{"timestamp": int(time.time() * 1000), "message": "testbed-moto-ok"}])
    ev = c.get_log_events(logGroupName="testbed", logStreamName="s")["events"]
    assert ev and ev[0]["message"] == "testbed-moto-ok", ev
finally:
    p.terminate(); p.wait()
PY
echo "testbed: moto $("$venv/bin/python" -c 'import moto; print(moto.__version__)') ready in $venv"
