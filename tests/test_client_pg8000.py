"""pg8000 (pure-Python driver) against a real tierd, through its native and DB-API interfaces.

pg8000 declares a type OID for every parameter it sends and reads results in text format,
so it exercises the text codecs in both directions.
"""
from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pg8000.dbapi
import pg8000.native
import pytest

UTC = dt.timezone.utc


@pytest.fixture
def native(module_tierd):
    conn = pg8000.native.Connection("tierd", host="127.0.0.1", port=module_tierd.port,
                                    database="tierd", timeout=30)
    yield conn
    conn.close()


@pytest.fixture
def dbapi(module_tierd):
    conn = pg8000.dbapi.connect("tierd", host="127.0.0.1", port=module_tierd.port, database="tierd",
                                timeout=30)
    yield conn
    conn.close()


TYPES = [
    ("c_bool", "BOOLEAN", True),
    ("c_int2", "SMALLINT", -32768),
    ("c_int4", "INTEGER", 2 ** 31 - 1),
    ("c_int8", "BIGINT", -2 ** 63),
    ("c_float8", "DOUBLE PRECISION", -2.5e-300),
    ("c_numeric", "NUMERIC(20,5)", Decimal("-123456789012345.12345")),
    ("c_text", "TEXT", "12 'quoted' \"x\" ☃"),
    ("c_varchar", "VARCHAR(20)", "2024-01-01"),
    ("c_bytea", "BYTEA", bytes(range(256))),
    ("c_date", "DATE", dt.date(2024, 2, 29)),
    ("c_time", "TIME", dt.time(23, 59, 59, 999999)),
    ("c_ts", "TIMESTAMP", dt.datetime(1999, 12, 31, 23, 59, 59, 5)),
    ("c_tstz", "TIMESTAMPTZ", dt.datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)),
    ("c_interval", "INTERVAL", dt.timedelta(days=2, hours=3, microseconds=4)),
    ("c_uuid", "UUID", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("c_json", "JSON", {"a": [1, 2, None], "s": "é"}),
    ("c_int_arr", "INTEGER[]", [1, None, 3]),
    ("c_text_arr", "TEXT[]", ["a", "b c", "", "NULL"]),
]
NAMES = [t[0] for t in TYPES]


def test_native_types_round_trip(native):
    native.run(f"CREATE TABLE public.n_types (id BIGINT PRIMARY KEY, "
               f"{', '.join(f'{n} {t}' for n, t, _ in TYPES)})")
    params = {n: v for n, _, v in TYPES}
    native.run(f"INSERT INTO public.n_types (id, {', '.join(NAMES)}) VALUES "
               f"(1, {', '.join(':' + n for n in NAMES)})", **params)
    native.run(f"INSERT INTO public.n_types (id) VALUES (2)")
    rows = native.run(f"SELECT {', '.join(NAMES)} FROM public.n_types ORDER BY id")
    assert rows[1] == [None] * len(NAMES)
    for (name, _, want), got in zip(TYPES, rows[0]):
        assert got == want, (name, got, want)
    # filtering by typed parameters
    for name, _, value in TYPES:
        if name in ("c_json", "c_int_arr", "c_text_arr"):
            continue
        found = native.run(f"SELECT count(*) FROM public.n_types WHERE {name} = :v", v=value)
        assert found == [[1]], name


def test_native_returning_and_row_counts(native):
    native.run("CREATE TABLE public.n_ret (id BIGINT PRIMARY KEY, v TEXT, n INT DEFAULT 5)")
    assert native.run("INSERT INTO public.n_ret (id, v) VALUES (:a, 'x'), (:b, 'y') "
                      "RETURNING id, n", a=1, b=2) == [[1, 5], [2, 5]]
    assert native.row_count == 2
    native.run("UPDATE public.n_ret SET n = n + 1 WHERE id >= :id", id=1)
    assert native.row_count == 2
    assert native.run("DELETE FROM public.n_ret WHERE id = :id RETURNING v", id=2) == [["y"]]
    assert native.run("SELECT id, v, n FROM public.n_ret") == [[1, "x", 6]]
    assert [c["name"] for c in native.columns] == ["id", "v", "n"]


def test_native_prepared_statement(native):
    native.run("CREATE TABLE public.n_prep (id BIGINT PRIMARY KEY, v TEXT)")
    insert = native.prepare("INSERT INTO public.n_prep VALUES (:id, :v)")
    for i in range(20):
        insert.run(id=i, v=f"v{i}")
    insert.close()
    select = native.prepare("SELECT v FROM public.n_prep WHERE id = :id")
    assert [select.run(id=i) for i in (3, 19)] == [[["v3"]], [["v19"]]]
    select.close()
    assert native.run("SELECT count(*) FROM public.n_prep") == [[20]]


def test_native_errors_carry_sqlstate(native):
    native.run("CREATE TABLE public.n_err (id BIGINT PRIMARY KEY)")
    native.run("INSERT INTO public.n_err VALUES (1)")
    cases = [
        ("INSERT INTO public.n_err VALUES (:id)", {"id": 1}, "23505"),
        ("SELECT * FROM public.n_nowhere", {}, "42P01"),
        ("SELECT nope FROM public.n_err", {}, "42703"),
        ("SELECT CAST(:v AS INTEGER)", {"v": "abc"}, "22P02"),
        ("SELEC 1", {}, "42601"),
    ]
    for sql, params, sqlstate in cases:
        with pytest.raises(pg8000.native.DatabaseError) as info:
            native.run(sql, **params)
        fields = info.value.args[0]
        assert (fields["C"], fields["S"]) == (sqlstate, "ERROR"), sql
        assert fields["M"]
    assert native.run("SELECT id FROM public.n_err") == [[1]]


def test_dbapi_transactions_and_executemany(dbapi):
    cur = dbapi.cursor()
    cur.execute("CREATE TABLE public.d_tx (id BIGINT PRIMARY KEY, v TEXT)")
    dbapi.commit()
    cur.executemany("INSERT INTO public.d_tx VALUES (%s, %s)", [(i, f"r{i}") for i in range(300)])
    dbapi.rollback()
    cur.execute("SELECT count(*) FROM public.d_tx")
    assert cur.fetchone() == [0]
    dbapi.rollback()
    cur.executemany("INSERT INTO public.d_tx VALUES (%s, %s)", [(i, f"r{i}") for i in range(300)])
    dbapi.commit()
    cur.execute("SELECT count(*), max(v) FROM public.d_tx")
    assert cur.fetchone() == [300, "r99"]
    dbapi.commit()
    cur.execute("INSERT INTO public.d_tx VALUES (%s, %s)", (1000, "kept?"))
    with pytest.raises(pg8000.dbapi.DatabaseError) as info:
        cur.execute("INSERT INTO public.d_tx VALUES (%s, %s)", (5, "dup"))
    assert info.value.args[0]["C"] == "23505"
    dbapi.rollback()
    with pytest.raises(pg8000.dbapi.DatabaseError) as info:
        cur.execute("SELECT * FROM public.d_nowhere")
    assert info.value.args[0]["C"] == "42P01"
    with pytest.raises(pg8000.dbapi.DatabaseError) as info:
        cur.execute("SELECT 1")
    assert info.value.args[0]["C"] == "25P02"
    dbapi.rollback()
    cur.execute("SELECT v FROM public.d_tx WHERE id IN (%s, %s)", (7, 1000))
    assert cur.fetchall() == (["r7"],)   # the rolled-back transaction's row is gone


def test_dbapi_large_fetch(dbapi):
    cur = dbapi.cursor()
    cur.execute("SELECT range AS n, 'x' || range AS s FROM range(50000)")
    assert [d[0] for d in cur.description] == ["n", "s"]
    first = cur.fetchmany(10)
    rest = cur.fetchall()
    assert [r[0] for r in first] == list(range(10))
    assert len(rest) == 49990 and rest[-1] == [49999, "x49999"]
    dbapi.rollback()
