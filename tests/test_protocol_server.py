"""The wire handler against a stub engine: message flow, errors, Describe, row limits, auth.

The stub stands in for engine/ so these tests pin protocol behaviour alone; end-to-end tests
with the real engine live elsewhere.
"""
import socket
import struct
import threading
import weakref

import psycopg
import pyarrow as pa
import pytest

from engine.errors import InvalidCatalogName, UndefinedTable
from engine.results import StatementResult
from engine.catalog.roles import Role, ScramKeys
from engine.sql.split import max_placeholder
from protocol.auth import AuthConfig
from protocol.server import make_server


class StubSession:
    def __init__(self, calls):
        self.calls = calls
        self.in_transaction = False
        self.failed = False

    def execute(self, sql, params=None):
        self.calls.append((sql, params))
        key = sql.strip().lower()
        if key.startswith("select * from missing"):
            raise UndefinedTable('relation "missing" does not exist', hint="create it first")
        if key.startswith("insert"):
            return [StatementResult("INSERT 0 3", pa.table({"id": [1, 2, 3]}))
                    if "returning" in key else StatementResult("INSERT 0 3")]
        if key.startswith("echo"):
            return [StatementResult("SELECT 1", pa.table({"v": [repr(params)]}))]
        if key.startswith("ten"):
            return [StatementResult("SELECT 10", pa.table({"n": list(range(10))}))]
        return [StatementResult("SELECT 1", pa.table({"b": [True], "s": [sql]}))]

    def describe(self, sql):
        """Parameter types unknown (text), no rows: the wire layer's side of Describe."""
        return [None] * max_placeholder(sql), None

    def front_end_error(self):
        pass

    def analysis_version(self):
        """No catalog here: a re-sent Parse may always reuse what was worked out."""
        return ()

    def param_types(self, sql):
        """Unknown (text) for every parameter, as describe says."""
        return [None] * max_placeholder(sql)

    def batchable(self, sql):
        """Every Execute runs on its own here (batching is tested against the real engine)."""
        return False

    def pool_reset(self, sql):
        """No script is answered in one call here (tested against the real engine)."""
        return None

    def begin_segment(self):
        pass

    def end_segment(self):
        pass

    def cancel(self):
        pass

    def close(self):
        pass


class StubEngine:
    def __init__(self):
        self.calls = []
        # The role catalog as authentication reads it: name -> Role.
        self.roles = {"tierd": Role("tierd", superuser=True, verifier=ScramKeys.derive("s3cret").text()),
                      "nologin": Role("nologin", login=False, verifier=ScramKeys.derive("s3cret").text())}

    def connect(self, user, database):
        if database != "tierd":
            raise InvalidCatalogName(f'database "{database}" does not exist')
        return StubSession(self.calls)


def _serve(auth):
    engine = StubEngine()
    for port in range(15450, 15500):
        try:
            server = make_server(engine, "127.0.0.1", port, auth)
            break
        except OSError:
            continue
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, engine, port


@pytest.fixture
def trust_server():
    server, engine, port = _serve(AuthConfig())
    yield engine, port
    server.shutdown()
    server.server_close()


@pytest.fixture
def password_server():
    server, engine, port = _serve(AuthConfig("scram"))
    yield engine, port
    server.shutdown()
    server.server_close()


def connect(port, **kw):
    params = dict(host="127.0.0.1", port=port, user="tierd", dbname="tierd", autocommit=True)
    params.update(kw)
    return psycopg.connect(**params)


def test_simple_query_multi_statement_and_booleans(trust_server):
    engine, port = trust_server
    with connect(port) as conn:
        cur = conn.execute("select 1; select 2")
        assert cur.fetchall() == [(True, "select 1")]
        assert cur.nextset() and cur.fetchall() == [(True, "select 2")]
        assert [sql for sql, _ in engine.calls] == ["select 1", "select 2"]
        assert conn.execute("insert into t values (1)").statusmessage == "INSERT 0 3"


def test_error_keeps_connection_and_carries_sqlstate(trust_server):
    _, port = trust_server
    with connect(port) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable) as info:
            conn.execute("select * from missing where x = %s", [1])
        assert info.value.diag.severity == "ERROR"
        assert info.value.diag.message_hint == "create it first"
        assert conn.execute("select 1").fetchone() == (True, "select 1")


def test_params_are_typed_by_declared_oid(trust_server):
    _, port = trust_server
    with connect(port) as conn:
        (row,) = conn.execute("echo %s, %s, %s", ["12", 12, True]).fetchall()
        assert row == ("['12', 12, True]",)


def test_describe_portal_executes_once(trust_server):
    engine, port = trust_server
    with connect(port) as conn:
        cur = conn.execute("insert into t values (%s) returning id", [1])
        assert cur.fetchall() == [(1,), (2,), (3,)] and cur.statusmessage == "INSERT 0 3"
    assert len([c for c in engine.calls if c[0].startswith("insert")]) == 1


def test_startup_failures_are_fatal(trust_server, password_server):
    _, trust_port = trust_server
    _, password_port = password_server
    cases = [(trust_port, dict(dbname="other"), 'database "other" does not exist'),
             (trust_port, dict(user="bob"), 'role "bob" does not exist'),
             (password_port, dict(password="wrong"), 'password authentication failed'),
             # Under SCRAM an unknown role fails like a wrong password, as in Postgres.
             (password_port, dict(user="bob", password="s3cret"), 'password authentication failed for user "bob"'),
             (password_port, dict(user="nologin", password="s3cret"), 'role "nologin" is not permitted to log in'),
             (trust_port, dict(user="nologin"), 'role "nologin" is not permitted to log in')]
    for port, kw, message in cases:
        with pytest.raises(psycopg.OperationalError, match=message):
            connect(port, **kw)
    with connect(password_port, password="s3cret") as conn:
        assert conn.execute("select 1").fetchone()[0] is True


# --- raw protocol: row limits and error recovery --------------------------------------


def _msg(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def _raw_connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    body = struct.pack("!i", 196608) + b"user\x00tierd\x00database\x00tierd\x00\x00"
    sock.sendall(struct.pack("!i", len(body) + 4) + body)
    _read_until_ready(sock)
    return sock


_READERS: "weakref.WeakKeyDictionary[socket.socket, object]" = weakref.WeakKeyDictionary()


def _read_until_ready(sock):
    """Read replies up to ReadyForQuery; one buffered reader per socket, so bytes that
    arrived after this ReadyForQuery stay for the next call."""
    out = []
    buf = _READERS.get(sock)
    if buf is None:
        buf = _READERS[sock] = sock.makefile("rb")
    while True:
        kind = buf.read(1)
        (length,) = struct.unpack("!i", buf.read(4))
        payload = buf.read(length - 4)
        out.append((kind, payload))
        if kind == b"Z":
            return out


def _extended(sql: str, limit: int = 0, executes: int = 1) -> bytes:
    parse = _msg(b"P", b"\x00" + sql.encode() + b"\x00" + struct.pack("!h", 0))
    bind = _msg(b"B", b"\x00\x00" + struct.pack("!hhh", 0, 0, 0))
    describe = _msg(b"D", b"P\x00")
    execute = _msg(b"E", b"\x00" + struct.pack("!i", limit))
    return parse + bind + describe + execute * executes + _msg(b"S", b"")


def test_row_limit_suspends_portal(trust_server):
    engine, port = trust_server
    sock = _raw_connect(port)
    sock.sendall(_extended("ten", limit=4, executes=3))
    kinds = [k for k, _ in _read_until_ready(sock)]
    assert kinds == [b"1", b"2", b"T"] + [b"D"] * 4 + [b"s"] + [b"D"] * 4 + [b"s"] + \
        [b"D"] * 2 + [b"C", b"Z"]
    assert len([c for c in engine.calls if c[0] == "ten"]) == 1
    sock.close()


def test_error_skips_until_sync(trust_server):
    engine, port = trust_server
    sock = _raw_connect(port)
    sock.sendall(_extended("select * from missing") + _extended("select 1"))
    first = _read_until_ready(sock)
    assert [k for k, _ in first] == [b"1", b"2", b"E", b"Z"]
    assert b"C42P01\x00" in first[2][1]
    second = _read_until_ready(sock)
    assert [k for k, _ in second] == [b"1", b"2", b"T", b"D", b"C", b"Z"]
    sock.close()


def test_describe_statement_reports_parameters(trust_server):
    engine, port = trust_server
    sock = _raw_connect(port)
    parse = _msg(b"P", b"s1\x00select $1, $2\x00" + struct.pack("!hI", 1, 23))
    sock.sendall(parse + _msg(b"D", b"Ss1\x00") + _msg(b"S", b""))
    replies = _read_until_ready(sock)
    assert [k for k, _ in replies] == [b"1", b"t", b"n", b"Z"]
    assert replies[1][1] == struct.pack("!hII", 2, 23, 25)
    assert engine.calls == []
    sock.close()


def test_ssl_request_declined_then_startup(trust_server):
    _, port = trust_server
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(struct.pack("!ii", 8, 80877103))
    assert sock.recv(1) == b"N"
    body = struct.pack("!i", 196608) + b"user\x00tierd\x00\x00"
    sock.sendall(struct.pack("!i", len(body) + 4) + body)
    kinds = [k for k, _ in _read_until_ready(sock)]
    assert kinds[0] == b"R" and b"K" in kinds and kinds[-1] == b"Z"
    sock.close()
