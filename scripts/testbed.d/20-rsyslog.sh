#!/usr/bin/env bash
# rsyslog for the syslog sink's tests, plus openssl for throwaway TLS certificates. Nothing is
# started here: each test starts its OWN rsyslogd (own config, pid file and work dir, loopback
# high port, one output file per facility) and stops it by pid — see tests/syslog.rs. The
# system's rsyslog service is not used and not started.
set -euo pipefail
apt_install rsyslog rsyslog-gnutls openssl
# Debian's package may have started the system instance on install; the tests do not need it.
command -v rsyslogd >/dev/null
rsyslogd -v | head -1
# Check that a private instance starts, listens and stops (what the tests do).
dir=$(mktemp -d)
mkdir -p "$dir/work" "$dir/out"
cat >"$dir/rsyslog.conf" <<CONF
global(workDirectory="$dir/work")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="0" listenPortFileName="$dir/port")
action(type="omfile" file="$dir/out/all.log")
CONF
rsyslogd -n -f "$dir/rsyslog.conf" -i "$dir/rsyslog.pid" & pid=$!
for _ in $(seq 1 50); do [ -s "$dir/port" ] && break; sleep 0.1; done
ok=0; [ -s "$dir/port" ] && ok=1
kill "$pid"; wait "$pid" 2>/dev/null || true
rm -rf "$dir"
[ $ok = 1 ] || { echo "testbed: rsyslogd did not listen" >&2; exit 1; }
echo "testbed: rsyslog ready (tests start their own instances)"
