"""Named storages on a real S3 server (SeaweedFS on 127.0.0.1): seed §2 end to end, a join
across storages, S3 going down during a flush and during a query, and a restart of tierd."""
import json
import os
from collections import Counter

import psycopg
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tests.daemon import wait_for
from tests.s3server import s3  # noqa: F401  (module-scoped SeaweedFS fixture)

FAST_RETRIES = "[jobs]\nmax_retries = 0\n"


def objects(server, prefix: str) -> list[str]:
    """Object names under `prefix` in the bucket, read directly from S3, not through tierd."""
    fs = server.filesystem()
    infos = fs.get_file_info(pafs.FileSelector(f"{server.bucket}/{prefix}", allow_not_found=True, recursive=True))
    return sorted(i.path.split(f"{server.bucket}/{prefix}/", 1)[1] for i in infos if i.type == pafs.FileType.File)


def s3_versions(server, prefix: str) -> list[tuple]:
    fs = server.filesystem()
    out = []
    for name in objects(server, prefix):
        if name.endswith(".parquet"):
            t = pq.read_table(f"{server.bucket}/{prefix}/{name}", filesystem=fs, columns=["id", "_seq"])
            out += list(zip(t.column("id").to_pylist(), t.column("_seq").to_pylist()))
    return out


def create_s3_storage(c, server, sid="s3_archive", prefix="archive"):
    config = json.dumps(server.storage_config())
    c.execute(f"CREATE STORAGE {sid} TYPE 's3' BASE_DIRECTORY '{server.base}/{prefix}' CONFIG '{config}' "
              "NAME 'S3 archive'")


def test_seed_2_two_storages_each_in_its_own_place(make_tierd, tmp_path, s3):
    d = make_tierd().start()
    fast = tmp_path / "fast_ssd"
    with d.connect() as c:
        c.execute(f"CREATE STORAGE fast_ssd TYPE 'filesystem' PATH '{fast}'")
        create_s3_storage(c, s3)
        c.execute("CREATE NAMESPACE app")
        c.execute("CREATE TABLE app.a (id BIGINT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'fast_ssd')")
        c.execute("CREATE TABLE app.b (id BIGINT PRIMARY KEY, w TEXT) WITH (STORAGE_ID = 's3_archive')")
        c.execute("INSERT INTO app.a SELECT i, 'a' || i FROM range(100) t(i)")
        c.execute("INSERT INTO app.b SELECT i, 'b' || i FROM range(50, 150) t(i)")
        for table in ("app.a", "app.b"):
            assert c.execute(f"STORAGE FLUSH TABLE {table} WAIT").fetchone()[1] == "completed"
        # Files land in each storage's own place, checked without tierd.
        assert sorted(os.listdir(fast / "app" / "a")) == ["batch-0.parquet", "manifest.json"]
        assert objects(s3, "archive/app/b") == ["batch-0.parquet", "manifest.json"]
        assert objects(s3, "archive/app/a") == [] and not (fast / "app" / "b").exists()
        assert not os.path.exists(os.path.join(d.data_dir, "storage", "app"))
        # A join across storages with hot and cold rows on both sides.
        c.execute("INSERT INTO app.a VALUES (1000, 'hot a')")
        c.execute("INSERT INTO app.b VALUES (1000, 'hot b')")
        c.execute("UPDATE app.b SET w = 'updated' WHERE id = 60")
        rows = c.execute("SELECT a.id, a.v, b.w FROM app.a a JOIN app.b b USING (id) ORDER BY id").fetchall()
        assert len(rows) == 51 and rows[0] == (50, "a50", "b50") and rows[-1] == (1000, "hot a", "hot b")
        assert (60, "a60", "updated") in rows
        assert c.execute("STORAGE CHECK s3_archive").fetchone()[1] == "healthy"
        cfg = c.execute("SELECT config FROM system.storages WHERE storage_id = 's3_archive'").fetchone()[0]
        assert s3.secret_key not in cfg and "********" in cfg
        c.execute("STORAGE FLUSH TABLE app.b WAIT")
        m = json.loads(s3.filesystem().open_input_stream(f"{s3.bucket}/archive/app/b/manifest.json").read())
        assert m["table_id"] == "app.b" and m["version"] == 2
    assert s3.secret_key not in d.output()
    versions = s3_versions(s3, "archive/app/b")
    assert not [v for v, n in Counter(versions).items() if n > 1]


def test_s3_down_during_flush_then_retry_and_queries_fail_clearly(make_tierd, tmp_path, s3):
    data = str(tmp_path / "data")
    d = make_tierd(FAST_RETRIES + '[failpoints]\n"flush.before_parquet" = "sleep:1500"\n', data_dir=data).start()
    with d.connect() as c:
        create_s3_storage(c, s3, sid="s3_down", prefix="down")
        c.execute("CREATE TABLE public.t (id BIGINT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 's3_down')")
        c.execute("CREATE TABLE public.local_t (id BIGINT PRIMARY KEY)")
        c.execute("INSERT INTO t SELECT i, 'first' FROM range(20) t(i)")
        assert c.execute("STORAGE FLUSH TABLE public.t WAIT").fetchone()[1] == "completed"
        c.execute("INSERT INTO t SELECT i, 'second' FROM range(20, 40) t(i)")
        c.execute("INSERT INTO local_t VALUES (1)")
        before = c.execute("SELECT * FROM t ORDER BY id").fetchall()
        job_id = c.execute("STORAGE FLUSH TABLE public.t").fetchone()[0]
        wait_for(lambda: c.execute("SELECT status FROM system.jobs WHERE job_id = %s", (job_id,)).fetchone()
                 == ("running",), timeout=30, what="the flush to run")
        s3.stop()
        try:
            status, message = wait_for(
                lambda: c.execute("SELECT status, message FROM system.jobs WHERE job_id = %s AND status IN "
                                  "('failed', 'completed')", (job_id,)).fetchone(), timeout=60, what="the job to fail")
            assert status == "failed" and s3.endpoint.split("//")[1] in message
            assert s3.secret_key not in message
            # A query that needs S3 fails with a clear error; a local table still answers.
            with pytest.raises(psycopg.Error) as info:
                c.execute("SELECT count(*) FROM t")
            assert s3.secret_key not in str(info.value)
            assert c.execute("SELECT count(*) FROM local_t").fetchone() == (1,)
        finally:
            s3.start()
        assert c.execute("SELECT * FROM t ORDER BY id").fetchall() == before  # nothing visible changed
        c.execute(f"RETRY JOB '{job_id}'")
        wait_for(lambda: c.execute("SELECT status FROM system.jobs WHERE job_id = %s", (job_id,)).fetchone()
                 == ("completed",), timeout=60, what="the retry to complete")
        assert c.execute("SELECT * FROM t ORDER BY id").fetchall() == before
    d.stop()
    assert s3.secret_key not in d.output()
    versions = s3_versions(s3, "down/public/t")
    assert sorted(k for k, _ in versions) == list(range(40))  # each row once in S3
    # Restart: storages and tables come back from tierd's own catalog.
    d2 = make_tierd(data_dir=data).start()
    with d2.connect() as c:
        assert c.execute("SELECT * FROM t ORDER BY id").fetchall() == before
        assert c.execute("SELECT storage_type, base_directory FROM system.storages WHERE storage_id = 's3_down'"
                         ).fetchone() == ("s3", f"{s3.base}/down")
