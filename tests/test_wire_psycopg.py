"""psycopg 3 against a real tierd over the wire, in text and binary formats.

One daemon serves the whole module (`module_tierd`, `db`: tests/conftest.py); each test uses
its own tables.
"""
from __future__ import annotations

import datetime as dt
import json
import socket
import struct
import uuid
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Json, Jsonb

MODES = pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])


# --- types ----------------------------------------------------------------------------

UTC = dt.timezone.utc
PLUS_0530 = dt.timezone(dt.timedelta(hours=5, minutes=30))

# column, SQL type, SQL literal of the first value, then sample values (each row of the
# round trip takes the next one). JSONB (an alias of JSON here) has its own test below.
COLUMNS = [
    ("c_bigint", "BIGINT", "1099511627776",
     [2 ** 40, 2 ** 63 - 1, -2 ** 63]),
    ("c_int", "INT", "-7",
     [-7, 2 ** 31 - 1, -2 ** 31]),
    ("c_smallint", "SMALLINT", "3",
     [3, 2 ** 15 - 1, -2 ** 15]),
    ("c_double", "DOUBLE PRECISION", "1.5",
     [1.5, -1e300, float("inf")]),
    ("c_real", "REAL", "2.25",
     [2.25, -0.5, 1024.0]),
    ("c_numeric", "NUMERIC(12,3)", "123.456",
     [Decimal("123.456"), Decimal("-123456789.123"), Decimal("0.001")]),
    ("c_text", "TEXT", "'12'",
     ["12", "", "it's \\ \"quoted\"\n\ttabbed ☃"]),
    ("c_varchar", "VARCHAR(20)", "'2024-01-01'",
     ["2024-01-01", "héllo", "x" * 20]),
    ("c_bool", "BOOLEAN", "true",
     [True, False, True]),
    ("c_bytea", "BYTEA", "'\\x00\\x01\\xFF'::BLOB",
     [b"\x00\x01\xff", b"", bytes(range(256))]),
    ("c_date", "DATE", "DATE '2024-01-02'",
     [dt.date(2024, 1, 2), dt.date(1999, 12, 31), dt.date(2100, 2, 28)]),
    ("c_time", "TIME", "TIME '03:04:05.123456'",
     [dt.time(3, 4, 5, 123456), dt.time(0, 0), dt.time(23, 59, 59, 999999)]),
    ("c_timestamp", "TIMESTAMP", "TIMESTAMP '2024-01-02 03:04:05.678901'",
     [dt.datetime(2024, 1, 2, 3, 4, 5, 678901), dt.datetime(1970, 1, 1),
      dt.datetime(2024, 2, 29, 23, 59, 59, 999999)]),
    ("c_timestamptz", "TIMESTAMPTZ", "TIMESTAMPTZ '2024-01-01 21:34:05+00'",
     [dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=PLUS_0530), dt.datetime(2000, 1, 1, tzinfo=UTC),
      dt.datetime(2030, 6, 1, 12, 0, 0, 1, tzinfo=UTC)]),
    ("c_uuid", "UUID", "'12345678-1234-5678-1234-567812345678'::UUID",
     [uuid.UUID("12345678-1234-5678-1234-567812345678"), uuid.UUID(int=0),
      uuid.UUID("ffffffff-ffff-ffff-ffff-ffffffffffff")]),
    ("c_json", "JSON", "'{\"a\": [1, 2]}'::JSON",
     [{"a": [1, 2]}, [], {"k": None, "s": "é"}]),
]
NAMES = [c[0] for c in COLUMNS]


def as_param(name, value):
    return Json(value) if name == "c_json" and value is not None else value


def comparable(name, value):
    """uuid compares by its text and json by its parsed value; everything else must come
    back as the exact Python value that was sent."""
    if value is None:
        return None
    if name == "c_uuid":
        return str(value)
    if name == "c_json":
        return json.loads(value) if isinstance(value, str) else value
    return value


def create_all_types(db, table):
    cols = ", ".join(f"{name} {typ}" for name, typ, _, _ in COLUMNS)
    db.execute(f"CREATE TABLE public.{table} (id BIGINT PRIMARY KEY, {cols})")


@MODES
def test_list_parameters_as_arrays_any_and_all(db, binary):
    """psycopg sends list[str] as array text of unknown type: `= ANY(%s)`, `<> ALL(%s)`, casts
    and array columns read it as PostgreSQL does."""
    cur = db.cursor(binary=binary)
    assert cur.execute("SELECT 'b' = ANY(%s), 'c' <> ALL(%s), 2 = ANY(%s)",
                       (["a", "b"], ["a", "b"], [1, 2])).fetchone() == (True, True, True)
    assert cur.execute("SELECT %s::text[]", (["a", "b c", None],)).fetchone() == (["a", "b c", None],)
    cur.execute("CREATE TABLE public.list_params_%s (id INT PRIMARY KEY, tags TEXT[])" % ("b" if binary else "t"))
    cur.execute("INSERT INTO public.list_params_%s VALUES (1, %%s), (2, %%s)" % ("b" if binary else "t"),
                (["x", "y z"], []))
    assert cur.execute("SELECT id, tags FROM public.list_params_%s WHERE %%s = ANY(tags) ORDER BY id"
                       % ("b" if binary else "t"), ("x",)).fetchall() == [(1, ["x", "y z"])]
    if not binary:  # nested arrays have no binary encoder yet (README, known gaps)
        assert cur.execute("SELECT '{{1,2},{3,4}}'::int[]").fetchone() == ([[1, 2], [3, 4]],)


@MODES
def test_parameters_arrive_as_the_right_values(db, binary):
    """Each parameter is compared server side with a literal of the same value."""
    cur = db.cursor(binary=binary)
    for name, typ, literal, values in COLUMNS:
        cur.execute(f"SELECT (%s) IS NOT DISTINCT FROM CAST({literal} AS {typ})",
                    (as_param(name, values[0]),))
        assert cur.fetchone() == (True,), f"{name}: {values[0]!r} arrived differently"
        cur.execute(f"SELECT CAST(%s AS {typ}) IS NULL", (None,))
        assert cur.fetchone() == (True,), name


@MODES
def test_all_types_round_trip_through_a_table(db, binary):
    table = f"rt_{'bin' if binary else 'txt'}"
    create_all_types(db, table)
    cur = db.cursor(binary=binary)
    placeholders = ", ".join(["%s"] * (len(COLUMNS) + 1))
    rows = [[i] + [values[i] for _, _, _, values in COLUMNS] for i in range(3)]
    rows.append([3] + [None] * len(COLUMNS))
    for row in rows:
        cur.execute(f"INSERT INTO public.{table} (id, {', '.join(NAMES)}) VALUES ({placeholders})",
                    [row[0]] + [as_param(n, v) for n, v in zip(NAMES, row[1:])])
        assert cur.statusmessage == "INSERT 0 1"
    cur.execute(f"SELECT id, {', '.join(NAMES)} FROM public.{table} ORDER BY id")
    got = cur.fetchall()
    assert len(got) == len(rows)
    for sent, received in zip(rows, got):
        assert received[0] == sent[0]
        for name, a, b in zip(NAMES, sent[1:], received[1:]):
            assert comparable(name, a) == comparable(name, b), (name, sent[0], a, b)
    # the row of NULLs reads back as NULLs, and IS NULL sees them server side
    cur.execute(f"SELECT count(*) FROM public.{table} WHERE "
                + " AND ".join(f"{n} IS NULL" for n in NAMES))
    assert cur.fetchone() == (1,)


@MODES
def test_values_read_back_filtered_by_typed_parameters(db, binary):
    table = f"rtw_{'bin' if binary else 'txt'}"
    create_all_types(db, table)
    cur = db.cursor(binary=binary)
    cur.execute(f"INSERT INTO public.{table} (id, {', '.join(NAMES)}) VALUES "
                f"(1, {', '.join(lit for _, _, lit, _ in COLUMNS)})")
    for name, _, _, values in COLUMNS:
        if name == "c_json":
            continue   # json has no equality operator
        cur.execute(f"SELECT id FROM public.{table} WHERE {name} = %s", (values[0],))
        assert cur.fetchall() == [(1,)], name


@MODES
def test_result_column_types(db, binary):
    table = f"rtt_{'bin' if binary else 'txt'}"
    create_all_types(db, table)
    cur = db.cursor(binary=binary)
    cur.execute(f"SELECT id, {', '.join(NAMES)} FROM public.{table}")
    codes = {d.name: d.type_code for d in cur.description}
    expected = {"id": 20, "c_bigint": 20, "c_int": 23, "c_smallint": 21, "c_double": 701,
                "c_real": 700, "c_numeric": 1700, "c_text": 25, "c_bool": 16, "c_bytea": 17,
                "c_date": 1082, "c_time": 1083, "c_timestamp": 1114, "c_timestamptz": 1184}
    assert {k: codes[k] for k in expected} == expected
    assert codes["c_varchar"] in (25, 1043)


@MODES
def test_uuid_and_json_results_carry_their_types(db, binary):
    cur = db.cursor(binary=binary)
    cur.execute("SELECT '12345678-1234-5678-1234-567812345678'::UUID AS u, "
                "'{\"a\": 1}'::JSON AS j")
    assert [d.type_code for d in cur.description] == [2950, 114]
    assert cur.fetchone() == (uuid.UUID("12345678-1234-5678-1234-567812345678"), {"a": 1})


def test_jsonb_column(db):
    """JSONB is accepted as JSON: columns, parameters, casts and operators, hot and cold."""
    db.execute("CREATE TABLE public.jb (id BIGINT PRIMARY KEY, doc JSONB)")
    db.execute("INSERT INTO public.jb VALUES (1, %s)", (Jsonb({"a": 1}),))
    db.execute("""INSERT INTO public.jb VALUES (2, '{"a": 2, "b": [1, 2]}'::jsonb)""")
    db.execute("STORAGE FLUSH TABLE public.jb WAIT")
    db.execute("INSERT INTO public.jb VALUES (3, %s)", (Json({"a": 3}),))
    assert db.execute("SELECT id, doc FROM public.jb ORDER BY id").fetchall() == \
        [(1, {"a": 1}), (2, {"a": 2, "b": [1, 2]}), (3, {"a": 3})]
    assert db.execute("SELECT doc->>'a' FROM public.jb WHERE id = 2").fetchone() == ("2",)


@MODES
def test_string_parameters_stay_exact_strings(db, binary):
    """buenavista's parser turned '12' and '2024-01-01' into timestamps; tierd must not."""
    table = f"strs_{'bin' if binary else 'txt'}"
    db.execute(f"CREATE TABLE public.{table} (id BIGINT PRIMARY KEY, t TEXT, v VARCHAR)")
    cur = db.cursor(binary=binary)
    samples = ["12", "2024-01-01", "2024-01-01 10:00:00", "true", "1e3", "00012", "NULL",
               "t", "  spaced  ", "12:30"]
    cur.executemany(f"INSERT INTO public.{table} VALUES (%s, %s, %s)",
                    [(i, s, s) for i, s in enumerate(samples)])
    cur.execute(f"SELECT t, v FROM public.{table} ORDER BY id")
    assert cur.fetchall() == [(s, s) for s in samples]
    for s in samples:
        cur.execute("SELECT %s", (s,))
        assert cur.fetchone() == (s,)
        cur.execute(f"SELECT id FROM public.{table} WHERE t = %s", (s,))
        assert cur.fetchall() == [(samples.index(s),)]


# --- tags and counts ----------------------------------------------------------------


@MODES
def test_statusmessage_with_parameters(db, binary):
    table = f"tagp_{'bin' if binary else 'txt'}"
    cur = db.cursor(binary=binary)
    cur.execute(f"CREATE TABLE public.{table} (id BIGINT PRIMARY KEY, v INT)")
    cur.execute(f"INSERT INTO public.{table} VALUES (%s, %s), (%s, %s)", (1, 10, 2, 20))
    assert (cur.statusmessage, cur.rowcount) == ("INSERT 0 2", 2)
    cur.execute(f"UPDATE public.{table} SET v = v + %s WHERE id >= %s", (1, 1))
    assert (cur.statusmessage, cur.rowcount) == ("UPDATE 2", 2)
    cur.execute(f"DELETE FROM public.{table} WHERE v = %s", (21,))
    assert (cur.statusmessage, cur.rowcount) == ("DELETE 1", 1)
    cur.execute(f"SELECT v FROM public.{table} WHERE id = %s", (1,))
    assert (cur.statusmessage, cur.rowcount, cur.fetchall()) == ("SELECT 1", 1, [(11,)])


@MODES
def test_executemany(db, binary):
    table = f"em_{'bin' if binary else 'txt'}"
    db.execute(f"CREATE TABLE public.{table} (id BIGINT PRIMARY KEY, v TEXT, n DOUBLE PRECISION)")
    cur = db.cursor(binary=binary)
    rows = [(i, f"row {i}", i / 4) for i in range(500)]
    cur.executemany(f"INSERT INTO public.{table} VALUES (%s, %s, %s)", rows)
    assert cur.rowcount == 500
    assert db.execute(f"SELECT * FROM public.{table} ORDER BY id").fetchall() == rows
    cur.executemany(f"UPDATE public.{table} SET v = %s WHERE id = %s", [("u", 1), ("u", 2)])
    assert cur.rowcount == 2
    cur.executemany(f"INSERT INTO public.{table} (id, v) VALUES (%s, %s) RETURNING id, v",
                    [(1000, "a"), (1001, "b")], returning=True)
    results = [cur.fetchall()]
    while cur.nextset():
        results.append(cur.fetchall())
    assert results == [[(1000, "a")], [(1001, "b")]]


@MODES
def test_insert_update_delete_returning(db, binary):
    table = f"ret_{'bin' if binary else 'txt'}"
    db.execute(f"CREATE TABLE public.{table} (id BIGINT PRIMARY KEY, v TEXT, "
               f"n INT DEFAULT 7)")
    cur = db.cursor(binary=binary)
    cur.execute(f"INSERT INTO public.{table} (id, v) VALUES (1, 'a'), (2, 'b') RETURNING id, v, n")
    assert cur.fetchall() == [(1, "a", 7), (2, "b", 7)]
    assert (cur.statusmessage, cur.rowcount) == ("INSERT 0 2", 2)
    cur.execute(f"INSERT INTO public.{table} VALUES (%s, %s, %s) RETURNING *", (3, "12", 9))
    assert cur.fetchall() == [(3, "12", 9)]
    assert [d.name for d in cur.description] == ["id", "v", "n"]
    cur.execute(f"UPDATE public.{table} SET n = n * 10 WHERE id <= %s RETURNING id, n", (2,))
    assert sorted(cur.fetchall()) == [(1, 70), (2, 70)]
    assert cur.statusmessage == "UPDATE 2"
    cur.execute(f"DELETE FROM public.{table} WHERE id = %s RETURNING v", (3,))
    assert cur.fetchall() == [("12",)]
    assert cur.statusmessage == "DELETE 1"
    assert db.execute(f"SELECT count(*) FROM public.{table}").fetchone() == (2,)


# --- errors -------------------------------------------------------------------------

# Errors of statements with parameters; those without are in tests/sql/errors/sqlstates.test.
ERRORS = [
    ("INSERT INTO public.errs VALUES (%s, %s)", (1, "again"), errors.UniqueViolation, "23505"),
    ("SELECT * FROM no_such_table WHERE id = %s", (1,), errors.UndefinedTable, "42P01"),
    ("SELECT %s::int", ("abc",), errors.InvalidTextRepresentation, "22P02"),
]


@pytest.fixture
def errs(db):
    db.execute("CREATE TABLE IF NOT EXISTS public.errs (id BIGINT PRIMARY KEY, v TEXT)")
    db.execute("INSERT INTO public.errs VALUES (1, 'one'), (2, 'two') ON CONFLICT DO NOTHING")
    return db


@MODES
@pytest.mark.parametrize("sql, params, exc, sqlstate", ERRORS,
                         ids=[f"{e[3]}-{i}" for i, e in enumerate(ERRORS)])
def test_errors_raise_the_right_class_and_connection_stays_usable(errs, binary, sql, params,
                                                                  exc, sqlstate):
    cur = errs.cursor(binary=binary)
    with pytest.raises(exc) as info:
        cur.execute(sql, params)
    assert info.value.sqlstate == sqlstate
    assert info.value.diag.severity == "ERROR"
    assert info.value.diag.message_primary
    assert errs.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    cur.execute("SELECT id, v FROM public.errs ORDER BY id")
    assert cur.fetchall() == [(1, "one"), (2, "two")]


def read_startup_error(port: int, database: str) -> dict[str, str]:
    """Send a startup packet by hand and return the fields of the ErrorResponse."""
    body = b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                    for k, v in (("user", "tierd"), ("database", database))) + b"\0"
    packet = struct.pack("!ii", len(body) + 8, 196608) + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(packet)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data[:1] == b"E", data[:40]
    (length,) = struct.unpack("!i", data[1:5])
    fields = {}
    for part in data[5:1 + length].split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode()
    return fields


def test_unknown_database_at_connect_is_3D000(module_tierd):
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(f"host=127.0.0.1 port={module_tierd.port} user=tierd dbname=no_such_db",
                        connect_timeout=10)
    assert 'database "no_such_db" does not exist' in str(info.value)
    # libpq does not surface a SQLSTATE for connection failures: read the raw reply
    fields = read_startup_error(module_tierd.port, "no_such_db")
    assert fields["C"] == "3D000"
    assert fields["S"] == "FATAL"
    assert fields["M"] == 'database "no_such_db" does not exist'
    with module_tierd.connect() as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


# --- transactions -------------------------------------------------------------------


def test_transaction_commit_and_rollback(module_tierd, db):
    db.execute("CREATE TABLE public.txn (id BIGINT PRIMARY KEY, v TEXT)")
    count = "SELECT count(*) FROM public.txn"
    with module_tierd.connect(autocommit=False) as tx:
        tx.execute("INSERT INTO public.txn VALUES (1, 'a')")
        tx.execute("INSERT INTO public.txn VALUES (%s, %s)", (2, "b"))
        assert tx.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert tx.execute(count).fetchone() == (2,)          # its own writes
        assert db.execute(count).fetchone() == (0,)          # not yet for others
        tx.commit()
        assert db.execute(count).fetchone() == (2,)
        tx.execute("INSERT INTO public.txn VALUES (3, 'c')")
        tx.execute("DELETE FROM public.txn WHERE id = 1")
        assert tx.execute(count).fetchone() == (2,)
        tx.rollback()
        assert tx.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert tx.execute("SELECT id FROM public.txn ORDER BY id").fetchall() == [(1,), (2,)]
        tx.rollback()
    assert db.execute("SELECT id FROM public.txn ORDER BY id").fetchall() == [(1,), (2,)]


def test_failed_transaction_until_rollback(module_tierd):
    with module_tierd.connect(autocommit=False) as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS public.txf (id BIGINT PRIMARY KEY)")
        tx.commit()
        tx.execute("INSERT INTO public.txf VALUES (1)")
        with pytest.raises(errors.UniqueViolation):
            tx.execute("INSERT INTO public.txf VALUES (1)")
        assert tx.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(errors.InFailedSqlTransaction) as info:
            tx.execute("SELECT 1")
        assert info.value.sqlstate == "25P02"
        tx.rollback()
        assert tx.execute("SELECT count(*) FROM public.txf").fetchone() == (0,)
        tx.rollback()


def test_transaction_context_manager(db):
    db.execute("CREATE TABLE public.txcm (id BIGINT PRIMARY KEY)")
    with db.transaction():
        db.execute("INSERT INTO public.txcm VALUES (1), (2)")
    with pytest.raises(RuntimeError):
        with db.transaction():
            db.execute("INSERT INTO public.txcm VALUES (3)")
            raise RuntimeError("abort")
    assert db.execute("SELECT id FROM public.txcm ORDER BY id").fetchall() == [(1,), (2,)]


# --- pipeline -----------------------------------------------------------------------


@MODES
def test_pipeline_inserts_and_queries(db, binary):
    table = f"pipe_{'bin' if binary else 'txt'}"
    db.execute(f"CREATE TABLE public.{table} (id BIGINT PRIMARY KEY, v TEXT)")
    with db.pipeline():
        for i in range(20):
            db.cursor(binary=binary).execute(f"INSERT INTO public.{table} VALUES (%s, %s)",
                                             (i, str(i)))
        ret = db.cursor(binary=binary)
        ret.execute(f"INSERT INTO public.{table} VALUES (%s, %s) RETURNING id", (100, "r"))
        total = db.cursor(binary=binary)
        total.execute(f"SELECT count(*), max(id) FROM public.{table}")
    assert ret.fetchall() == [(100,)]
    assert total.fetchone() == (21, 100)
    assert db.execute(f"SELECT v FROM public.{table} WHERE id = 7").fetchone() == ("7",)


def test_pipeline_error_then_connection_usable(db):
    db.execute("CREATE TABLE public.pipe_err (id BIGINT PRIMARY KEY)")
    db.execute("INSERT INTO public.pipe_err VALUES (1)")
    with pytest.raises(errors.UniqueViolation):
        with db.pipeline():
            db.execute("INSERT INTO public.pipe_err VALUES (1)")
            db.execute("INSERT INTO public.pipe_err VALUES (2)")   # skipped until Sync
    with db.pipeline() as p:
        db.execute("INSERT INTO public.pipe_err VALUES (3)")
        p.sync()
    assert db.execute("SELECT id FROM public.pipe_err ORDER BY id").fetchall() == [(1,), (3,)]


def test_pipeline_segment_is_atomic(db):
    db.execute("CREATE TABLE public.pipe_atomic (id BIGINT PRIMARY KEY)")
    db.execute("INSERT INTO public.pipe_atomic VALUES (3)")
    with pytest.raises(errors.UniqueViolation):
        db.cursor().executemany("INSERT INTO public.pipe_atomic VALUES (%s)",
                                [(1,), (2,), (3,), (4,)])
    assert db.execute("SELECT id FROM public.pipe_atomic ORDER BY id").fetchall() == [(3,)]


# --- large results ------------------------------------------------------------------


@MODES
def test_large_result_arrives_complete(db, binary):
    cur = db.cursor(binary=binary)
    cur.execute("SELECT range AS n, range * 2 AS twice FROM range(200000)")
    rows = cur.fetchall()
    assert cur.statusmessage == "SELECT 200000"
    assert len(rows) == 200000
    assert rows[0] == (0, 0) and rows[-1] == (199999, 399998)
    assert sum(r[0] for r in rows) == 199999 * 200000 // 2
    assert all(r[1] == 2 * r[0] for r in rows)


def test_large_result_streams(db):
    seen = 0
    total = 0
    for (n,) in db.cursor().stream("SELECT * FROM range(200000)"):
        seen += 1
        total += n
    assert (seen, total) == (200000, 199999 * 200000 // 2)
    assert db.execute("SELECT 1").fetchone() == (1,)


def test_large_table_result_over_hot_rows(db):
    db.execute("CREATE TABLE public.big (id BIGINT PRIMARY KEY, v TEXT)")
    db.execute("INSERT INTO public.big SELECT range, 'v' || range FROM range(50000)")
    rows = db.cursor(binary=True).execute("SELECT id, v FROM public.big ORDER BY id").fetchall()
    assert len(rows) == 50000 and rows[12345] == (12345, "v12345")


# --- Postgres semantics the engine does not give yet --------------------------------


@MODES
def test_result_column_names_follow_postgres(db, binary):
    cur = db.cursor(binary=binary)
    cur.execute("SELECT count(*), 1, 'a' || 'b' FROM range(3)")
    assert [d.name for d in cur.description] == ["count", "?column?", "?column?"]
    cur.execute("SELECT upper('x'), 1::int, range::text, true, sum(range), "
                "count(range) AS \"count_star()\", CASE WHEN range > 0 THEN 1 END, "
                "range AS r, * FROM range(2) GROUP BY range")
    assert [d.name for d in cur.description] == [
        "upper", "int4", "range", "bool", "sum", "count_star()", "case", "r", "range"]
    cur.execute("CREATE TABLE public.names_%s (id BIGINT PRIMARY KEY, v TEXT)"
                % ("bin" if binary else "txt"))
    cur.execute("INSERT INTO public.names_%s VALUES (%%s, 'a') RETURNING id * 2, upper(v), v"
                % ("bin" if binary else "txt"), (1,))
    assert [d.name for d in cur.description] == ["?column?", "upper", "v"]


# --- many rows per column (vectorised encoders) -------------------------------------

SERIES = [
    # (SQL expression over r in range(-500, 500), Python value of r)
    ("((r + 500) % 200 - 100)::TINYINT", lambda r: (r + 500) % 200 - 100),
    ("r::SMALLINT * 60", lambda r: r * 60),
    ("r::INT * 4000000", lambda r: r * 4_000_000),
    ("r::BIGINT * 9000000000000000", lambda r: r * 9_000_000_000_000_000),
    ("((r + 500) % 256)::UTINYINT", lambda r: (r + 500) % 256),
    ("(r + 500)::USMALLINT * 60", lambda r: (r + 500) * 60),
    ("(r + 500)::UINTEGER * 4000000", lambda r: (r + 500) * 4_000_000),
    ("r::DOUBLE / 8", lambda r: r / 8),
    ("(r::REAL / 4)::REAL", lambda r: r / 4),
    ("(r::NUMERIC(12,3) / 8)::NUMERIC(12,3)", lambda r: (Decimal(r) / 8).quantize(Decimal("0.001"))),
    ("r % 3 = 0", lambda r: r % 3 == 0),
    ("DATE '2000-01-01' + (r * 37)::INT", lambda r: dt.date(2000, 1, 1) + dt.timedelta(days=r * 37)),
    ("TIMESTAMP '2000-01-01' + to_microseconds(r * 3600000123)",
     lambda r: dt.datetime(2000, 1, 1) + dt.timedelta(microseconds=r * 3_600_000_123)),
    ("TIMESTAMPTZ '2000-01-01 00:00:00+00' + to_microseconds(r * 86400000001)",
     lambda r: dt.datetime(2000, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=r * 86_400_000_001)),
    ("TIME '12:00:00' + to_microseconds(r * 86000001)",
     lambda r: (dt.datetime(2000, 1, 1, 12) + dt.timedelta(microseconds=r * 86_000_001)).time()),
    ("'v' || r::TEXT", lambda r: f"v{r}"),
    ("encode('b' || r::TEXT)", lambda r: f"b{r}".encode()),
    ("to_days(r) + to_microseconds(r * 1000001)",
     lambda r: dt.timedelta(days=r, microseconds=r * 1_000_001)),
]


@MODES
@pytest.mark.parametrize("expr, expected", SERIES, ids=[s[0] for s in SERIES])
def test_many_rows_of_a_type_arrive_intact(db, binary, expr, expected):
    """1000 rows (one NULL every 7th) per type, both formats: every value, not just the first."""
    cur = db.cursor(binary=binary)
    cur.execute(f"SELECT CASE WHEN (r + 700) % 7 = 3 THEN NULL ELSE {expr} END "
                f"FROM (SELECT range::BIGINT AS r FROM range(-500, 500)) ORDER BY r")
    got = [row[0] for row in cur.fetchall()]
    want = [None if (r + 700) % 7 == 3 else expected(r) for r in range(-500, 500)]
    bad = [(r, w, g) for r, w, g in zip(range(-500, 500), want, got) if w != g]
    assert not bad, f"{len(bad)} wrong values, first: {bad[:3]}"


# --- session TimeZone -----------------------------------------------------------------


def test_timestamptz_text_follows_the_session_timezone(module_tierd):
    with module_tierd.connect() as c:
        sql = ("SELECT TIMESTAMPTZ '2024-01-01 12:00:00+00', TIMESTAMPTZ '2024-07-01 12:00:00.5+00', "
               "NULL::TIMESTAMPTZ")
        winter, summer, null = c.execute(sql).fetchone()
        assert winter.utcoffset() == dt.timedelta(0)
        c.execute("SET TimeZone TO 'Europe/Paris'")
        assert c.info.parameter_status("TimeZone") == "Europe/Paris"
        w, s, n = c.execute(sql).fetchone()
        assert (w, s, n) == (winter, summer, None)      # the same instants ...
        assert (w.utcoffset(), s.utcoffset()) == (dt.timedelta(hours=1), dt.timedelta(hours=2))
        assert (w.hour, s.hour) == (13, 14)             # ... printed as Paris wall time
        c.execute("SET TimeZone TO 'Asia/Kolkata'")
        (k,) = c.execute("SELECT TIMESTAMPTZ '2024-01-01 12:00:00+00'").fetchone()
        assert (k, k.utcoffset()) == (winter, dt.timedelta(hours=5, minutes=30))
        (b,) = c.cursor(binary=True).execute(
            "SELECT TIMESTAMPTZ '2024-01-01 12:00:00+00'").fetchone()
        assert b == winter


def test_error_position_and_hint(db):
    db.execute("CREATE TABLE public.poserr (id BIGINT PRIMARY KEY)")
    with pytest.raises(errors.UndefinedColumn) as info:
        db.execute("SELECT id,\n  nope FROM public.poserr")
    diag = info.value.diag
    assert diag.statement_position == "14"          # the `n` of `nope`, 1-based
    assert "LINE" not in diag.message_primary and "nope" in diag.message_primary
    bad = "SELECT id FROM public.poserr WHERE id = = 1"
    with pytest.raises(errors.SyntaxError) as info:
        db.execute(bad)
    assert info.value.diag.statement_position == str(bad.index("= 1") + 1)
    with pytest.raises(errors.UndefinedColumn) as info:   # server-side parameters too
        db.execute("SELECT nope FROM public.poserr WHERE id = %s", (1,))
    assert info.value.diag.statement_position == "8"
