#!/usr/bin/env bash
# A Kafka-protocol broker for the kafka sink's tests: tansu (crates.io), built once and cached
# in ~/.cargo/bin (about 9 minutes on 2 cores the first time). This only installs: each test
# starts its own broker on a free loopback port with in-memory storage, creates its topics
# with `tansu topic create`, and stops the broker by pid (see tests/kafka.rs).
# The kafka sink itself needs nothing more: librdkafka (and the OpenSSL it uses for TLS) is
# compiled by the rdkafka crate with the toolchain, build-essential and perl.
set -euo pipefail
# perl: OpenSSL's build (rdkafka's ssl-vendored); socat + openssl: the TLS front and the
# certificates of the kafka-over-TLS test (tansu 0.6.0 cannot serve TLS itself).
apt_install build-essential perl socat openssl
tansu=${TANSU:-$HOME/.cargo/bin/tansu}
if [ -x "$tansu" ] && "$tansu" --version >/dev/null 2>&1; then
    echo "testbed: $("$tansu" --version) already installed at $tansu"
    exit 0
fi
echo "testbed: building tansu (cargo install, a few minutes) …"
cargo install tansu --version 0.6.0 --features dynostore --locked --quiet
# Smoke test: a broker starts with in-memory storage, answers, and stops.
port=19399
"$tansu" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >/dev/null 2>&1 &
pid=$!
ok=
for _ in $(seq 1 50); do
    if "$tansu" topic create testbed-smoke --partitions 1 --broker "tcp://127.0.0.1:$port" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
done
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
[ -n "$ok" ] || { echo "testbed: tansu installed but its broker did not answer" >&2; exit 1; }
echo "testbed: $("$tansu" --version) installed at $tansu"
