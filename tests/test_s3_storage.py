"""S3Storage against a real S3 server (SeaweedFS, one per module; see tests/s3server.py).

The outage tests stop and restart the module's server; they run last and always bring it back.
"""
from __future__ import annotations

import io
import re
import time

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.storage.s3 import S3Storage, S3StorageError, duckdb_http_settings, httpfs_extension_path, is_transient
from tests.s3server import s3  # noqa: F401  (module-scoped SeaweedFS fixture)


def make_storage(server, prefix: str, storage_id: str = "s3test", **overrides) -> S3Storage:
    config = dict(server.storage_config(), **overrides)
    return S3Storage(storage_id, f"s3://{server.bucket}/{prefix}", storage_type="s3", config=config)


def parquet_bytes(n: int, row_group_size: int) -> bytes:
    table = pa.table({
        "id": pa.array(range(n), pa.int64()),
        "grp": pa.array([i % 10 for i in range(n)], pa.int32()),
        "body": pa.array([f"row-{i:08d}-" + "x" * 40 for i in range(n)]),
    })
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=row_group_size)
    return buf.getvalue()


def duck(*storages: S3Storage) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    for storage in storages:
        for stmt in storage.duckdb_setup():
            con.execute(stmt)
    for stmt in duckdb_http_settings(timeout_s=3, retries=0):  # httpfs settings exist once it is loaded
        con.execute(stmt)
    return con


def http_stats(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[float, int]:
    """(KiB read, GET count) of one query, from EXPLAIN ANALYZE's HTTPFS stats."""
    profile = con.execute("EXPLAIN ANALYZE " + sql).fetchall()[0][1]
    m = re.search(r"in: ([\d.]+) (bytes|KiB|MiB|GiB)", profile)
    kib = float(m.group(1)) * {"bytes": 1 / 1024, "KiB": 1, "MiB": 1024, "GiB": 1024 * 1024}[m.group(2)]
    return kib, int(re.search(r"#GET: (\d+)", profile).group(1))


# --- plain I/O ------------------------------------------------------------------------------
def test_write_read_list_delete_round_trip(s3):
    st = make_storage(s3, "roundtrip")
    assert st.read("ns/t/manifest.json") is None
    assert st.list("ns/t") == []
    assert st.write_atomic("ns/t/batch-0.parquet", b"zero") == 4
    assert st.write_atomic("ns/t/batch-0.parquet", b"zero") == 4  # idempotent
    st.write_atomic("ns/t/manifest.json", b'{"version": 1}')
    st.write_atomic("ns/t/7/batch-0.parquet", b"user seven")
    st.write_atomic("ns/other/batch-0.parquet", b"other")
    assert st.read("ns/t/batch-0.parquet") == b"zero"
    assert st.read("ns/t/7/batch-0.parquet") == b"user seven"
    assert st.list("ns/t") == ["7", "batch-0.parquet", "manifest.json"]  # like os.listdir: direct children
    assert st.list("ns") == ["other", "t"]
    assert st.list("") == ["ns"]
    st.write_atomic("ns/t/manifest.json", b'{"version": 2}')  # a PUT replaces the object whole
    assert st.read("ns/t/manifest.json") == b'{"version": 2}'
    empty = st.write_atomic("ns/t/empty", b"")
    assert empty == 0 and st.read("ns/t/empty") == b""

    st.delete("ns/t/batch-0.parquet")
    st.delete("ns/t/batch-0.parquet")  # deleting what is gone is not an error
    assert st.read("ns/t/batch-0.parquet") is None
    assert "batch-0.parquet" not in st.list("ns/t")

    st.delete_tree("ns/t")
    assert st.read("ns/t/manifest.json") is None and st.read("ns/t/7/batch-0.parquet") is None
    assert st.list("ns/t") == []
    assert st.read("ns/other/batch-0.parquet") == b"other"  # a sibling tree is untouched
    st.delete_tree("ns/never-existed")


def test_large_object_round_trip(s3):
    st = make_storage(s3, "large")
    data = bytes(range(256)) * (12 * 4096)  # 12 MiB: above pyarrow's part size, a multipart upload
    assert st.write_atomic("big.bin", data) == len(data)
    assert st.read("big.bin") == data


def test_keys_stay_under_the_base(s3):
    st = make_storage(s3, "base/a")
    sibling = make_storage(s3, "base/ab", storage_id="sibling")
    st.write_atomic("t/x", b"mine")
    sibling.write_atomic("t/x", b"theirs")
    assert st.read("t/x") == b"mine" and sibling.read("t/x") == b"theirs"
    assert st.reader_path("ns/t/batch-3.parquet") == f"s3://{s3.bucket}/base/a/ns/t/batch-3.parquet"
    assert st.reader_path("./ns//t/batch-3.parquet") == f"s3://{s3.bucket}/base/a/ns/t/batch-3.parquet"
    for bad in ("../ab/t/x", "t/../../ab/t/x", "/etc/passwd"):
        with pytest.raises(ValueError, match="escapes storage"):
            st.write_atomic(bad, b"no")
    assert sibling.read("t/x") == b"theirs"
    bucket_root = S3Storage("root", f"s3://{s3.bucket}", storage_type="s3", config=s3.storage_config())
    assert bucket_root.reader_path("a/b") == f"s3://{s3.bucket}/a/b"
    assert bucket_root.read("base/a/t/x") == b"mine"


def test_read_racing_an_overwrite_returns_one_whole_version(s3):
    """pyarrow reads with HEAD (size) + ranged GET: an overwrite in between would return the new
    object cut at the old size. `read` notices the ETag change and reads again."""
    st = make_storage(s3, "race")
    st.write_atomic("manifest.json", b"A" * 10)
    real = st.fs

    class Racing:
        overwritten = False

        def open_input_stream(self, path):
            stream = real.open_input_stream(path)  # the HEAD happened: size 10
            if not Racing.overwritten:
                Racing.overwritten = True
                st.write_atomic("manifest.json", b"B" * 20)
            return stream

        def __getattr__(self, name):
            return getattr(real, name)

    st._fs = Racing()
    assert st.read("manifest.json") == b"B" * 20
    assert Racing.overwritten


def test_transient_errors_are_told_apart():
    assert is_transient("AWS Error NETWORK_CONNECTION during PutObject operation: curlCode: 7, Could not connect")
    assert is_transient("AWS Error UNKNOWN (HTTP status 503) during PutObject operation: Service Unavailable")
    assert is_transient("AWS Error SLOW_DOWN during PutObject operation")
    assert not is_transient("AWS Error ACCESS_DENIED during PutObject operation: Access Denied")
    assert not is_transient("AWS Error SIGNATURE_DOES_NOT_MATCH during PutObject operation")
    assert not is_transient("AWS Error NO_SUCH_BUCKET during PutObject operation")


def test_check_is_healthy_against_the_live_server(s3):
    check = make_storage(s3, "checked").check()
    assert check.status == "healthy", check.error
    assert check.readable and check.writable and check.listable and check.deletable
    assert check.error is None


def test_config_validation_and_redaction(s3):
    with pytest.raises(ValueError, match="allow_http"):
        make_storage(s3, "x", allow_http=False)
    with pytest.raises(ValueError, match="s3://bucket"):
        S3Storage("bad", "/not/s3", storage_type="s3", config=s3.storage_config())
    st = make_storage(s3, "redacted")
    assert s3.secret_key not in repr(st)
    assert st.redacted_config()["secret_access_key"] == "********"


def test_wrong_secret_fails_at_once_and_is_not_echoed(s3):
    wrong = "WrongSecretValue" + "9" * 16
    st = make_storage(s3, "denied", secret_access_key=wrong)
    started = time.monotonic()
    with pytest.raises(S3StorageError) as info:
        st.write_atomic("t/x", b"x")
    assert time.monotonic() - started < 2
    err = info.value
    assert err.transient is False and err.attempts == 1  # permanent: no retries
    assert "SIGNATURE_DOES_NOT_MATCH" in str(err) and s3.endpoint in str(err)
    assert wrong not in str(err) and s3.secret_key not in str(err)
    check = st.check()
    assert check.status == "unreachable" and wrong not in (check.error or "")


# --- DuckDB ---------------------------------------------------------------------------------
def test_httpfs_extension_matches_duckdb():
    path = httpfs_extension_path()
    assert path is not None, f"no httpfs extension for duckdb {duckdb.__version__}"
    assert f"v{duckdb.__version__}" in path
    duckdb.connect().execute(f"LOAD '{path}'")


def test_duckdb_reads_parquet_written_through_the_storage(s3):
    st = make_storage(s3, "duck")
    data = parquet_bytes(200_000, row_group_size=20_000)  # 10 row groups
    st.write_atomic("ns/t/batch-0.parquet", data)
    url = st.reader_path("ns/t/batch-0.parquet")
    con = duck(st)
    scopes = dict(con.execute("SELECT name, scope FROM duckdb_secrets()").fetchall())
    assert scopes == {st.secret_name: [f"s3://{s3.bucket}/duck/"]}
    assert con.execute(f"SELECT count(*), sum(id), max(body) FROM read_parquet('{url}')").fetchone() == (
        200_000, sum(range(200_000)), f"row-{199_999:08d}-" + "x" * 40)

    # projection: reading `id` alone moves far fewer bytes than `body`; pruning: a filter that
    # matches one row group reads about a tenth; one that matches none reads only the footer
    # (each query on a fresh connection: DuckDB caches remote file blocks per database)
    full_kib, _ = http_stats(duck(st), f"SELECT sum(length(body)), sum(id) FROM read_parquet('{url}')")
    id_kib, _ = http_stats(duck(st), f"SELECT sum(id) FROM read_parquet('{url}')")
    one_rg_kib, _ = http_stats(duck(st), f"SELECT sum(length(body)) FROM read_parquet('{url}') "
                                         "WHERE id BETWEEN 100000 AND 100010")
    none_kib, none_gets = http_stats(duck(st), f"SELECT sum(length(body)) FROM read_parquet('{url}') WHERE id < 0")
    assert id_kib < full_kib * 0.7
    assert one_rg_kib < full_kib / 4
    assert none_kib < 64 and none_gets <= 2

    # same key rewritten (a retried flush): the same connection sees the new bytes, not a cache
    st.write_atomic("ns/t/batch-0.parquet", parquet_bytes(3, row_group_size=3))
    assert con.execute(f"SELECT count(*) FROM read_parquet('{url}')").fetchone() == (3,)


def test_duckdb_secrets_of_two_storages_coexist(s3):
    good = make_storage(s3, "scoped/good", storage_id="good")
    bad = make_storage(s3, "scoped/bad", storage_id="bad-one", secret_access_key="NotTheSecret" + "0" * 20)
    data = parquet_bytes(10, row_group_size=10)
    good.write_atomic("t/b.parquet", data)
    make_storage(s3, "scoped/bad").write_atomic("t/b.parquet", data)  # written with good credentials
    con = duck(good, bad)
    assert con.execute(f"SELECT count(*) FROM read_parquet('{good.reader_path('t/b.parquet')}')").fetchone() == (10,)
    with pytest.raises(duckdb.Error) as info:  # bad's secret is used for bad's base, and fails
        con.execute(f"SELECT count(*) FROM read_parquet('{bad.reader_path('t/b.parquet')}')").fetchall()
    assert "403" in str(info.value) and "NotTheSecret" not in str(info.value)
    for stmt in bad.duckdb_teardown():
        con.execute(stmt)
    assert [n for (n,) in con.execute("SELECT name FROM duckdb_secrets()").fetchall()] == [good.secret_name]


# --- outages (these stop and restart the module's server: keep them last) --------------------
def test_server_down_fails_fast_without_leaking_the_secret_and_recovers(s3):
    st = make_storage(s3, "outage")
    st.write_atomic("ns/t/batch-0.parquet", parquet_bytes(1000, row_group_size=1000))
    st.write_atomic("ns/t/manifest.json", b'{"version": 1}')
    url = st.reader_path("ns/t/batch-0.parquet")
    con = duck(st)
    assert con.execute(f"SELECT count(*) FROM read_parquet('{url}')").fetchone() == (1000,)
    s3.stop()
    try:
        started = time.monotonic()
        with pytest.raises(S3StorageError) as info:
            st.write_atomic("ns/t/batch-1.parquet", b"while down")
        elapsed = time.monotonic() - started
        err = info.value
        assert elapsed < 5, f"a write to a dead endpoint took {elapsed:.1f}s"
        assert err.transient and err.attempts == st.max_attempts  # retried with backoff, then gave up
        msg = str(err)
        assert s3.endpoint in msg and f"s3://{s3.bucket}/outage/ns/t/batch-1.parquet" in msg
        assert s3.secret_key not in msg and s3.secret_key not in repr(err)

        for op in (lambda: st.read("ns/t/manifest.json"), lambda: st.list("ns/t"), lambda: st.delete("ns/t/x")):
            with pytest.raises(S3StorageError) as info:
                op()
            assert s3.secret_key not in str(info.value)

        started = time.monotonic()
        check = st.check()
        assert time.monotonic() - started < 5
        assert check.status == "unreachable" and not check.writable and not check.readable
        assert s3.endpoint in check.error and s3.secret_key not in check.error

        started = time.monotonic()
        with pytest.raises(duckdb.IOException) as info:  # DuckDB's own read fails too, quickly
            con.execute(f"SELECT count(*) FROM read_parquet('{url}')").fetchall()
        assert time.monotonic() - started < 10
        assert s3.secret_key not in str(info.value) and s3.access_key not in str(info.value)
    finally:
        s3.start()

    # back with its data; the same storage object works again
    assert st.read("ns/t/manifest.json") == b'{"version": 1}'
    st.write_atomic("ns/t/batch-1.parquet", b"after restart")
    assert st.read("ns/t/batch-1.parquet") == b"after restart"
    assert st.list("ns/t") == ["batch-0.parquet", "batch-1.parquet", "manifest.json"]
    assert st.check().status == "healthy"
    assert con.execute(f"SELECT count(*) FROM read_parquet('{url}')").fetchone() == (1000,)


def test_frozen_server_times_out_within_bounds(s3):
    st = make_storage(s3, "frozen", request_timeout=1, connect_timeout=1, max_attempts=2, retry_deadline_s=4)
    st.write_atomic("t/x", b"before")
    con = duck(st)
    s3.pause()
    try:
        started = time.monotonic()
        with pytest.raises(S3StorageError) as info:
            st.read("t/x")
        assert time.monotonic() - started < 8
        assert info.value.transient and s3.secret_key not in str(info.value)
        started = time.monotonic()
        with pytest.raises(S3StorageError):
            st.write_atomic("t/y", b"while frozen")
        assert time.monotonic() - started < 20
    finally:
        s3.resume()
    assert st.read("t/x") == b"before"
    assert con.execute("SELECT 1").fetchone() == (1,)
