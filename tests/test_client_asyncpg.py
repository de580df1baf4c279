"""asyncpg against a real tierd: prepared statements, binary types, transactions, errors.

asyncpg prepares every parameterised statement (Parse + Describe), encodes its arguments by
the parameter types the server describes, and decodes results in binary: it exercises
statement Describe without execution and every binary codec.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from decimal import Decimal

import asyncpg
import pytest

UTC = dt.timezone.utc


def run(d, body):
    """Run `body(conn)` on a fresh asyncpg connection to `d`, closing it afterwards."""
    async def main():
        conn = await asyncpg.connect(host="127.0.0.1", port=d.port, user="tierd",
                                     database="tierd", timeout=10)
        try:
            return await body(conn)
        finally:
            await conn.close()
    return asyncio.run(main())


# column, SQL type, values (NULL added by the tests)
TYPES = [
    ("c_bool", "BOOLEAN", [True, False]),
    ("c_int2", "SMALLINT", [-32768, 32767]),
    ("c_int4", "INTEGER", [-2 ** 31, 2 ** 31 - 1]),
    ("c_int8", "BIGINT", [-2 ** 63, 2 ** 63 - 1]),
    ("c_float4", "REAL", [1.5, -0.25]),
    ("c_float8", "DOUBLE PRECISION", [1e300, -2.5]),
    ("c_numeric", "NUMERIC(18,4)", [Decimal("12345678901234.5678"), Decimal("-0.0001")]),
    ("c_text", "TEXT", ["12", "héllo ☃ \"q\" 'x'"]),
    ("c_varchar", "VARCHAR(30)", ["2024-01-01", ""]),
    ("c_bytea", "BYTEA", [b"\x00\x01\xff", bytes(range(256))]),
    ("c_date", "DATE", [dt.date(2024, 2, 29), dt.date(1970, 1, 1)]),
    ("c_time", "TIME", [dt.time(12, 34, 56, 789012), dt.time(0, 0)]),
    ("c_ts", "TIMESTAMP", [dt.datetime(2024, 1, 2, 3, 4, 5, 678901), dt.datetime(1999, 12, 31)]),
    ("c_tstz", "TIMESTAMPTZ", [dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
                               dt.datetime(2030, 6, 1, 12, 0, 0, 1, tzinfo=UTC)]),
    ("c_interval", "INTERVAL", [dt.timedelta(days=3, seconds=7, microseconds=5),
                                dt.timedelta(hours=-2)]),
    ("c_uuid", "UUID", [uuid.UUID("12345678-1234-5678-1234-567812345678"), uuid.UUID(int=0)]),
    ("c_json", "JSON", [json.dumps({"a": [1, 2]}), json.dumps([])]),
]
NAMES = [t[0] for t in TYPES]


def test_connect_and_simple_queries(module_tierd):
    async def body(conn):
        assert await conn.fetchval("SELECT 1") == 1
        assert conn.get_server_version().major == 15
        assert conn.get_settings().server_encoding == "UTF8"
        assert conn.get_settings().client_encoding == "UTF8"
        await conn.execute("CREATE TABLE public.basic (id BIGINT PRIMARY KEY, v TEXT)")
        assert await conn.execute("INSERT INTO public.basic VALUES (1, 'a'), (2, 'b')") == \
            "INSERT 0 2"
        return await conn.fetch("SELECT id, v FROM public.basic ORDER BY id")
    rows = run(module_tierd, body)
    assert [tuple(r) for r in rows] == [(1, "a"), (2, "b")]


def test_every_type_round_trips_in_binary(module_tierd):
    cols = ", ".join(f"{n} {t}" for n, t, _ in TYPES)
    placeholders = ", ".join(f"${i + 2}" for i in range(len(TYPES)))

    async def body(conn):
        await conn.execute(f"CREATE TABLE public.types (id BIGINT PRIMARY KEY, {cols})")
        insert = await conn.prepare(
            f"INSERT INTO public.types (id, {', '.join(NAMES)}) VALUES ($1, {placeholders})")
        for i in range(2):
            await insert.fetch(i, *[values[i] for _, _, values in TYPES])
        await insert.fetch(2, *[None] * len(TYPES))
        select = await conn.prepare(f"SELECT id, {', '.join(NAMES)} FROM public.types "
                                    "WHERE id = $1")
        got = [await select.fetchrow(i) for i in range(3)]
        # parameters typed by the column they are compared with, in binary
        by_value = {}
        for name, _, values in TYPES:
            if name == "c_json":
                continue
            by_value[name] = await conn.fetchval(
                f"SELECT id FROM public.types WHERE {name} = $1", values[1])
        return got, by_value
    got, by_value = run(module_tierd, body)
    for i in range(2):
        for name, _, values in TYPES:
            want = values[i]
            value = got[i][name]
            if name == "c_float4":
                assert value == pytest.approx(want), name
            else:
                assert value == want, (name, value, want)
    assert all(got[2][name] is None for name in NAMES)
    assert by_value == {name: 1 for name in by_value}


def test_infinite_dates_and_timestamps(module_tierd):
    """asyncpg sends date.max/min and datetime.max/min as Postgres's infinity and -infinity
    (binary extremes) and reads them back as the same values; the server keeps the words."""
    async def body(conn):
        await conn.execute("CREATE TABLE public.spans (id BIGINT PRIMARY KEY, d DATE, t TIMESTAMP, z TIMESTAMPTZ)")
        await conn.execute("INSERT INTO public.spans VALUES ($1, $2, $3, $4)", 1, dt.date.max, dt.datetime.max,
                           dt.datetime.min.replace(tzinfo=UTC))
        await conn.execute("INSERT INTO public.spans VALUES ($1, $2, $3, $4)", 2, dt.date(2024, 1, 2),
                           dt.datetime(2024, 1, 2, 3, 4, 5), dt.datetime(2024, 1, 2, tzinfo=UTC))
        words = await conn.fetchrow("SELECT d::text, t::text, z::text FROM public.spans WHERE id = 1")
        back = await conn.fetchrow("SELECT d, t FROM public.spans WHERE id = $1", 1)
        later = await conn.fetch("SELECT id FROM public.spans WHERE t > $1 ORDER BY id", dt.datetime(9000, 1, 1))
        return tuple(words), tuple(back), [r[0] for r in later]
    words, back, later = run(module_tierd, body)
    assert words == ("infinity", "infinity", "-infinity")
    assert back == (dt.date.max, dt.datetime.max)
    assert later == [1]


def test_arrays_round_trip(module_tierd):
    async def body(conn):
        await conn.execute("CREATE TABLE public.arrays (id BIGINT PRIMARY KEY, a INTEGER[], "
                           "t TEXT[])")
        await asyncio.wait_for(conn.execute("INSERT INTO public.arrays VALUES ($1, $2, $3)",
                                            1, [1, None, 3], ["a", "b c"]), 10)
        return await asyncio.wait_for(conn.fetchrow("SELECT a, t FROM public.arrays"), 10)
    assert tuple(run(module_tierd, body)) == ([1, None, 3], ["a", "b c"])


def test_array_parameters_of_every_element_type_and_its_introspection(module_tierd):
    """asyncpg introspects array types with a binary oid[] parameter; then arrays of each
    element type go both ways, `= ANY($1)` takes any element type, and many rows arrive."""
    import datetime as dt
    import uuid
    from decimal import Decimal

    async def body(conn):
        out = {"literal": await conn.fetchval("SELECT ARRAY[1,2,3]::int[]"),
               "oids": await conn.fetchval("SELECT $1::oid[]", [26, 1007]),
               "any_oid": await conn.fetchval("SELECT 26 = ANY($1::oid[])", [26, 2])}
        for name, typ, value in (("int8", "bigint[]", [1, 2 ** 40, None]), ("float8", "float8[]", [1.5]),
                                 ("bool", "bool[]", [True, None]), ("date", "date[]", [dt.date(2020, 1, 2)]),
                                 ("numeric", "numeric[]", [Decimal("1.5")]), ("uuid", "uuid[]", [uuid.UUID(int=5)]),
                                 ("text", "text[]", ["a", "b c", None])):
            out[name] = await conn.fetchval(f"SELECT $1::{typ}", value)
        out["any_text"] = await conn.fetchval("SELECT 'b' = ANY($1)", ["a", "b"])
        out["all_int"] = await conn.fetchval("SELECT 3 <> ALL($1::int[])", [1, 2])
        out["rows"] = [tuple(r) for r in await conn.fetch(
            "SELECT ARRAY[i::int, NULL], ARRAY['x' || i] FROM range(3) t(i) ORDER BY i")]
        return out
    got = run(module_tierd, body)
    assert got["literal"] == [1, 2, 3] and got["oids"] == [26, 1007] and got["any_oid"] is True
    assert got["int8"] == [1, 2 ** 40, None] and got["float8"] == [1.5] and got["bool"] == [True, None]
    assert got["date"] == [dt.date(2020, 1, 2)] and got["numeric"] == [Decimal("1.5")]
    assert got["uuid"] == [uuid.UUID(int=5)] and got["text"] == ["a", "b c", None]
    assert got["any_text"] is True and got["all_int"] is True
    assert got["rows"] == [([0, None], ["x0"]), ([1, None], ["x1"]), ([2, None], ["x2"])]


def test_parameter_and_result_types_are_described(module_tierd):
    async def body(conn):
        await conn.execute("CREATE TABLE public.described (id BIGINT PRIMARY KEY, "
                           "n INTEGER, u UUID, t TIMESTAMPTZ, j JSON)")
        stmt = await conn.prepare("SELECT id, n, u, t, j FROM public.described "
                                  "WHERE id = $1 AND n > $2 AND u = $3 AND t < $4")
        params = [t.name for t in stmt.get_parameters()]
        attrs = [(a.name, a.type.name) for a in stmt.get_attributes()]
        limit = await conn.prepare("SELECT id FROM public.described LIMIT $1")
        cast = await conn.prepare("SELECT $1::int + 1 AS x, $2::text AS y")
        return params, attrs, [t.name for t in limit.get_parameters()], \
            [t.name for t in cast.get_parameters()], [a.type.name for a in cast.get_attributes()]
    params, attrs, limit, cast, cast_result = run(module_tierd, body)
    assert params == ["int8", "int4", "uuid", "timestamptz"]
    assert attrs == [("id", "int8"), ("n", "int4"), ("u", "uuid"), ("t", "timestamptz"),
                     ("j", "json")]
    assert limit == ["int8"]
    assert cast == ["int4", "text"]
    assert cast_result == ["int4", "text"]


def test_returning_runs_the_statement_once(module_tierd):
    async def body(conn):
        await conn.execute("CREATE TABLE public.ret (id BIGINT PRIMARY KEY, v TEXT, "
                           "n INT DEFAULT 7)")
        row = await conn.fetchrow("INSERT INTO public.ret (id, v) VALUES ($1, $2) "
                                  "RETURNING id, v, n", 1, "one")
        many = await conn.fetch("INSERT INTO public.ret (id, v) VALUES ($1, 'a'), ($2, 'b') "
                                "RETURNING id", 2, 3)
        updated = await conn.fetch("UPDATE public.ret SET n = n + $1 WHERE id >= $2 "
                                   "RETURNING id, n", 10, 2)
        deleted = await conn.fetchval("DELETE FROM public.ret WHERE id = $1 RETURNING v", 1)
        # a prepared statement executed again inserts again, once per execution
        stmt = await conn.prepare("INSERT INTO public.ret (id, v) VALUES ($1, 'p') RETURNING id")
        again = [await stmt.fetchval(10), await stmt.fetchval(11)]
        status = await conn.execute("UPDATE public.ret SET v = $1 WHERE id > $2", "z", 9)
        rows = await conn.fetch("SELECT id, v, n FROM public.ret ORDER BY id")
        return row, many, updated, deleted, again, status, rows
    row, many, updated, deleted, again, status, rows = run(module_tierd, body)
    assert tuple(row) == (1, "one", 7)
    assert [r["id"] for r in many] == [2, 3]
    assert sorted(tuple(r) for r in updated) == [(2, 17), (3, 17)]
    assert deleted == "one"
    assert again == [10, 11]
    assert status == "UPDATE 2"
    assert [tuple(r) for r in rows] == [(2, "a", 17), (3, "b", 17), (10, "z", 7), (11, "z", 7)]


def test_transactions(module_tierd):
    async def body(conn):
        await conn.execute("CREATE TABLE public.tx (id BIGINT PRIMARY KEY)")
        async with conn.transaction():
            await conn.execute("INSERT INTO public.tx VALUES ($1)", 1)
            await conn.execute("INSERT INTO public.tx VALUES ($1)", 2)
            inside = await conn.fetchval("SELECT count(*) FROM public.tx")
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await conn.execute("INSERT INTO public.tx VALUES ($1)", 3)
                raise RuntimeError("roll back")
        with pytest.raises(asyncpg.UniqueViolationError):
            async with conn.transaction():
                await conn.execute("INSERT INTO public.tx VALUES ($1)", 4)
                await conn.execute("INSERT INTO public.tx VALUES ($1)", 1)
        return inside, await conn.fetch("SELECT id FROM public.tx ORDER BY id")
    inside, rows = run(module_tierd, body)
    assert inside == 2
    assert [r["id"] for r in rows] == [1, 2]


ERRORS = [
    ("SELECT * FROM public.nowhere", (), asyncpg.UndefinedTableError, "42P01"),
    ("SELECT nope FROM public.errs", (), asyncpg.UndefinedColumnError, "42703"),
    ("SELEC 1", (), asyncpg.PostgresSyntaxError, "42601"),
    ("SELECT 'abc'::int", (), asyncpg.InvalidTextRepresentationError, "22P02"),
    ("SELECT 1 / 0", (), asyncpg.DivisionByZeroError, "22012"),
    ("SELECT no_such_function(1)", (), asyncpg.UndefinedFunctionError, "42883"),
    ("INSERT INTO public.errs VALUES ($1, $2)", (1, "dup"), asyncpg.UniqueViolationError,
     "23505"),
]


@pytest.mark.parametrize("sql, args, exc, sqlstate", ERRORS, ids=[e[3] for e in ERRORS])
def test_errors_carry_sqlstate_and_connection_survives(module_tierd, sql, args, exc, sqlstate):
    async def body(conn):
        await conn.execute("CREATE TABLE IF NOT EXISTS public.errs (id BIGINT PRIMARY KEY, v TEXT)")
        await conn.execute("INSERT INTO public.errs VALUES (1, 'one') ON CONFLICT DO NOTHING")
        with pytest.raises(exc) as info:
            await conn.execute(sql, *args) if args else await conn.fetch(sql)
        assert info.value.sqlstate == sqlstate
        assert info.value.severity == "ERROR"
        return await conn.fetch("SELECT id, v FROM public.errs")
    assert [tuple(r) for r in run(module_tierd, body)] == [(1, "one")]


def test_failed_transaction_rejects_until_rollback(module_tierd):
    async def body(conn):
        tx = conn.transaction()
        await tx.start()
        with pytest.raises(asyncpg.UndefinedTableError):
            await conn.fetch("SELECT * FROM public.absent")
        with pytest.raises(asyncpg.InFailedSQLTransactionError):
            await conn.fetch("SELECT 1")
        await tx.rollback()
        return await conn.fetchval("SELECT 2")
    assert run(module_tierd, body) == 2


def test_executemany_is_one_implicit_transaction(module_tierd):
    async def body(conn):
        await conn.execute("CREATE TABLE public.many (id BIGINT PRIMARY KEY, v TEXT, "
                           "t TIMESTAMPTZ)")
        when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
        await conn.executemany("INSERT INTO public.many VALUES ($1, $2, $3)",
                               [(i, f"v{i}", when) for i in range(1000)])
        ok = await conn.fetch("SELECT count(*) AS n, min(t) AS t FROM public.many")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.executemany("INSERT INTO public.many VALUES ($1, $2, $3)",
                                   [(2000, "new", when), (5, "dup", when)])
        after = await conn.fetchval("SELECT count(*) FROM public.many")
        return tuple(ok[0]), after
    (count, first), after = run(module_tierd, body)
    assert count == 1000 and first == dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert after == 1000   # the failed batch rolled back as a whole, row 2000 included


def test_large_result_and_cursor_iteration(module_tierd):
    async def body(conn):
        rows = await conn.fetch("SELECT range AS n, 'r' || range AS s FROM range(100000)")
        total = 0
        seen = 0
        async with conn.transaction():
            async for record in conn.cursor("SELECT range AS n FROM range($1::bigint)", 25000,
                                            prefetch=1000):
                total += record["n"]
                seen += 1
            cur = await conn.cursor("SELECT range AS n FROM range(10)")
            first = await cur.fetch(3)
            second = await cur.fetch(3)
        return len(rows), rows[-1]["s"], sum(r["n"] for r in rows), seen, total, \
            [r["n"] for r in first + second]
    count, last, total_all, seen, total, batches = run(module_tierd, body)
    assert (count, last, total_all) == (100000, "r99999", 99999 * 100000 // 2)
    assert (seen, total) == (25000, 24999 * 25000 // 2)
    assert batches == [0, 1, 2, 3, 4, 5]


def test_cancel_interrupts_the_query_and_keeps_the_session(module_tierd):
    async def body(conn):
        with pytest.raises(asyncio.TimeoutError):
            await conn.fetchval("SELECT count(*) FROM range(100000000) a, range(100000) b "
                                "WHERE a.range + b.range < 0", timeout=1)
        return await conn.fetchval("SELECT 42")
    assert run(module_tierd, body) == 42


def test_settings_reported_at_startup_and_after_set(module_tierd):
    async def body(conn):
        before = conn.get_settings().TimeZone
        await conn.execute("SET TimeZone TO 'Europe/Paris'")
        after = conn.get_settings().TimeZone
        await conn.execute("SET application_name = 'tierd-test'")
        return before, after, conn.get_settings().application_name
    assert run(module_tierd, body) == ("UTC", "Europe/Paris", "tierd-test")


def test_encode_decode_and_clocks_with_parameters(module_tierd):
    """asyncpg encodes by the described parameter types: encode()'s first parameter is bytea
    and decode()'s text, as PostgreSQL describes them; results are bytea and text."""
    async def body(conn):
        row = await conn.fetchrow("SELECT encode($1, $2) AS e, decode($3, $4) AS d",
                                  b"\x00\xffab", "base64", "00ff6162", "hex")
        assert (row["e"], row["d"]) == ("AP9hYg==", b"\x00\xffab")
        await conn.execute("CREATE TABLE public.enc (id INT PRIMARY KEY, b BYTEA)")
        await conn.execute("INSERT INTO public.enc VALUES ($1, decode($2, 'base64'))", 1, "3q2+7w==")
        assert await conn.fetchval("SELECT encode(b, 'hex') FROM public.enc WHERE id = $1", 1) == "deadbeef"
        with pytest.raises(asyncpg.InvalidParameterValueError, match='unrecognized encoding: "rot13"'):
            await conn.fetchval("SELECT encode($1, $2)", b"a", "rot13")
        row = await conn.fetchrow("SELECT now() AS n, statement_timestamp() AS s, clock_timestamp() AS c")
        assert row["n"] <= row["s"] <= row["c"] and row["c"].tzinfo is not None
    run(module_tierd, body)
