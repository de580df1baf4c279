"""Type codecs of the wire layer: vectorised result encoders and Bind parameter decoders."""
import datetime as dt
import decimal
import struct
import uuid

import pyarrow as pa
import pytest

from engine.errors import EngineError
from protocol.rows import data_rows, plan_columns, row_description
from protocol.types import decode_param, pg_type_for
from protocol.types.numeric import encode_numeric, numeric_from_binary


def text(values: pa.Array) -> list:
    return pg_type_for(values.type).text(values).to_pylist()


def binary(values: pa.Array) -> list:
    return pg_type_for(values.type).binary(values).to_pylist()


# --- result text format ----------------------------------------------------------------

def test_bool_prints_t_f():
    assert text(pa.array([True, False, None])) == [b"t", b"f", None]


def test_integers_and_their_oids():
    assert text(pa.array([1, -2, None], pa.int64())) == [b"1", b"-2", None]
    assert [pg_type_for(t).oid for t in (pa.int8(), pa.int16(), pa.int32(), pa.int64(),
                                         pa.uint64())] == [21, 21, 23, 20, 1700]


@pytest.mark.parametrize("value,expected", [
    (1.5, b"1.5"), (1.0, b"1"), (0.1, b"0.1"), (-0.0, b"-0"), (0.0001, b"0.0001"),
    (1e-05, b"1e-05"), (1.5e-06, b"1.5e-06"), (1e-08, b"1e-08"), (1e-100, b"1e-100"),
    (1e10, b"10000000000"), (12345678901.25, b"12345678901.25"),
    (123456789000000.0, b"123456789000000"), (1e15, b"1e+15"), (1.5e20, b"1.5e+20"),
    (float("nan"), b"NaN"), (float("inf"), b"Infinity"), (float("-inf"), b"-Infinity"),
])
def test_float8_prints_like_postgres(value, expected):
    assert text(pa.array([value], pa.float64())) == [expected]


def test_float4_prints_like_postgres():
    values = pa.array([0.1, 123456.0, 1e6, 1234567.0, 1.5e-5, 3.4e38, None], pa.float32())
    assert text(values) == [b"0.1", b"123456", b"1e+06", b"1.234567e+06", b"1.5e-05",
                            b"3.4e+38", None]


def test_decimal_keeps_scale():
    values = pa.array([decimal.Decimal("1.50"), None], pa.decimal128(10, 2))
    assert text(values) == [b"1.50", None]
    assert pg_type_for(values.type).oid == 1700


def test_text_bytea_uuid():
    assert text(pa.array(["héllo", None])) == ["héllo".encode(), None]
    assert text(pa.array([b"\x00\xff", b"", None])) == [b"\\x00ff", b"\\x", None]
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    fixed = pa.array([u.bytes], pa.binary(16))
    from protocol.types.string import uuid_text
    assert uuid_text(fixed).to_pylist() == [str(u).encode()]


def test_dates_and_timestamps():
    assert text(pa.array([dt.date(2024, 1, 2)])) == [b"2024-01-02"]
    ts = pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 120000), dt.datetime(2024, 1, 2, 3, 4)],
                  pa.timestamp("us"))
    assert text(ts) == [b"2024-01-02 03:04:05.12", b"2024-01-02 03:04:00"]
    tz = pa.array([dt.datetime(2024, 1, 2, 3, 4, 5), None], pa.timestamp("us", tz="UTC"))
    assert pg_type_for(tz.type).oid == 1184
    assert text(tz) == [b"2024-01-02 03:04:05+00", None]
    ns = pa.array([1_700_000_000_123_456_789], pa.timestamp("ns"))
    assert text(ns) == [b"2023-11-14 22:13:20.123456"]
    assert text(pa.array([dt.time(1, 2, 3, 500000)], pa.time64("us"))) == [b"01:02:03.5"]


@pytest.mark.parametrize("months,days,nanos,expected", [
    (14, 3, 14_706_500_000_000, b"1 year 2 mons 3 days 04:05:06.5"),
    (0, -1, 3_600_000_000_000, b"-1 days +01:00:00"),
    (0, 0, 0, b"00:00:00"),
    (-14, 0, 0, b"-1 years -2 mons"),
    (0, 1, 0, b"1 day"),
    (0, 0, -3_600_000_000_000, b"-01:00:00"),
    (0, 0, 360_000_000_001_000, b"100:00:00.000001"),
])
def test_interval_postgres_style(months, days, nanos, expected):
    values = pa.array([pa.MonthDayNano([months, days, nanos])], pa.month_day_nano_interval())
    assert text(values) == [expected]


def test_lists_as_postgres_arrays():
    assert text(pa.array([[1, 2], [], None, [None, 3]])) == [b"{1,2}", b"{}", None, b"{NULL,3}"]
    assert pg_type_for(pa.list_(pa.int32())).oid == 1007
    assert pg_type_for(pa.list_(pa.string())).oid == 1009
    quoted = pa.array([["a b", "x", None, "", "null", 'q"\\']])
    assert text(quoted) == [b'{"a b",x,NULL,"","null","q\\"\\\\"}']
    assert text(pa.array([[[1, 2], [3, 4]]])) == [b"{{1,2},{3,4}}"]
    assert text(pa.array([[1, 2], [3]]).slice(1)) == [b"{3}"]


def test_unknown_arrow_type_is_text():
    values = pa.array([{"x": 1}])
    assert pg_type_for(values.type).oid == 25
    assert text(values)[0]


# --- result binary format --------------------------------------------------------------

def test_binary_fixed_width():
    assert binary(pa.array([1, None], pa.int32())) == [b"\x00\x00\x00\x01", None]
    assert binary(pa.array([-2], pa.int64())) == [struct.pack("!q", -2)]
    assert binary(pa.array([1.5], pa.float64())) == [struct.pack("!d", 1.5)]
    assert binary(pa.array([2.5], pa.float32())) == [struct.pack("!f", 2.5)]
    assert binary(pa.array([True, False])) == [b"\x01", b"\x00"]
    assert binary(pa.array([dt.date(2000, 1, 2)])) == [struct.pack("!i", 1)]
    assert binary(pa.array([dt.datetime(2000, 1, 1, 0, 0, 1)], pa.timestamp("us"))) == \
        [struct.pack("!q", 1_000_000)]


def test_binary_int_array():
    (encoded,) = binary(pa.array([[1, None]], pa.list_(pa.int32())))
    assert encoded == struct.pack("!iiIii", 1, 1, 23, 2, 1) + struct.pack("!ii", 4, 1) + \
        struct.pack("!i", -1)


@pytest.mark.parametrize("value", ["1.50", "0", "-123456.789", "0.0001", "1E+10", "12345678"])
def test_numeric_binary_round_trip(value):
    assert numeric_from_binary(encode_numeric(decimal.Decimal(value))) == decimal.Decimal(value)


# --- DataRow assembly ------------------------------------------------------------------

def test_data_rows_exact_bytes():
    table = pa.table({"a": [1, None], "b": ["x", None]})
    wire = b"".join(bytes(chunk) for chunk in data_rows(table, plan_columns(table.schema)))
    assert wire == (b"D" + struct.pack("!ih", 16, 2) + struct.pack("!i", 1) + b"1"
                    + struct.pack("!i", 1) + b"x"
                    + b"D" + struct.pack("!ih", 14, 2) + b"\xff" * 8)


def test_data_rows_chunked(monkeypatch):
    import protocol.rows
    monkeypatch.setattr(protocol.rows, "CHUNK_ROWS", 3)
    table = pa.table({"a": list(range(10))})
    chunks = list(data_rows(table, plan_columns(table.schema)))
    assert len(chunks) == 4
    assert b"".join(bytes(c) for c in chunks).count(b"D\x00\x00\x00") == 10


def test_row_description_falls_back_to_binary_text():
    schema = pa.schema([("n", pa.int32()), ("s", pa.struct([("x", pa.int32())]))])
    columns = plan_columns(schema, [1])
    assert [(c.pg_type.oid, c.format) for c in columns] == [(23, 1), (25, 1)]
    assert row_description(columns).startswith(b"T")


# --- parameters --------------------------------------------------------------------------

@pytest.mark.parametrize("oid,raw,expected", [
    (0, b"12", "12"),                 # unknown stays str: never a date parser
    (25, b"2024-01-01", "2024-01-01"),
    (23, b"42", 42), (20, b"-7", -7), (21, b"3", 3),
    (701, b"1.5", 1.5), (700, b"NaN", None),
    (1700, b"1.50", decimal.Decimal("1.50")),
    (16, b"t", True), (16, b"false", False), (16, b"on", True), (16, b"0", False),
    (17, b"\\x00ff", b"\x00\xff"),
    (1082, b"2024-01-02", dt.date(2024, 1, 2)),
    (1114, b"2024-01-02 03:04:05.5", dt.datetime(2024, 1, 2, 3, 4, 5, 500000)),
    (1184, b"2024-01-02 03:04:05+01",
     dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))),
    (1184, b"2024-01-02 03:04:05", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)),
    (1083, b"01:02:03", dt.time(1, 2, 3)),
    (1186, b"1 day", "1 day"),
    (2950, b"12345678-1234-5678-1234-567812345678",
     uuid.UUID("12345678-1234-5678-1234-567812345678")),
    (3802, b'{"a":1}', '{"a":1}'),
    (1007, b"{1,2,NULL}", [1, 2, None]),
    (1009, b'{"a b",c,"q\\"",NULL}', ["a b", "c", 'q"', None]),
    (1007, b"{{1,2},{3,4}}", [[1, 2], [3, 4]]),
])
def test_text_params(oid, raw, expected):
    value = decode_param(oid, 0, raw)
    if expected is None:
        assert value != value  # NaN
    else:
        assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("oid,raw,expected", [
    (23, struct.pack("!i", -5), -5), (20, struct.pack("!q", 2**40), 2**40),
    (21, struct.pack("!h", 7), 7), (701, struct.pack("!d", 1.25), 1.25),
    (700, struct.pack("!f", 0.5), 0.5), (16, b"\x01", True), (17, b"\x00\x01", b"\x00\x01"),
    (25, "héllo".encode(), "héllo"),
    (1082, struct.pack("!i", 1), dt.date(2000, 1, 2)),
    (1114, struct.pack("!q", 1_500_000), dt.datetime(2000, 1, 1, 0, 0, 1, 500000)),
    (1184, struct.pack("!q", 0), dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)),
    (2950, uuid.UUID(int=5).bytes, uuid.UUID(int=5)),
    (1700, encode_numeric(decimal.Decimal("-12.340")), decimal.Decimal("-12.340")),
    (1007, struct.pack("!iiIiiii", 1, 0, 23, 2, 1, 4, 7) + struct.pack("!i", -1), [7, None]),
])
def test_binary_params(oid, raw, expected):
    assert decode_param(oid, 1, raw) == expected


def test_null_param():
    assert decode_param(23, 0, None) is None


@pytest.mark.parametrize("oid,raw,sqlstate", [
    (23, b"abc", "22P02"), (16, b"maybe", "22P02"), (21, b"99999", "22003"),
    (1082, b"yesterday", "22P02"), (2950, b"not-a-uuid", "22P02"),
])
def test_bad_text_params(oid, raw, sqlstate):
    with pytest.raises(EngineError) as info:
        decode_param(oid, 0, raw)
    assert info.value.sqlstate == sqlstate


def test_unsupported_binary_param():
    with pytest.raises(EngineError) as info:
        decode_param(600, 1, b"\x00" * 16)
    assert info.value.sqlstate == "0A000"


def test_few_row_cells_equal_the_vectorised_encoders():
    """protocol/types/cells.py: a result of a few rows is encoded per value; every type it
    takes gives the vectorised encoders' bytes, in text and binary, over awkward values."""
    import random

    from tests.raw_wire import small_and_vectorised

    rng = random.Random(15)
    floats = [0.0, -0.0, 1.0, 0.1, 1e-4, 9.99e-5, 1e-5, 1e15, 9.99e14, 1e16, 123456789012345.6, 5e-324,
              1.7976931348623157e308, float("nan"), float("inf"), float("-inf"), 100.0, 1234.5e-10]
    floats += [rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30) for _ in range(400)]
    floats += [float(rng.randint(-10**17, 10**17)) for _ in range(100)]
    n = len(floats)
    micros = [rng.randint(-2 * 10**15, 2 * 10**17) for _ in range(n)]
    micros[:3] = [0, 1_000_000, 1_500_000]
    pick = lambda values: [None if i % 7 == 3 else v for i, v in enumerate(values)]  # noqa: E731
    table = pa.table({
        "f": pa.array(pick(floats), pa.float64()),
        "i2": pa.array(pick([rng.randint(-2**15, 2**15 - 1) for _ in range(n)]), pa.int16()),
        "i8": pa.array(pick([rng.randint(-2**63, 2**63 - 1) for _ in range(n)]), pa.int64()),
        "u4": pa.array(pick([rng.randint(0, 2**32 - 1) for _ in range(n)]), pa.uint32()),
        "s": pa.array(pick([f"é{i}\x01" * (i % 3) for i in range(n)]), pa.string()),
        "b": pa.array(pick([i % 2 == 0 for i in range(n)])),
        "d": pa.array(pick([decimal.Decimal(rng.randint(-10**12, 10**12)).scaleb(-4) for _ in range(n)]),
                      pa.decimal128(18, 4)),
        "ts": pa.array(pick(micros), pa.int64()).cast(pa.timestamp("us")),
        "tz": pa.array(pick(micros), pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "day": pa.array(pick([rng.randint(-700_000, 2_900_000) for _ in range(n)]), pa.int32()).cast(pa.date32()),
    })
    for zone in ("UTC", "Europe/Berlin"):
        for formats in ((), (1,)):
            columns = plan_columns(table.schema, formats, timezone=zone)
            for start in range(0, n, 16):
                batch = table.slice(start, 16).to_batches()[0]
                small, large = small_and_vectorised(batch, columns)
                assert small == large, (zone, formats, start)
