#!/usr/bin/env bash
# A real Docker daemon (Debian's docker.io, 20.10) writing real json-file logs, and the
# busybox image the tests run (no registry here: imported from busybox-static).
# Flags from ../shared/TESTBED.md: vfs storage, no iptables, no bridge network.
set -euo pipefail
apt_install docker.io busybox-static

if ! timeout 5 docker version >/dev/null 2>&1; then
    if [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        echo "testbed: dockerd is running but not answering yet"
    else
        rm -f /var/run/docker.pid
        nohup dockerd --storage-driver=vfs --iptables=false --ip6tables=false --bridge=none \
            -p /var/run/docker.pid >/var/log/dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 60); do
        timeout 5 docker version >/dev/null 2>&1 && break
        sleep 0.5
    done
    timeout 5 docker version >/dev/null 2>&1 || { echo "testbed: dockerd did not start; see /var/log/dockerd.log" >&2; tail -20 /var/log/dockerd.log >&2; exit 1; }
fi

if ! docker image inspect logwharf-busybox:latest >/dev/null 2>&1; then
    rootfs=$(mktemp -d)
    mkdir -p "$rootfs/bin"
    cp /bin/busybox "$rootfs/bin/"
    for c in sh echo seq cat sleep yes head printf tr dd env; do ln -sf busybox "$rootfs/bin/$c"; done
    tar -C "$rootfs" -c . | docker import - logwharf-busybox:latest >/dev/null
    rm -rf "$rootfs"
fi
docker run --rm --network none logwharf-busybox sh -c 'echo testbed-docker-ok' | grep -q testbed-docker-ok
echo "testbed: docker $(docker version --format '{{.Server.Version}}') ready, image logwharf-busybox"
