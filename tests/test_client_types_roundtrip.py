"""Every declarable type reads back identically in binary (psycopg binary cursors, asyncpg)
from the hot tier, after a flush to Parquet, after compaction and after kill -9; the text
format is covered by tests/sql/types/roundtrip.test. INTERVAL values are stored in Parquet as
a struct of (months, days, nanoseconds) and decoded on read."""
from __future__ import annotations

import asyncio
import math

import asyncpg

CREATE = "CREATE TABLE public.alltypes (id INT PRIMARY KEY, i2 SMALLINT, i4 INT, i8 BIGINT, f4 REAL, f8 DOUBLE PRECISION, n NUMERIC(12,3), nn NUMERIC, t TEXT, vc VARCHAR(10), ch CHAR(3), b BOOLEAN, bt BYTEA, d DATE, tm TIME, ts TIMESTAMP, tstz TIMESTAMPTZ, iv INTERVAL, u UUID, j JSON, jb JSONB, a_i4 INT[], a_i2 SMALLINT[], a_i8 BIGINT[], a_t TEXT[], a_b BOOLEAN[], a_f8 DOUBLE PRECISION[], a_f4 REAL[], a_n NUMERIC(10,2)[], a_d DATE[], a_ts TIMESTAMP[], a_tstz TIMESTAMPTZ[], a_u UUID[], a_iv INTERVAL[], a_bt BYTEA[], a_tm TIME[], a_vc VARCHAR[], a_j JSON[]) WITH (FLUSH_POLICY = 'manual')"
INSERT = 'INSERT INTO public.alltypes VALUES (1, -32768, 2147483647, -9223372036854775808, 1.5, 3.141592653589793, 123456789.125, 12345678.5, \'tab\tand \'\'quote\'\'\', \'varchar\', \'ab\', true, unhex(\'00ff10\'), \'2024-02-29\', \'23:59:59.999999\', \'2024-01-02 03:04:05.123456\', \'2024-06-30 12:00:00+02\', \'1 year 2 mons 3 days 04:05:06.789\', \'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\', \'{"a": [1, 2, {"b": null}]}\', \'{"k": "v"}\', ARRAY[1, NULL, 3], ARRAY[1::smallint], ARRAY[9223372036854775807], ARRAY[\'x\', NULL, \'y z\'], ARRAY[true, false], ARRAY[1.25, -0.5], ARRAY[2.5::real], ARRAY[1.10, 2.25], ARRAY[\'2020-01-01\'::date], ARRAY[\'2020-01-01 01:02:03\'::timestamp], ARRAY[\'2020-01-01 01:02:03+00\'::timestamptz], ARRAY[\'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\'::uuid], ARRAY[\'1 day\'::interval, \'-2 hours 3 microseconds\'::interval], ARRAY[unhex(\'01\')], ARRAY[\'10:11:12\'::time], ARRAY[\'p\', \'q\'], ARRAY[\'{"x": 1}\'::json]), (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), (3, 0, 0, 0, \'NaN\', \'-Infinity\', 0, -1.5, \'\', \'\', \'\', false, \'\'::bytea, \'0001-01-01\', \'00:00:00\', \'1970-01-01 00:00:00\', \'1970-01-01 00:00:00+00\', \'-1 mons -2 days\', \'00000000-0000-0000-0000-000000000000\', \'[]\', \'null\', ARRAY[]::INT[], ARRAY[]::SMALLINT[], ARRAY[]::BIGINT[], ARRAY[]::TEXT[], ARRAY[]::BOOLEAN[], ARRAY[]::DOUBLE PRECISION[], ARRAY[]::REAL[], ARRAY[]::NUMERIC(10,2)[], ARRAY[]::DATE[], ARRAY[]::TIMESTAMP[], ARRAY[]::TIMESTAMPTZ[], ARRAY[]::UUID[], ARRAY[]::INTERVAL[], ARRAY[]::BYTEA[], ARRAY[]::TIME[], ARRAY[]::VARCHAR[], ARRAY[]::JSON[])'
QUERY = "SELECT * FROM public.alltypes ORDER BY id"
# asyncpg introspects array types through a recursive pg_type query tierd's catalog does not
# answer yet (test_client_asyncpg.test_arrays_round_trip): its reads leave the arrays out.
SCALARS = "id, i2, i4, i8, f4, f8, n, nn, t, vc, ch, b, bt, d, tm, ts, tstz, iv, u, j, jb"


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


def reads(d) -> dict:
    with d.connect() as c:
        text = c.execute(QUERY).fetchall()
        binary = c.cursor(binary=True).execute(QUERY).fetchall()

    async def via_asyncpg():
        conn = await asyncpg.connect(host="127.0.0.1", port=d.port, user="tierd", database="tierd", timeout=10)
        try:
            return [tuple(r) for r in await asyncio.wait_for(
                conn.fetch(f"SELECT {SCALARS} FROM public.alltypes ORDER BY id"), 10)]
        finally:
            await conn.close()
    return {"text": text, "binary": binary, "asyncpg": asyncio.run(via_asyncpg())}


def assert_same(expected: dict, actual: dict, phase: str) -> None:
    for how in expected:
        for want, got in zip(expected[how], actual[how], strict=True):
            for i, (x, y) in enumerate(zip(want, got, strict=True)):
                assert same(x, y), f"{phase}, {how}, row {want[0]} column {i}: {x!r} != {y!r}"


def test_every_type_round_trips_through_the_cold_tier_in_binary(module_tierd):
    d = module_tierd
    with d.connect() as c:
        c.execute(CREATE)
        c.execute(INSERT)
    hot = reads(d)
    assert len(hot["binary"]) == 3 and len(hot["asyncpg"]) == 3
    with d.connect() as c:
        assert c.execute("STORAGE FLUSH TABLE public.alltypes WAIT").fetchone()[1] == "completed"
    assert_same(hot, reads(d), "flushed")
    with d.connect() as c:
        c.execute("UPDATE public.alltypes SET i2 = i2 WHERE id = 3")  # a delta segment
        assert c.execute("STORAGE FLUSH TABLE public.alltypes WAIT").fetchone()[1] == "completed"
        assert c.execute("STORAGE COMPACT TABLE public.alltypes WAIT").fetchone()[1] == "completed"
        assert c.execute("SELECT hot_rows, segments FROM system.tables WHERE table_name = 'alltypes'"
                         ).fetchone() == (0, 1)
    assert_same(hot, reads(d), "compacted")
    d.restart(kill9=True)
    assert_same(hot, reads(d), "after kill -9")
