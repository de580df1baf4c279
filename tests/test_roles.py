"""Roles, SCRAM-SHA-256 authentication and privileges, over the wire with psql and psycopg.

One SCRAM daemon serves most of the module (`module_scram_tierd`; roles are per test: unique
names); trust-mode behaviour and restarts get their own daemon. Passwords are only ever checked
by logging in.
"""
from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess

import asyncpg
import psycopg
import pytest

from tests.daemon import Tierd

PSQL = "/usr/bin/psql"


def psql(d: Tierd, user: str, password: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", PGCONNECT_TIMEOUT="10", PSQL_PAGER="", PAGER="")
    if password is not None:
        env["PGPASSWORD"] = password
    cmd = [PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(d.port),
           "-U", user, "-w", "tierd", *args]
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=env)


def sqlstate_of_login(d: Tierd, user: str, password: str | None) -> tuple[str, str]:
    """(SQLSTATE, message) of a refused login, read from the server's ErrorResponse (libpq
    does not hand a connection failure's SQLSTATE to psycopg). Also checks that the error is
    the only thing the server sent after the SCRAM exchange, and that it then closed."""
    with pytest.raises(psycopg.OperationalError):
        d.connect_as(user, password).close()
    fields = raw_login(d.port, user, password or "")
    return fields["C"], fields["M"]


def raw_login(port: int, user: str, password: str) -> dict[str, str]:
    """Log in over a plain socket with scramp's client; returns the ErrorResponse fields."""
    from scramp import ScramClient

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rwb")
        body = struct.pack("!i", 196608) + b"user\0" + user.encode() + b"\0database\0tierd\0\0"
        f.write(struct.pack("!i", len(body) + 4) + body)
        f.flush()
        client = ScramClient(["SCRAM-SHA-256"], user, password)
        while True:
            kind = f.read(1)
            (length,) = struct.unpack("!i", f.read(4))
            payload = f.read(length - 4)
            if kind == b"E":
                fields = {chr(p[0]): p[1:].decode() for p in payload.split(b"\0") if p}
                assert f.read(1) == b"", "the server sent more after a FATAL error"
                return fields
            assert kind == b"R", f"unexpected message {kind!r} before authentication finished"
            (code,) = struct.unpack_from("!i", payload)
            if code == 10:  # SASL: send client-first
                first = client.get_client_first().encode()
                msg = b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first
            elif code == 11:  # SASL continue: send client-final
                client.set_server_first(payload[4:].decode())
                msg = client.get_client_final().encode()
            elif code == 12:
                continue
            else:
                raise AssertionError(f"login was not refused (authentication code {code})")
            f.write(b"p" + struct.pack("!i", len(msg) + 4) + msg)
            f.flush()


# --- authentication -------------------------------------------------------------------


def test_scram_login_with_psycopg_and_current_user(module_scram_tierd):
    with module_scram_tierd.connect() as c:
        c.execute("CREATE USER alice WITH PASSWORD 'wonder land'")
    with module_scram_tierd.connect_as("alice", "wonder land") as c:
        row = c.execute("SELECT current_user, session_user, user, current_role").fetchone()
        assert row == ("alice", "alice", "alice", "alice")
        # Naming a system column switches the query to the catalog that has them: still alice.
        assert c.execute("SELECT current_user AS _seq").fetchone() == ("alice",)
        assert c.info.parameter_status("is_superuser") == "off"
        assert c.info.parameter_status("session_authorization") == "alice"
    with module_scram_tierd.connect() as c:
        assert c.execute("SELECT current_user").fetchone() == ("tierd",)
        assert c.info.parameter_status("is_superuser") == "on"


@pytest.mark.skipif(not os.path.exists(PSQL), reason="psql is not installed")
def test_scram_login_with_psql(module_scram_tierd):
    with module_scram_tierd.connect() as c:
        c.execute("CREATE USER pat WITH PASSWORD 'pq-pass'")
    r = psql(module_scram_tierd, "pat", "pq-pass", "-c", "SELECT current_user")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "pat"
    r = psql(module_scram_tierd, "pat", "nope", "-c", "SELECT 1")
    assert r.returncode != 0
    assert 'password authentication failed for user "pat"' in r.stderr


def test_wrong_password_unknown_user_and_no_password_fail_alike(module_scram_tierd):
    with module_scram_tierd.connect() as c:
        c.execute("CREATE USER bert WITH PASSWORD 'right'")
        c.execute("CREATE USER nopass")
    state, message = sqlstate_of_login(module_scram_tierd, "bert", "wrong")
    assert state == "28P01" and 'password authentication failed for user "bert"' in message
    # As in Postgres under scram: an unknown role looks exactly like a wrong password.
    state, message = sqlstate_of_login(module_scram_tierd, "nobody_here", "whatever")
    assert state == "28P01" and 'password authentication failed for user "nobody_here"' in message
    state, _ = sqlstate_of_login(module_scram_tierd, "nopass", "anything")
    assert state == "28P01"
    with module_scram_tierd.connect_as("bert", "right") as c:  # the failures left the server serving
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_drop_user_then_login_refused(module_scram_tierd):
    with module_scram_tierd.connect() as c:
        c.execute("CREATE USER temp_user WITH PASSWORD 'tp'")
    module_scram_tierd.connect_as("temp_user", "tp").close()
    with module_scram_tierd.connect() as c:
        c.execute("DROP USER temp_user")
        c.execute("DROP USER IF EXISTS temp_user")  # no error
        with pytest.raises(psycopg.errors.UndefinedObject):
            c.execute("DROP USER temp_user")
    assert sqlstate_of_login(module_scram_tierd, "temp_user", "tp")[0] == "28P01"


def test_alter_user_password_superuser_and_nologin(module_scram_tierd):
    with module_scram_tierd.connect() as c:
        c.execute("CREATE ROLE carol LOGIN PASSWORD 'one'")
    with module_scram_tierd.connect_as("carol", "one") as c:
        c.execute("ALTER USER carol WITH PASSWORD 'two'")  # a role may change its own password
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("ALTER USER carol SUPERUSER")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("CREATE NAMESPACE carols")
        with module_scram_tierd.connect() as r:
            r.execute("ALTER USER carol SUPERUSER")
        c.execute("CREATE NAMESPACE carols")  # the open session sees it at its next statement
        c.execute("DROP NAMESPACE carols")
        with module_scram_tierd.connect() as r:
            r.execute("ALTER ROLE carol NOSUPERUSER")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("CREATE NAMESPACE carols")
    assert sqlstate_of_login(module_scram_tierd, "carol", "one")[0] == "28P01"
    module_scram_tierd.connect_as("carol", "two").close()
    with module_scram_tierd.connect() as c:
        c.execute("ALTER USER carol NOLOGIN")
    state, message = sqlstate_of_login(module_scram_tierd, "carol", "two")
    assert state == "28000" and "not permitted to log in" in message


def test_system_users_has_no_password_material(module_scram_tierd):
    with module_scram_tierd.connect() as c:
        c.execute("CREATE USER dora WITH PASSWORD 'dora-secret' SUPERUSER")
        cols = [d.name for d in c.execute("SELECT * FROM system.users").description]
        assert cols == ["user_name", "is_superuser", "can_login", "created_at"]
        rows = dict(c.execute("SELECT user_name, is_superuser FROM system.users").fetchall())
        assert rows["dora"] is True and rows["tierd"] is True
    with module_scram_tierd.connect_as("dora", "dora-secret") as c:  # a role created SUPERUSER is one
        c.execute("CREATE NAMESPACE doras")
        c.execute("DROP NAMESPACE doras")


def test_scram_verifier_given_as_password_is_stored_as_is(module_scram_tierd):
    from engine.catalog.roles import ScramKeys

    verifier = ScramKeys.derive("pre-hashed").text()
    with module_scram_tierd.connect() as c:
        c.execute(f"CREATE USER gina WITH PASSWORD '{verifier}'")
    with module_scram_tierd.connect_as("gina", "pre-hashed") as c:
        assert c.execute("SELECT current_user").fetchone() == ("gina",)


def test_roles_survive_restart(make_tierd):
    d = make_tierd(password="pw0").start()
    with d.connect() as c:
        c.execute("CREATE USER hank WITH PASSWORD 'h1'")
    d.restart(kill9=True)
    with d.connect_as("hank", "h1") as c:
        assert c.execute("SELECT current_user").fetchone() == ("hank",)
    # The password never reaches the data directory in the clear.
    for dirpath, _, files in os.walk(d.data_dir):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                assert b"h1'" not in f.read() and b'"h1"' not in f.read()


def test_trust_mode_unknown_role_is_28000(tierd):
    with tierd.connect() as c:
        c.execute("CREATE USER ivy")
    with psycopg.connect(host="127.0.0.1", port=tierd.port, user="ivy", dbname="tierd") as c:
        assert c.execute("SELECT current_user").fetchone() == ("ivy",)
    with pytest.raises(psycopg.OperationalError, match='role "nobody" does not exist'):
        psycopg.connect(host="127.0.0.1", port=tierd.port, user="nobody", dbname="tierd")
    fields = raw_login(tierd.port, "nobody", "")
    assert (fields["S"], fields["C"], fields["M"]) == ("FATAL", "28000", 'role "nobody" does not exist')


# Role commands and privileges on SHARED tables, statement by statement, are SQL case files:
# tests/sql/roles/ and tests/sql/privileges/.


# --- asyncpg ---------------------------------------------------------------------------


def test_scram_with_asyncpg(module_scram_tierd):

    with module_scram_tierd.connect() as r:
        r.execute("CREATE USER nora WITH PASSWORD 'n-pass'")

    async def run():
        conn = await asyncpg.connect(host="127.0.0.1", port=module_scram_tierd.port, user="nora", password="n-pass",
                                     database="tierd", ssl=False, timeout=10)
        try:
            assert await conn.fetchval("SELECT current_user") == "nora"
            assert conn.get_settings().session_authorization == "nora"
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("CREATE NAMESPACE noras")
        finally:
            await conn.close()
        for user, password in (("nora", "wrong"), ("no_such_role", "n-pass")):
            with pytest.raises(asyncpg.InvalidPasswordError) as info:
                await asyncpg.connect(host="127.0.0.1", port=module_scram_tierd.port, user=user, password=password,
                                      database="tierd", ssl=False, timeout=10)
            assert info.value.sqlstate == "28P01"

    asyncio.run(run())
