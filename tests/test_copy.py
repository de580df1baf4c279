"""COPY FROM STDIN / TO STDOUT against a running tierd: psql, psycopg, asyncpg, raw protocol.

One daemon serves most tests (`module_tierd`, `db`; each uses its own table); the crash test
has its own (`tierd`).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import struct
import subprocess
from decimal import Decimal

import asyncpg
import psycopg
import pytest

from engine.sql.copy import CopyOptions, parse_copy
from engine.sql.copy_input import blocks
from engine.session.session import EngineSession
from tests.daemon import Tierd

PSQL = "/usr/bin/psql"


def make_table(c, name: str, body: str = "id BIGINT PRIMARY KEY, name TEXT, score DOUBLE, ok BOOLEAN") -> None:
    c.execute(f"CREATE TABLE {name} ({body})")


def rows(c, name: str) -> list[tuple]:
    return c.execute(f"SELECT * FROM {name} ORDER BY 1").fetchall()


def copy_in(c, sql: str, data: str | bytes) -> str:
    with c.cursor() as cur:
        with cur.copy(sql) as cp:
            cp.write(data)
        return cur.statusmessage


# ------------------------------------------------------------------ psycopg
def test_write_row_round_trips_awkward_text(db):
    make_table(db, "cp_rows")
    awkward = ["tab\there", "new\nline", "back\\slash", "\\N", "", "crlf\r\n", "ünï"]
    with db.cursor() as cur:
        with cur.copy("COPY cp_rows FROM STDIN") as cp:
            for i, text in enumerate(awkward):
                cp.write_row((i, text, i / 2, i % 2 == 0))
            cp.write_row((100, None, None, None))
        assert cur.statusmessage == f"COPY {len(awkward) + 1}"
    got = rows(db, "cp_rows")
    assert [r[1] for r in got] == awkward + [None]
    assert got[1] == (1, "new\nline", 0.5, False)
    assert got[-1] == (100, None, None, None)


def test_raw_text_blocks_split_anywhere(db):
    make_table(db, "cp_raw")
    data = "".join(f"{i}\tname {i}\t{i}.5\t{'t' if i % 2 else 'f'}\n" for i in range(1000)).encode()
    with db.cursor() as cur:
        with cur.copy("COPY cp_raw FROM STDIN") as cp:
            for start in range(0, len(data), 777):  # pieces cut mid-row and mid-escape
                cp.write(data[start:start + 777])
        assert cur.statusmessage == "COPY 1000"
    assert db.execute("SELECT count(*), sum(id), min(name), bool_or(ok) FROM cp_raw").fetchone() == \
        (1000, 499500, "name 0", True)


def test_text_escapes_and_custom_null(db):
    make_table(db, "cp_esc", "id BIGINT PRIMARY KEY, v TEXT")
    data = "1\ta\\tb\n2\t\\x41\\102\n3\tNIL\n4\ta\\\tb\n5\tend\\\\\n"
    assert copy_in(db, "COPY cp_esc FROM STDIN WITH (NULL 'NIL')", data) == "COPY 5"
    assert rows(db, "cp_esc") == [(1, "a\tb"), (2, "AB"), (3, None), (4, "a\tb"), (5, "end\\")]


def test_csv_header_quotes_and_options(db):
    make_table(db, "cp_csv", "id BIGINT PRIMARY KEY, v TEXT, n INTEGER")
    data = 'id,v,n\n1,"a,b",1\n2,"",2\n3,,3\n4,"multi\nline ""q""",\n'
    assert copy_in(db, "COPY cp_csv FROM STDIN WITH (FORMAT csv, HEADER true)", data) == "COPY 4"
    assert rows(db, "cp_csv") == [(1, "a,b", 1), (2, "", 2), (3, None, 3), (4, 'multi\nline "q"', None)]
    # the old syntax psql users type, with a delimiter and a NULL string
    assert copy_in(db, "COPY cp_csv (n, id) FROM STDIN WITH CSV DELIMITER ';' NULL 'null'",
                   "7;10\nnull;11\n") == "COPY 2"
    assert rows(db, "cp_csv")[-2:] == [(10, None, 7), (11, None, None)]


def test_copy_to_text_csv_and_query(db):
    make_table(db, "cp_out", "id BIGINT PRIMARY KEY, v TEXT, d DATE, x NUMERIC(10,2)")
    db.execute("INSERT INTO cp_out VALUES (1, 'a\tb', '2024-02-29', 1.5), (2, NULL, NULL, NULL), "
               "(3, 'say \"hi\", ok', '2000-01-01', -2)")
    with db.cursor() as cur:
        with cur.copy("COPY cp_out TO STDOUT") as cp:
            text = b"".join(bytes(b) for b in cp).decode()
        assert cur.rowcount == 3
        assert sorted(text.splitlines()) == ["1\ta\\tb\t2024-02-29\t1.50", "2\t\\N\t\\N\t\\N",
                                             "3\tsay \"hi\", ok\t2000-01-01\t-2.00"]
        with cur.copy("COPY (SELECT id, v FROM cp_out ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)") as cp:
            text = b"".join(bytes(b) for b in cp).decode()
        assert text == 'id,v\n1,a\tb\n2,\n3,"say ""hi"", ok"\n'
        with cur.copy("COPY (SELECT id, v FROM cp_out ORDER BY id) TO STDOUT") as cp:
            assert list(cp.rows()) == [("1", "a\tb"), ("2", None), ("3", 'say "hi", ok')]
        with cur.copy("COPY cp_out (id, v) TO STDOUT (FORMAT csv, FORCE_QUOTE *)") as cp:
            text = b"".join(bytes(b) for b in cp).decode()
        assert sorted(text.splitlines())[0] == '"1","a\tb"'


def test_binary_copy_both_ways(db):
    make_table(db, "cp_bin", "id BIGINT PRIMARY KEY, name TEXT, score DOUBLE, ok BOOLEAN, d DATE")
    with db.cursor() as cur:
        with cur.copy("COPY cp_bin FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["int8", "text", "float8", "bool", "date"])
            cp.write_row((1, "one", 1.25, True, dt.date(2024, 1, 2)))
            cp.write_row((2, None, None, None, None))
        assert cur.statusmessage == "COPY 2"
        with cur.copy("COPY (SELECT * FROM cp_bin ORDER BY id) TO STDOUT (FORMAT BINARY)") as cp:
            cp.set_types(["int8", "text", "float8", "bool", "date"])
            got = list(cp.rows())
    assert got == [(1, "one", 1.25, True, dt.date(2024, 1, 2)), (2, None, None, None, None)]


def test_column_list_defaults_and_not_null(db):
    make_table(db, "cp_def", "id BIGINT PRIMARY KEY, v TEXT NOT NULL, n INTEGER DEFAULT 42")
    assert copy_in(db, "COPY cp_def (v, id) FROM STDIN", "x\t1\ny\t2\n") == "COPY 2"
    assert rows(db, "cp_def") == [(1, "x", 42), (2, "y", 42)]
    with pytest.raises(psycopg.errors.NotNullViolation) as err:
        copy_in(db, "COPY cp_def FROM STDIN", "3\tz\t1\n4\t\\N\t1\n")
    assert err.value.diag.context == "COPY cp_def, line 2"
    with pytest.raises(psycopg.errors.UndefinedColumn):
        copy_in(db, "COPY cp_def (id, nope) FROM STDIN", "5\tx\n")
    assert len(rows(db, "cp_def")) == 2


# ------------------------------------------------------------------ failures write nothing
def test_bad_value_names_line_and_column(db):
    make_table(db, "cp_bad")
    with pytest.raises(psycopg.errors.InvalidTextRepresentation) as err:
        copy_in(db, "COPY cp_bad FROM STDIN", "1\ta\t1.0\tt\n2\tb\t2.0\tf\n3\tc\tabc\tt\n4\td\t4\tt\n")
    assert err.value.diag.context == 'COPY cp_bad, line 3, column score: "abc"'
    assert 'invalid input syntax for type double precision: "abc"' in str(err.value)
    with pytest.raises(psycopg.errors.InvalidTextRepresentation) as err:
        copy_in(db, "COPY cp_bad FROM STDIN (FORMAT csv, HEADER)", "id,name,score,ok\n1,a,1,t\n2,b,2,maybe\n")
    assert err.value.diag.context == 'COPY cp_bad, line 3, column ok: "maybe"'
    assert rows(db, "cp_bad") == []
    # the session goes on
    assert copy_in(db, "COPY cp_bad FROM STDIN", "1\ta\t1\tt\n") == "COPY 1"


def test_wrong_field_count_is_bad_copy_format(db):
    make_table(db, "cp_width")
    with pytest.raises(psycopg.Error) as err:
        copy_in(db, "COPY cp_width FROM STDIN", "1\ta\t1\tt\n2\tb\n")
    assert err.value.sqlstate == "22P04"
    assert 'missing data for column "score"' in str(err.value)
    assert err.value.diag.context.startswith("COPY cp_width, line 2")
    with pytest.raises(psycopg.Error) as err:
        copy_in(db, "COPY cp_width FROM STDIN (FORMAT csv)", "1,a,1,t\n2,b,2,t\n3,c,3,t,extra\n")
    assert err.value.sqlstate == "22P04"
    assert err.value.diag.context.startswith("COPY cp_width, line 3")
    assert rows(db, "cp_width") == []


def test_client_copy_fail_writes_nothing(db):
    make_table(db, "cp_fail")
    with pytest.raises(RuntimeError):  # psycopg sends CopyFail, then re-raises
        with db.cursor() as cur:
            with cur.copy("COPY cp_fail FROM STDIN") as cp:
                cp.write("1\ta\t1\tt\n")
                raise RuntimeError("client changed its mind")
    assert rows(db, "cp_fail") == []


def test_duplicate_keys_write_nothing(db):
    make_table(db, "cp_dup")
    db.execute("INSERT INTO cp_dup VALUES (5, 'old', 0, true)")
    with pytest.raises(psycopg.errors.UniqueViolation) as err:
        copy_in(db, "COPY cp_dup FROM STDIN", "1\ta\t1\tt\n2\tb\t1\tt\n1\tc\t1\tt\n")
    assert err.value.diag.context == "COPY cp_dup, line 3"
    with pytest.raises(psycopg.errors.UniqueViolation) as err:
        copy_in(db, "COPY cp_dup FROM STDIN", "1\ta\t1\tt\n5\tb\t1\tt\n")
    assert err.value.diag.message_detail == "Key (id)=(5) already exists."
    assert rows(db, "cp_dup") == [(5, "old", 0.0, True)]
    db.execute("DELETE FROM cp_dup WHERE id = 5")  # a deleted key may come back
    assert copy_in(db, "COPY cp_dup FROM STDIN", "5\tnew\t1\tt\n") == "COPY 1"
    assert rows(db, "cp_dup") == [(5, "new", 1.0, True)]


def test_transactions(module_tierd):
    with module_tierd.connect(autocommit=False) as c:
        make_table(c, "cp_tx")
        c.commit()
        copy_in(c, "COPY cp_tx FROM STDIN", "1\ta\t1\tt\n")
        assert len(rows(c, "cp_tx")) == 1  # the transaction sees its own rows
        c.rollback()
        assert rows(c, "cp_tx") == []
        copy_in(c, "COPY cp_tx FROM STDIN", "2\tb\t1\tt\n")
        c.execute("INSERT INTO cp_tx VALUES (3, 'c', 1, true)")
        c.commit()
        assert [r[0] for r in rows(c, "cp_tx")] == [2, 3]
        with pytest.raises(psycopg.errors.UniqueViolation):
            copy_in(c, "COPY cp_tx FROM STDIN", "4\td\t1\tt\n3\tx\t1\tt\n")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            c.execute("SELECT 1")
        c.rollback()
        assert [r[0] for r in rows(c, "cp_tx")] == [2, 3]


def test_copy_then_flush_then_query_and_key_check_against_cold(db):
    make_table(db, "cp_flush")
    data = "".join(f"{i}\tn{i}\t{i}\tt\n" for i in range(1, 5001))
    assert copy_in(db, "COPY cp_flush FROM STDIN", data) == "COPY 5000"
    status = db.execute("STORAGE FLUSH TABLE public.cp_flush WAIT").fetchone()[1]
    assert status == "completed"
    assert db.execute("SELECT count(*), sum(id) FROM cp_flush").fetchone() == (5000, 5000 * 5001 // 2)
    assert db.execute("SELECT hot_rows FROM system.tables WHERE table_name = 'cp_flush'").fetchone() == (0,)
    with pytest.raises(psycopg.errors.UniqueViolation):
        copy_in(db, "COPY cp_flush FROM STDIN", "6000\tx\t1\tt\n2500\tx\t1\tt\n")
    assert copy_in(db, "COPY cp_flush FROM STDIN", "6000\tx\t1\tt\n") == "COPY 1"
    assert db.execute("SELECT count(*) FROM cp_flush").fetchone() == (5001,)


def test_many_blocks(db):
    """More input than one parse block (8 MiB): rows cut at block edges stay whole."""
    make_table(db, "cp_big", "id BIGINT PRIMARY KEY, v TEXT")
    pad = "x" * 60
    n = 200_000
    with db.cursor() as cur:
        with cur.copy("COPY cp_big FROM STDIN (FORMAT csv)") as cp:
            for start in range(0, n, 10_000):
                cp.write("".join(f'{i},"{pad}\n{i}"\n' for i in range(start, start + 10_000)))
        assert cur.statusmessage == f"COPY {n}"
    assert db.execute("SELECT count(*), count(DISTINCT v), sum(id) FROM cp_big").fetchone() == \
        (n, n, n * (n - 1) // 2)


def test_copy_errors_before_data(db):
    with pytest.raises(psycopg.errors.UndefinedTable):
        copy_in(db, "COPY no_such_table FROM STDIN", "1\n")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the sandbox
        db.execute("COPY cp_rows FROM '/etc/passwd'")
    with pytest.raises(psycopg.errors.SyntaxError):
        db.execute("COPY cp_rows SIDEWAYS STDIN")
    assert db.execute("SELECT 1").fetchone() == (1,)


# ------------------------------------------------------------------ psql
def psql(d: Tierd, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, LC_ALL="C", PGCONNECT_TIMEOUT="10")
    return subprocess.run([PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(d.port),
                           "-U", "tierd", "-d", "tierd", *args],
                          input=input, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.skipif(not os.path.exists(PSQL), reason="psql is not installed")
def test_psql_backslash_copy_from_and_to_file(module_tierd, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,name,score,ok\n1,Ann,1.5,true\n2,\"B, b\",,false\n")
    out = tmp_path / "out.csv"
    r = psql(module_tierd, "-c", "CREATE TABLE cp_psql (id BIGINT PRIMARY KEY, name TEXT, score DOUBLE, ok BOOLEAN)",
             "-c", f"\\copy cp_psql from '{src}' with csv header",
             "-c", f"\\copy (SELECT * FROM cp_psql ORDER BY id) to '{out}' with (format csv, header)")
    assert r.returncode == 0, r.stderr
    assert "COPY 2" in r.stdout
    assert out.read_text() == "id,name,score,ok\n1,Ann,1.5,t\n2,\"B, b\",,f\n"
    bad = tmp_path / "bad.csv"
    bad.write_text("3,C,1,true\n4,D,x,true\n")
    r = psql(module_tierd, "-c", f"\\copy cp_psql from '{bad}' csv")
    assert r.returncode != 0
    assert 'CONTEXT:  COPY cp_psql, line 2, column score: "x"' in r.stderr


@pytest.mark.skipif(not os.path.exists(PSQL), reason="psql is not installed")
def test_psql_copy_from_stdin_pipe(module_tierd):
    script = ("CREATE TABLE cp_pipe (id BIGINT PRIMARY KEY, v TEXT);\n"
              "COPY cp_pipe FROM STDIN;\n1\tone\n2\t\\N\n\\.\n"
              "SELECT id, coalesce(v, '<null>') FROM cp_pipe ORDER BY id;\n")
    r = psql(module_tierd, "-A", "-t", input=script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[-3:-1] == ["1|one", "2|<null>"]
    r = psql(module_tierd, "-A", "-t", "-c", "COPY cp_pipe TO STDOUT WITH CSV")
    assert sorted(r.stdout.splitlines(keepends=True)) == ["1,one\n", "2,\n"]  # a table has no order


# ------------------------------------------------------------------ asyncpg
@pytest.mark.skipif(not hasattr(EngineSession, "describe"),
                    reason="copy_records_to_table needs Describe of a prepared SELECT (RowDescription)")
def test_asyncpg_copy_records(module_tierd):
    async def run() -> None:
        c = await asyncpg.connect(host="127.0.0.1", port=module_tierd.port, user="tierd", database="tierd")
        try:
            await c.execute("CREATE TABLE cp_apg_rec (id BIGINT PRIMARY KEY, name TEXT, amount NUMERIC(12,2), "
                            "ts TIMESTAMP, ok BOOLEAN)")
            records = [(i, f"n{i}", Decimal(i) / 4, dt.datetime(2024, 1, 1, 12, 0, i % 60), i % 3 == 0)
                       for i in range(1000)] + [(1000, None, None, None, None)]
            assert await c.copy_records_to_table("cp_apg_rec", records=records) == "COPY 1001"
            got = await c.fetch("SELECT * FROM cp_apg_rec ORDER BY id")
            assert [tuple(r) for r in got] == records
            tag = await c.copy_records_to_table("cp_apg_rec", records=[(2000, "x")], columns=["id", "name"])
            assert tag == "COPY 1"
            with pytest.raises(asyncpg.UniqueViolationError):
                await c.copy_records_to_table("cp_apg_rec", records=[(5000, "a"), (2000, "b")],
                                              columns=["id", "name"])
            assert await c.fetchval("SELECT count(*) FROM cp_apg_rec") == 1002
        finally:
            await c.close()

    asyncio.run(run())


def test_asyncpg_copy(module_tierd, tmp_path):
    async def run() -> None:
        c = await asyncpg.connect(host="127.0.0.1", port=module_tierd.port, user="tierd", database="tierd")
        try:
            await c.execute("CREATE TABLE cp_apg (id BIGINT PRIMARY KEY, name TEXT)")
            await c.execute("INSERT INTO cp_apg SELECT i, 'n' || i FROM range(1000) t(i)")
            out = tmp_path / "apg.csv"
            tag = await c.copy_from_query("SELECT id, name FROM cp_apg WHERE id < 3 ORDER BY id",
                                          output=str(out), format="csv")
            assert tag == "COPY 3"
            assert out.read_text() == "0,n0\n1,n1\n2,n2\n"
            tag = await c.copy_from_table("cp_apg", columns=["id"], output=str(out))
            assert tag == "COPY 1000"
            src = tmp_path / "apg_in.csv"
            src.write_text("id,name\n3000,from file\n")
            tag = await c.copy_to_table("cp_apg", source=str(src), columns=["id", "name"], format="csv",
                                        header=True)
            assert tag == "COPY 1"
            with pytest.raises(asyncpg.UniqueViolationError):
                await c.copy_to_table("cp_apg", source=str(src), columns=["id", "name"], format="csv", header=True)
        finally:
            await c.close()

    asyncio.run(run())
    with module_tierd.connect() as c:
        assert c.execute("SELECT count(*) FROM cp_apg").fetchone() == (1001,)


# ------------------------------------------------------------------ raw protocol: extended
def _msg(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def _read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    head = b""
    while len(head) < 5:
        head += sock.recv(5 - len(head))
    (length,) = struct.unpack("!i", head[1:])
    body = b""
    while len(body) < length - 4:
        body += sock.recv(length - 4 - len(body))
    return head[:1], body


def test_copy_in_extended_protocol(module_tierd, db):
    make_table(db, "cp_ext", "id BIGINT PRIMARY KEY, v TEXT")
    sock = socket.create_connection(("127.0.0.1", module_tierd.port), timeout=30)
    try:
        params = b"user\x00tierd\x00database\x00tierd\x00\x00"
        sock.sendall(struct.pack("!ii", len(params) + 8, 196608) + params)
        while _read_message(sock)[0] != b"Z":
            pass
        sock.sendall(_msg(b"P", b"\x00COPY cp_ext FROM STDIN\x00\x00\x00")
                     + _msg(b"B", b"\x00\x00\x00\x00\x00\x00\x00\x00") + _msg(b"E", b"\x00\x00\x00\x00\x00"))
        kinds = []
        while (kind := _read_message(sock)[0]) != b"G":
            kinds.append(kind)
        assert kinds == [b"1", b"2"]
        sock.sendall(_msg(b"d", b"1\tone\n2\ttwo\n") + _msg(b"c", b"") + _msg(b"S", b""))
        replies = []
        while True:
            kind, body = _read_message(sock)
            replies.append((kind, body))
            if kind == b"Z":
                break
        assert replies[0] == (b"C", b"COPY 2\x00")
        # CopyFail from the client: 57014, nothing written, the session goes on
        sock.sendall(_msg(b"Q", b"COPY cp_ext FROM STDIN\x00"))
        while _read_message(sock)[0] != b"G":
            pass
        sock.sendall(_msg(b"d", b"3\tthree\n") + _msg(b"f", b"changed my mind\x00"))
        kind, body = _read_message(sock)
        assert kind == b"E" and b"C57014\x00" in body and b"changed my mind" in body
        assert _read_message(sock)[0] == b"Z"
    finally:
        sock.close()
    assert rows(db, "cp_ext") == [(1, "one"), (2, "two")]


# ------------------------------------------------------------------ crashes
def test_kill9_mid_copy_leaves_nothing_and_a_finished_copy_survives(tierd):
    d = tierd
    with d.connect() as c:
        make_table(c, "cp_crash", "id BIGINT PRIMARY KEY, v TEXT")
        assert copy_in(c, "COPY cp_crash FROM STDIN", "".join(f"{i}\tdone\n" for i in range(50_000))) == \
            "COPY 50000"
    d.restart(kill9=True)
    with d.connect() as c:
        assert c.execute("SELECT count(*) FROM cp_crash").fetchone() == (50_000,)
        with pytest.raises(psycopg.OperationalError):
            with c.cursor() as cur:
                with cur.copy("COPY cp_crash FROM STDIN") as cp:
                    for start in range(50_000, 400_000, 50_000):  # several parse blocks
                        cp.write("".join(f"{i}\t{'y' * 40}\n" for i in range(start, start + 50_000)))
                    d.kill9()
    d.restart()
    with d.connect() as c:
        assert c.execute("SELECT count(*), max(id) FROM cp_crash").fetchone() == (50_000, 49_999)


# ------------------------------------------------------------------ units: grammar and blocks
def test_parse_copy_grammar():
    cmd = parse_copy('COPY "My T" (a, "B") FROM STDIN WITH (FORMAT csv, HEADER, DELIMITER \';\', '
                     "NULL 'x', QUOTE '''', ESCAPE E'\\\\');")
    assert (cmd.direction, cmd.table, cmd.columns) == ("from", "My T", ["a", "B"])
    o = cmd.options
    assert (o.format, o.header, o.sep, o.null_string, o.quote, o.escape_char) == ("csv", True, ";", "x", "'", "\\")
    cmd = parse_copy("copy ns.t to stdout with binary")
    assert (cmd.namespace, cmd.table, cmd.options.format) == ("ns", "t", "binary")
    cmd = parse_copy("COPY (SELECT ')' AS p FROM t) TO STDOUT CSV HEADER FORCE QUOTE *")
    assert cmd.query == "SELECT ')' AS p FROM t" and cmd.options.force_quote is True


def test_blocks_cut_only_between_rows():
    csv_opts = CopyOptions(format="csv")
    data = b'1,"a\nb\n"\n2,"x""\n"\n3,plain\n' * 50
    pieces = [data[i:i + 7] for i in range(0, len(data), 7)] + [b""]
    got = list(blocks(iter(pieces).__next__, csv_opts, block_bytes=64))
    assert b"".join(got) == data and len(got) > 5
    assert all(b.count(b'"') % 2 == 0 for b in got)
    text = b"1\ta\\\nb\n2\tc\n" * 40 + b"\\.\nignored\n"
    got = list(blocks(iter([text[i:i + 5] for i in range(0, len(text), 5)] + [b""]).__next__,
                      CopyOptions(), block_bytes=32))
    assert b"".join(got) == b"1\ta\\\nb\n2\tc\n" * 40
    assert all(not b.endswith(b"\\\n") for b in got)
    # "\\.5" is an escaped value, not the end marker, even when a piece ends after "\\."
    text = b"1\t\\.5\n" * 20
    got = list(blocks(iter([text[i:i + 4] for i in range(0, len(text), 4)] + [b""]).__next__,
                      CopyOptions(), block_bytes=8))
    assert b"".join(got) == text


def test_binary_copy_more_types(db):
    make_table(db, "cp_bin2", "id INTEGER PRIMARY KEY, s SMALLINT, r REAL, amount NUMERIC(12,3), "
                              "ts TIMESTAMP, tz TIMESTAMPTZ, u UUID, b BLOB, v VARCHAR")
    import uuid
    row = (7, 3, 1.5, Decimal("12.345"), dt.datetime(2024, 5, 6, 7, 8, 9, 123456),
           dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc), uuid.UUID(int=42), b"\x00\xffab", "vc")
    with db.cursor() as cur:
        with cur.copy("COPY cp_bin2 FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["int4", "int2", "float4", "numeric", "timestamp", "timestamptz", "uuid", "bytea", "varchar"])
            cp.write_row(row)
            cp.write_row((8,) + (None,) * 8)
    got = rows(db, "cp_bin2")
    # compared as text: whether a uuid result column is typed uuid is the result encoder's business
    assert tuple(str(v) for v in got[0]) == tuple(str(v) for v in row)
    assert got[1] == (8,) + (None,) * 8


def test_binary_copy_malformed_input(db):
    make_table(db, "cp_bin3", "id BIGINT PRIMARY KEY, v TEXT")
    header = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
    good = struct.pack("!hiqi1s", 2, 8, 1, 1, b"a")
    for body, message, line in ((good + struct.pack("!hiq", 1, 8, 2) + b"\xff\xff", "row field count is 1, expected 2", 2),
                                (good + struct.pack("!hiq", 2, 8, 3)[:-3], "unexpected EOF in COPY data", 2),
                                (b"NOTPGCOPY" + good, "COPY file signature not recognized", None)):
        with pytest.raises(psycopg.Error) as err:
            copy_in(db, "COPY cp_bin3 FROM STDIN (FORMAT binary)", header + body if line else body)
        assert err.value.sqlstate == "22P04" and message in str(err.value)
        if line:
            assert err.value.diag.context == f"COPY cp_bin3, line {line}"
    assert rows(db, "cp_bin3") == []
    assert copy_in(db, "COPY cp_bin3 FROM STDIN (FORMAT binary)", header + good + b"\xff\xff") == "COPY 1"

