#!/bin/sh
# Client programs the compatibility tests drive: pgbench and psql (Debian's postgresql-client).
# Without them those tests skip, saying why.
command -v pgbench >/dev/null 2>&1 && command -v psql >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing pgbench and psql (Debian package postgresql-client)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends postgresql-client >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 &&
          apt-get install -y -q --no-install-recommends postgresql-client >/dev/null 2>&1; } || true
fi
command -v pgbench >/dev/null 2>&1 ||
    echo "note: pgbench is unavailable; tests/test_client_pgbench.py skips"
exit 0
