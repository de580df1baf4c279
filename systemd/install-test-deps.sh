#!/bin/sh
# What the tests need beyond the venv: systemd-analyze (Debian's systemd package), used by
# tests/test_service.py to verify systemd/tierd.service. Without it that test skips, saying why.
command -v systemd-analyze >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing systemd-analyze (Debian package systemd) for the unit-file test"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends systemd >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 &&
          apt-get install -y -q --no-install-recommends systemd >/dev/null 2>&1; } || true
fi
command -v systemd-analyze >/dev/null 2>&1 ||
    echo "note: systemd-analyze is unavailable; tests/test_service.py skips the unit-file check"
exit 0
