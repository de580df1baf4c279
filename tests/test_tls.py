"""TLS over the wire: sslmode=require with psql and psycopg, plain connections refused on request.

The certificate is self-signed, made at test time with the openssl CLI.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import struct
import subprocess

import asyncpg
import psycopg
import pytest

PSQL = "/usr/bin/psql"
OPENSSL = shutil.which("openssl")
PASSWORD = "tls-s3cret"

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl CLI is not installed")


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("cert")
    crt, key = str(d / "server.crt"), str(d / "server.key")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", crt],
                   check=True, capture_output=True, timeout=60)
    return crt, key


def tls_config(cert, required: bool) -> str:
    crt, key = cert
    return (f'[server]\nssl = true\nssl_cert_file = "{crt}"\nssl_key_file = "{key}"\n'
            f'ssl_required = {"true" if required else "false"}\n'
            f'[auth]\nmethod = "scram"\npassword = "{PASSWORD}"\n')


def connect(port: int, sslmode: str, **kw) -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=port, user="tierd", password=PASSWORD, dbname="tierd",
                           sslmode=sslmode, autocommit=True, connect_timeout=10, **kw)


def psql(port: int, sslmode: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", PGCONNECT_TIMEOUT="10", PGPASSWORD=PASSWORD, PAGER="")
    dsn = f"host=127.0.0.1 port={port} user=tierd dbname=tierd sslmode={sslmode}"
    return subprocess.run([PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", dsn, *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, env=env)


def test_tls_with_psycopg_sslmode_require(make_tierd, cert):
    d = make_tierd(tls_config(cert, required=False)).start()
    with connect(d.port, "require") as c:
        assert c.pgconn.ssl_in_use
        c.execute("CREATE TABLE public.secret (id BIGINT PRIMARY KEY, v TEXT)")
        c.execute("INSERT INTO public.secret VALUES (%s, %s)", [1, "x" * 100_000])  # many TLS records
        assert c.execute("SELECT length(v) FROM public.secret").fetchone() == (100_000,)
    with connect(d.port, "disable") as c:  # plain connections still welcome
        assert not c.pgconn.ssl_in_use
        assert c.execute("SELECT count(*) FROM public.secret").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=d.port, user="tierd", password="wrong", dbname="tierd",
                        sslmode="require", connect_timeout=10)


@pytest.mark.skipif(not os.path.exists(PSQL), reason="psql is not installed")
def test_tls_with_psql_sslmode_require(make_tierd, cert):
    d = make_tierd(tls_config(cert, required=True)).start()
    r = psql(d.port, "require", "-c", "SELECT current_user", "-c", r"\conninfo")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "tierd"
    assert "SSL connection" in r.stdout
    r = psql(d.port, "disable", "-c", "SELECT 1")
    assert r.returncode != 0 and "no encryption" in r.stderr


def test_plain_connection_refused_when_tls_required(make_tierd, cert):
    d = make_tierd(tls_config(cert, required=True)).start()
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        connect(d.port, "disable")
    # The refusal is FATAL 28000 and comes before any authentication exchange.
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        body = struct.pack("!i", 196608) + b"user\0tierd\0database\0tierd\0\0"
        s.sendall(struct.pack("!i", len(body) + 4) + body)
        f = s.makefile("rb")
        assert f.read(1) == b"E"
        (length,) = struct.unpack("!i", f.read(4))
        fields = {chr(p[0]): p[1:].decode() for p in f.read(length - 4).split(b"\0") if p}
        assert (fields["S"], fields["C"]) == ("FATAL", "28000")
        assert f.read(1) == b""
    with connect(d.port, "require") as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_without_tls_sslrequest_and_gssencrequest_get_n(tierd):
    for code in (80877103, 80877104):  # SSLRequest, GSSENCRequest
        with socket.create_connection(("127.0.0.1", tierd.port), timeout=10) as s:
            s.sendall(struct.pack("!ii", 8, code))
            assert s.recv(1) == b"N"
    with pytest.raises(psycopg.OperationalError, match="does not support SSL"):
        psycopg.connect(host="127.0.0.1", port=tierd.port, user="tierd", dbname="tierd", sslmode="require",
                        connect_timeout=10)
    with psycopg.connect(host="127.0.0.1", port=tierd.port, user="tierd", dbname="tierd", sslmode="prefer") as c:
        assert not c.pgconn.ssl_in_use


def test_bad_certificate_config_is_refused(tmp_path, cert):
    from tests.daemon import TIERD

    # start-up itself, so `tierd serve` by hand: a bad config must stop it before it serves
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'[server]\nssl = true\nssl_cert_file = "{cert[0]}"\nssl_key_file = "{tmp_path}/missing.key"\n')
    r = subprocess.run([TIERD, "serve", "--config", str(cfg), "--data-dir", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "missing.key" in r.stderr
    cfg.write_text('[server]\nssl_required = true\n')
    r = subprocess.run([TIERD, "serve", "--config", str(cfg), "--data-dir", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "server.ssl_required" in r.stderr


def test_tls_with_asyncpg(make_tierd, cert):
    d = make_tierd(tls_config(cert, required=True)).start()

    async def run():
        conn = await asyncpg.connect(host="127.0.0.1", port=d.port, user="tierd", password=PASSWORD,
                                     database="tierd", ssl="require", timeout=10)
        try:
            assert await conn.execute("CREATE TABLE public.over_tls (id INT PRIMARY KEY)") == "CREATE TABLE"
            assert await conn.execute("INSERT INTO public.over_tls VALUES (1), (2)") == "INSERT 0 2"
            assert await conn.fetchval("SELECT count(*) FROM public.over_tls WHERE id > $1", 0) == 2
        finally:
            await conn.close()

    asyncio.run(run())


def test_sighup_switches_password_and_tls_for_new_connections(make_tierd, cert):
    import signal

    from tests.daemon import wait_for

    d = make_tierd(password=PASSWORD).start()
    open_conn = connect(d.port, "disable")
    with pytest.raises(psycopg.OperationalError, match="does not support SSL"):
        connect(d.port, "require")
    with open(d.config, "w") as f:
        f.write(tls_config(cert, required=True).replace(PASSWORD, "new-pass"))
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded:" in d.output(), timeout=30, what="the reload log line")
    assert "new-pass" not in d.output()  # the password is logged as changed, never shown
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(d.port, "require")  # the old password
    with psycopg.connect(host="127.0.0.1", port=d.port, user="tierd", password="new-pass", dbname="tierd",
                         sslmode="require", connect_timeout=10) as c:
        assert c.pgconn.ssl_in_use
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(host="127.0.0.1", port=d.port, user="tierd", password="new-pass", dbname="tierd",
                        sslmode="disable", connect_timeout=10)
    assert open_conn.execute("SELECT 1").fetchone() == (1,)  # open sessions are left alone
    open_conn.close()
