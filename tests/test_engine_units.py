"""Small exact tests of the engine's pure pieces."""
import pytest

from engine.errors import InvalidParameterValue, SyntaxError_
from engine.storage.manifest import CompactionEdit, FlushEdit, Manifest, Segment
from engine.catalog.flush_policy import FlushPolicy, parse_flush_policy
from engine.sql.split import leading_words, split_statements
from engine.sql.parse import parse
from engine.sql.statements import (CreateRole, DropNamespace, DropTable, Grant, StorageJob, parse_create_table,
                                   parse_storage_job)


@pytest.mark.parametrize("sql,expected", [
    ("select 1; select 2", ["select 1", "select 2"]),
    ("select ';' ; select 2;", ["select ';'", "select 2"]),
    ("select $$a;b$$; select $t$x;$t$", ["select $$a;b$$", "select $t$x;$t$"]),
    ("select 1 -- c;\n; /* ; */ select 2", ["select 1 -- c;", "/* ; */ select 2"]),
    ('select "a;b" from t', ['select "a;b" from t']),
    ("select 'it''s;'", ["select 'it''s;'"]),
    (" ; -- only a comment\n", []),
    ("select $1, $2", ["select $1, $2"]),
])
def test_split_statements(sql, expected):
    assert split_statements(sql) == expected


def test_leading_words():
    assert leading_words("/* x */ -- y\n  (select 1)") == ["SELECT"]
    assert leading_words("storage flush table a.b wait", 3) == ["STORAGE", "FLUSH", "TABLE"]


@pytest.mark.parametrize("text,policy", [
    ("rows:50", FlushPolicy(rows=50)),
    ("interval:60", FlushPolicy(interval=60)),
    ("rows:50,interval:60", FlushPolicy(rows=50, interval=60)),
    (" Interval:5 , rows:1 ", FlushPolicy(rows=1, interval=5)),
    ("manual", FlushPolicy()),
])
def test_flush_policy_valid(text, policy):
    assert parse_flush_policy(text) == policy
    assert parse_flush_policy(str(policy)) == policy


@pytest.mark.parametrize("text,needle", [
    ("rows", "needs a value"), ("rows:", "needs a value"), ("rows:0", "between"),
    ("rows:-1", "between"), ("rows:x", "not an integer"), ("bytes:10", "unknown key"),
    ("rows:1,rows:2", "twice"), ("", "empty"), ("interval:99999999999", "between"),
])
def test_flush_policy_invalid(text, needle):
    with pytest.raises(InvalidParameterValue) as info:
        parse_flush_policy(text)
    assert needle in info.value.message


def test_parse_create_table_with_options():
    ct = parse_create_table(
        "CREATE SHARED TABLE IF NOT EXISTS App.Ev (id BIGINT PRIMARY KEY, b TEXT DEFAULT 'x(y)') "
        "WITH (TYPE = 'SHARED', STORAGE_ID = 'local', FLUSH_POLICY = 'rows:50,interval:60')", "public")
    assert (ct.namespace, ct.name, ct.keyword_type, ct.if_not_exists) == ("app", "ev", "SHARED", True)
    assert ct.body == "id BIGINT PRIMARY KEY, b TEXT DEFAULT 'x(y)'"
    assert ct.options == {"TYPE": "SHARED", "STORAGE_ID": "local", "FLUSH_POLICY": "rows:50,interval:60"}
    assert parse_create_table('create table "Q" (a int primary key)', "public").name == "Q"
    with pytest.raises(SyntaxError_):
        parse_create_table("CREATE TABLE t (a INT PRIMARY KEY) WITH (BROKEN", "public")


def test_parse_commands():
    assert parse("STORAGE FLUSH TABLE app.events WAIT") == StorageJob("flush", "app.events", None, True)
    assert parse("storage compact all in app") == StorageJob("compact", None, "app", False)
    assert parse("DROP NAMESPACE IF EXISTS app CASCADE") == DropNamespace("app", True, True, "DROP NAMESPACE")
    assert parse("drop table if exists a.b") == DropTable("a.b", True, "DROP TABLE", names=("a.b",))
    assert parse("CREATE USER bob PASSWORD 'x'") == CreateRole("bob", False, True, "x", "USER")
    assert parse("GRANT SELECT ON t TO bob") == Grant(True, ["SELECT"], ["t"], ["bob"])
    assert parse_storage_job("STORAGE FLUSH TABLES x") is None
    with pytest.raises(SyntaxError_):
        parse("STORAGE FLUSH TABLES x")


def test_manifest_roundtrip_and_next_version():
    m = Manifest(table_id="a.b")
    seg = Segment(id=0, path="batch-0.parquet", min_seq=1, max_seq=3, row_count=3, size_bytes=10,
                  created_at="t", column_stats={"id": {"min": 1, "max": 3, "null_count": 0}})
    m2 = m.apply(FlushEdit([seg], flushed_seq=3))
    assert (m2.version, m2.flushed_seq, m2.next_segment_id, m2.row_count) == (1, 3, 1, 3)
    assert Manifest.from_json(m2.to_json()) == m2
    seg2 = Segment(id=5, path="batch-5.parquet", min_seq=1, max_seq=3, row_count=2, size_bytes=8, created_at="t")
    m3 = m2.apply(CompactionEdit([seg2]))
    assert (m3.version, m3.flushed_seq, m3.next_segment_id, [s.id for s in m3.segments]) == (2, 3, 6, [5])
    assert m3.created_at == m2.created_at


def test_dml_plan_reads_unspaced_placeholders():
    from engine.sql.dml import InsertPlan, plan

    p = plan("insert into bench.ins values ($1,$2,$3)")
    assert isinstance(p, InsertPlan) and p.param_count == 3
    assert (p.target.namespace, p.target.name) == ("bench", "ins")
    assert "'$1,$2'" in plan("insert into t values ($1,'$1,$2')").stage_sql


def test_bulk_insert_skips_sqlglot_but_keeps_meaning():
    from engine.sql.dml import COLUMNS_PREFIX, plan

    values = ", ".join(f"({i}, 'a,(b)', {i}.5)" for i in range(400))
    p = plan(f"INSERT INTO App.Ev VALUES {values}")
    assert (p.target.namespace, p.target.name) == ("app", "ev")
    assert f"{COLUMNS_PREFIX}3" in p.stage_sql and p.fast_values is None
    p = plan(f'insert into "Ev" (id, b, c) values {values};')
    assert p.target.name == "Ev" and "(id, b, c)" in p.stage_sql
    assert plan(f"INSERT INTO ev VALUES {values} RETURNING id").returning == "id"  # sqlglot handles RETURNING


def _reference_array(values, typ):
    import pyarrow as pa
    try:
        return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        return None


def test_small_array_is_pa_array_or_declines():
    """small_array builds exactly what pa.array builds, or declines (None) so pa.array runs."""
    import datetime
    import math
    import random

    import pyarrow as pa

    from engine.small_arrays import small_array
    choices = {
        pa.int8(): [0, 1, -128, 127, 128, None, True], pa.int16(): [5, -3, None, 1.0],
        pa.int32(): [2**31 - 1, -2**31, None, 2**31, "7"], pa.int64(): [2**63 - 1, -2**63, 0, None, 2**63],
        pa.uint8(): [0, 255, 256, -1, None], pa.uint64(): [2**64 - 1, 0, None],
        pa.float32(): [1.5, 1e39, math.nan, None, 3, 2**60, -0.0],
        pa.float64(): [0.5, -0.0, math.inf, None, 7, 2**60, "1.5"],
        pa.string(): ["", "abc", "é☃", None, "\ud800", 5], pa.binary(): [b"", b"\x00\xff", None, "text"], pa.bool_(): [True, False, None, 1],
        pa.date32(): [None, 0, -719162, 2932896, datetime.date(2026, 1, 2)],
        pa.timestamp("us", tz="UTC"): [None, 0, -2**63, 1_700_000_000_000_000, datetime.datetime(2026, 1, 2, 3, 4, 5)],
        pa.time64("us"): [None, 0, 86_399_999_999, 1.5],
        pa.decimal128(10, 2): [None, 1],
    }
    rng = random.Random(7)
    built = declined = 0
    for _ in range(5000):
        typ = rng.choice(list(choices))
        values = [rng.choice(choices[typ]) for _ in range(rng.randint(0, 20))]
        got = small_array(values, typ)
        if got is None:
            declined += 1
            continue
        built += 1
        got.validate(full=True)
        want = _reference_array(values, typ)
        assert want is not None, (typ, values)
        assert got.type == want.type and got.null_count == want.null_count
        assert got.equals(want) or repr(got.to_pylist()) == repr(want.to_pylist()), (typ, values)  # NaN != NaN
    assert built > 1000 and declined > 1000


def test_hot_batch_codec_round_trips_both_formats():
    """A hot batch reads back with its exact schema (field metadata too) and values, whether
    stored compact (few rows of marshal-able types) or as Arrow IPC, one at a time or in runs."""
    import math

    import pyarrow as pa

    from engine.storage.hot_store import COMPACT, decode_batch, decode_batches, encode_batch
    schema = pa.schema([pa.field("id", pa.int64(), False), pa.field("body", pa.string(), metadata={b"sql_type": b"JSON"}),
                        pa.field("r", pa.float32()), pa.field("b", pa.bool_()), pa.field("bin", pa.binary()),
                        pa.field("small", pa.int16()), pa.field("_seq", pa.int64()), pa.field("_deleted", pa.bool_())])

    def rows(first, n):
        return pa.table([list(range(first, first + n)), [None if i % 3 == 0 else f'{{"k": "é{i}"}}' for i in range(n)],
                         [[1.5, None, math.nan, -0.0][i % 4] for i in range(n)], [[True, False, None][i % 3] for i in range(n)],
                         [[b"\x00\xff", None, b""][i % 3] for i in range(n)], [[-32768, 32767, None][i % 3] for i in range(n)],
                         list(range(first, first + n)), [i % 2 == 1 for i in range(n)]], schema=schema)
    temporal = pa.schema([pa.field("at", pa.timestamp("us", tz="UTC")), pa.field("local", pa.timestamp("us")),
                          pa.field("day", pa.date32()), pa.field("t", pa.time64("us")), pa.field("_seq", pa.int64())])
    times = pa.table([pa.array([1_700_000_000_123_456, None, -1], pa.timestamp("us", tz="UTC")),
                      pa.array([-62_135_596_800_000_000, 253_402_300_799_999_999, None], pa.timestamp("us")),
                      pa.array([-719_162, None, 2_932_896], pa.date32()), pa.array([0, 86_399_999_999, None], pa.time64("us")),
                      [1, 2, 3]], schema=temporal)
    beyond = pa.table([pa.array([2**62], pa.timestamp("us", tz="UTC")), pa.array([0], pa.timestamp("us")),
                       pa.array([0], pa.date32()), pa.array([0], pa.time64("us")), [4]], schema=temporal)
    nanos = pa.table({"at": pa.array([1], pa.timestamp("ns")), "_seq": [9]})
    tables = [rows(1, 1), rows(2, 3), rows(5, 200), rows(205, 1), times, beyond, nanos, rows(206, 2), rows(208, 64)]
    encoded = [encode_batch(t) for t in tables]
    assert [e.startswith(COMPACT) for e in encoded] == [True, True, False, True, True, False, False, True, True]
    def same(back, table):
        assert back.schema.equals(table.schema, check_metadata=True)
        assert back.equals(table) or repr(back.to_pylist()) == repr(table.to_pylist())  # NaN != NaN

    for table, data in zip(tables, encoded):
        same(decode_batch(data), table)
    for table, back in zip(tables, decode_batches(encoded)):
        same(back, table)
