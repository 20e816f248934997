#!/usr/bin/env bash
# What tests/packaging.rs needs besides dockerd: systemd-analyze (to verify the unit file; no
# systemd is started) and strip (binutils, for scripts/build-image).
set -euo pipefail
apt_install systemd binutils
systemd-analyze --version | head -1
command -v strip >/dev/null
