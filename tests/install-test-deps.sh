#!/bin/sh
# What the tests need beyond the venv, installed when missing (idempotent, non-interactive: CI
# is a fresh Debian machine with no stdin). `make test-deps` runs it; a test whose runtime is
# still missing afterwards skips, saying why.
#   - systemd-analyze (Debian's systemd) for tests/test_service.py's unit-file check
#   - psql and pgbench (postgresql-client) for the psql and pgbench tests
#   - a PostgreSQL 15 server (postgresql-15) for the shared Iceberg catalog (tests/test_iceberg_writers.py)
#   - Daft (and Ray for its distributed runner) in a venv of their own, .venv-readers (a link to a
#     cached venv, see below): Daft needs a pyarrow older than tierd's pin (tests/test_iceberg_daft.py)
#   - PgBouncer (pgbouncer) for tests/test_client_pgbouncer.py (DISCARD ALL between pooled clients)
#   - pgJDBC (libpostgresql-jdbc-java) and a JDK (javac) for tests/test_client_jdbc.py
#   - Node.js + npm, then node-postgres pinned by tests/clients/node/package-lock.json (npm ci)
#     for tests/test_client_node.py
here=$(cd "$(dirname "$0")" && pwd)

apt_install() {
    [ -n "$*" ] || return 0
    command -v apt-get >/dev/null 2>&1 || { echo "note: cannot install $* (no apt-get)"; return 0; }
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"; else echo "note: cannot install $* (not root)"; return 0; fi
    echo "installing $* for the tests"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 ||
        { $SUDO apt-get update -q >/dev/null 2>&1 &&
          $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
              >/dev/null 2>&1; } || echo "note: installing $* failed"
}

missing=""
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
{ command -v psql >/dev/null 2>&1 && command -v pgbench >/dev/null 2>&1; } || missing="$missing postgresql-client"
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing="$missing postgresql-15"
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing="$missing pgbouncer"
[ -e /usr/share/java/postgresql.jar ] || missing="$missing libpostgresql-jdbc-java"
command -v javac >/dev/null 2>&1 || missing="$missing openjdk-17-jdk-headless"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
# shellcheck disable=SC2086
apt_install $missing

if command -v npm >/dev/null 2>&1; then
    lock="$here/clients/node/package-lock.json"
    stamp="$here/clients/node/node_modules/.installed-from-lock"
    if [ ! -d "$here/clients/node/node_modules/pg" ] || [ ! -f "$stamp" ] || ! cmp -s "$lock" "$stamp"; then
        echo "installing node-postgres (npm ci in tests/clients/node)"
        (cd "$here/clients/node" && npm ci --no-audit --no-fund --loglevel=error </dev/null >/dev/null) &&
            cp "$lock" "$stamp" || echo "note: npm ci failed; tests/test_client_node.py will skip"
    fi
fi
# Daft and Ray (~900 MB installed) go into a venv kept outside the clone, named by their pins, so
# a fresh clone on the same machine (CI's) links it instead of installing it again; a fresh
# machine installs it once. A failed install leaves nothing behind (the test then fails in CI).
readers="$here/../.venv-readers"
pins="daft==0.7.26 ray[data,client]==2.59.0 pyiceberg==0.12.0 sqlalchemy==2.0.54"
key=$(printf '%s %s' "$pins" "$("$here/../.venv/bin/python" --version 2>&1)" | sha256sum | cut -c1-12)
cached="${XDG_CACHE_HOME:-$HOME/.cache}/tierd/venv-readers-$key"
if [ ! -f "$cached/.installed" ]; then
    echo "installing Daft and Ray into $cached (the external readers of tests/test_iceberg_daft.py)"
    rm -rf "$cached" && mkdir -p "$(dirname "$cached")" &&
    "$here/../.venv/bin/python" -m venv "$cached" && (set -f; "$cached/bin/pip" install -q $pins >/dev/null 2>&1) &&
        touch "$cached/.installed" ||
        { rm -rf "$cached"; echo "note: installing Daft failed; tests/test_iceberg_daft.py cannot run"; }
fi
if [ -f "$cached/.installed" ]; then
    [ -L "$readers" ] || rm -rf "$readers"
    ln -sfn "$cached" "$readers"
fi

exit 0
