#!/usr/bin/env bash
# Python's fluent-logger (PyPI), a real Forward-protocol client (Message and Forward modes),
# plus msgpack, in a venv the tests find at $TESTBED_DIR/venv (default
# /var/tmp/logwharf-testbed/venv). Idempotent: reuses the venv when both import.
set -euo pipefail
dir=${TESTBED_DIR:-/var/tmp/logwharf-testbed}
venv=$dir/venv
mkdir -p "$dir"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import fluent.sender, msgpack' 2>/dev/null; then
    echo "testbed: fluent-logger ready in $venv"
    exit 0
fi
py=$(command -v python3 || true)
if [ -z "$py" ] || ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3 python3-venv
    py=/usr/bin/python3
fi
rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check 'fluent-logger>=0.10' 'msgpack>=1.0'
"$venv/bin/python" -c 'import fluent.sender, msgpack; print("testbed: fluent-logger", __import__("importlib.metadata").metadata.version("fluent-logger"), "msgpack", msgpack.version)'
