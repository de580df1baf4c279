"""Iceberg publishing (issue 17): after every flush and compaction, the table's Iceberg snapshot
shows exactly what tierd's SELECT shows, read by pyiceberg and by DuckDB's iceberg_scan, on a
local storage and on S3 (SeaweedFS); crashes between the manifest commit and the Iceberg
commit publish each file once; per-table options and the SQL surface."""
from __future__ import annotations

import json

import psycopg
import pytest

from tests.daemon import wait_for
from tests.iceberg_readers import assert_same, catalog, sqlite_uri, wait_published
from tests.s3server import s3  # noqa: F401 - the module's SeaweedFS fixture

COLUMNS = ["id", "name", "score", "amount", "seen", "ok", "_seq"]
CREATE = ("CREATE TABLE {t} (id BIGINT PRIMARY KEY, name TEXT, score DOUBLE, amount DECIMAL(10,2), "
          "seen TIMESTAMPTZ, ok BOOLEAN) WITH (FLUSH_POLICY = 'manual'{extra})")
FAST = "[jobs]\nretry_backoff_seconds = 0.2\n[iceberg]\ncatch_up_interval_seconds = 1\n"


def insert(conn, t: str, lo: int, hi: int, tag: str = "v") -> None:
    conn.execute(f"INSERT INTO {t} SELECT i, '{tag}' || i, i * 0.5, i * 1.25, "
                 f"TIMESTAMPTZ '2026-01-01 00:00:00+00' + i * INTERVAL 1 MINUTE, i % 2 = 0 "
                 f"FROM range({lo}, {hi}) r(i)")


def flush(conn, t: str) -> None:
    assert conn.execute(f"STORAGE FLUSH TABLE {t} WAIT").fetchone()[1] == "completed"


def lifecycle(conn, cat, t: str, s3=None) -> None:
    """insert, flush; update and delete flushed rows, flush; again; compact; update, flush:
    tierd and both readers agree after each commit."""
    insert(conn, t, 1, 301)
    flush(conn, t)
    assert_same(conn, cat, t, COLUMNS, s3)
    conn.execute(f"UPDATE {t} SET name = 'upd', score = score + 1 WHERE id <= 20")
    conn.execute(f"DELETE FROM {t} WHERE id BETWEEN 100 AND 109")
    insert(conn, t, 301, 351)
    flush(conn, t)
    assert_same(conn, cat, t, COLUMNS, s3)
    conn.execute(f"UPDATE {t} SET name = 'again' WHERE id BETWEEN 10 AND 30")  # some updated twice
    conn.execute(f"DELETE FROM {t} WHERE id BETWEEN 340 AND 345")  # rows of the last flush
    conn.execute(f"DELETE FROM {t} WHERE id = 1")
    insert(conn, t, 100, 103, "back")  # deleted keys come back
    flush(conn, t)
    rows = assert_same(conn, cat, t, COLUMNS, s3)
    assert len(rows) == 300 + 50 - 10 - 6 - 1 + 3
    assert conn.execute(f"STORAGE COMPACT TABLE {t} WAIT").fetchone()[1] == "completed"
    assert_same(conn, cat, t, COLUMNS, s3)
    ident = cat.load_table(t)
    live = [task.file.file_path for task in ident.scan().plan_files()]
    segments = json.loads(conn.execute(
        "SELECT manifest_json FROM system.manifest WHERE namespace || '.' || table_name = %s", (t,)).fetchone()[0])
    assert sorted(p.rsplit("/", 1)[1] for p in live) == sorted(s["path"] for s in segments["segments"])
    assert all(not task.delete_files for task in ident.scan().plan_files()), "compaction leaves no deletes"
    conn.execute(f"UPDATE {t} SET name = 'after' WHERE id BETWEEN 200 AND 210")
    flush(conn, t)
    assert_same(conn, cat, t, COLUMNS, s3)


@pytest.fixture(scope="module")
def local(module_make_tierd):
    d = module_make_tierd(FAST).start()
    with d.connect() as c:
        c.execute("CREATE NAMESPACE app")
    return d


def test_shared_table_on_local_storage(local):
    cat = catalog(sqlite_uri(local.data_dir))
    with local.connect() as c:
        c.execute(CREATE.format(t="app.items", extra=""))
        lifecycle(c, cat, "app.items")
        # what SQL shows of it
        ident, snap, lag = c.execute("SELECT iceberg_table, iceberg_snapshot_id, iceberg_lag FROM system.tables "
                                     "WHERE table_name = 'items'").fetchone()
        assert (ident, lag) == ("app.items", 0)
        assert snap == cat.load_table("app.items").metadata.current_snapshot_id
        snaps = c.execute("SELECT snapshot_id, operation, node_id, deleted_data_files, is_current "
                          "FROM system.iceberg_snapshots WHERE table_name = 'items' ORDER BY sequence_number").fetchall()
        assert len(snaps) == 5 and [s[0] for s in snaps if s[4]] == [snap]
        assert snaps[0][1] == "append" and snaps[3][3] > 0  # the compaction removed files
        assert len({s[2] for s in snaps}) == 1 and snaps[0][2].startswith("node-")
        # the Iceberg metadata sits beside the segments
        location = cat.load_table("app.items").location()
        assert location == f"{local.data_dir}/storage/app/items/__iceberg"
        # STORAGE PUBLISH with nothing new
        job_id, status, message = c.execute("STORAGE PUBLISH TABLE app.items WAIT").fetchone()
        assert job_id.startswith("IP-") and status == "skipped" and "no unpublished commits" in message


def test_user_table_publishes_every_scope_with_the_owner_column(local):
    cat = catalog(sqlite_uri(local.data_dir))
    with local.connect() as c:
        c.execute("CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT) WITH (FLUSH_POLICY = 'manual')")
        for role in ("alice", "bob"):
            c.execute(f"CREATE USER {role}")
            c.execute(f"GRANT ALL ON app.notes TO {role}")
        for role in ("alice", "bob"):
            with local.connect_as(role) as u:
                u.execute(f"INSERT INTO app.notes SELECT i, '{role} ' || i FROM range(1, 51) r(i)")
        flush(c, "app.notes")
        cols = ["_user_id", "id", "body", "_seq"]
        assert_same(c, cat, "app.notes", cols)
        with local.connect_as("alice") as u:
            u.execute("UPDATE app.notes SET body = 'edited' WHERE id <= 5")
            u.execute("DELETE FROM app.notes WHERE id > 45")
        flush(c, "app.notes")
        rows = assert_same(c, cat, "app.notes", cols)
        assert len(rows) == 95 and sum(1 for r in rows if r[2] == "edited") == 5


def test_table_options(local):
    """ICEBERG = 'off' publishes nothing; ICEBERG_TABLE names the Iceberg table; DROP TABLE drops
    it (refusals and system.tables: tests/sql/iceberg/options.test)."""
    cat = catalog(sqlite_uri(local.data_dir))
    with local.connect() as c:
        c.execute(CREATE.format(t="app.quiet", extra=", ICEBERG = 'off'"))
        c.execute(CREATE.format(t="app.named", extra=", ICEBERG_TABLE = 'lake.named_events'"))
        for t in ("app.quiet", "app.named"):
            insert(c, t, 1, 11)
            flush(c, t)
        assert_same(c, cat, "app.named", COLUMNS, identifier="lake.named_events")
        assert not cat.table_exists("app.quiet")
        assert c.execute("STORAGE PUBLISH TABLE app.quiet WAIT").fetchone()[1] == "skipped"
        c.execute("DROP TABLE app.named")
        assert not cat.table_exists("lake.named_events")


def test_truncate_before_any_flush_publishes_once(local):
    """A manifest commit without cold data (TRUNCATE of a never-flushed table, as `pgbench -i`
    does) is published once: before the fix, each publish found the table stale again and
    submitted the next one, forever, taking the daemon's CPU from its clients."""
    with local.connect() as c:
        c.execute(CREATE.format(t="app.fresh", extra=""))
        insert(c, "app.fresh", 1, 11)
        c.execute("TRUNCATE app.fresh")
        jobs = ("SELECT count(*) FILTER (WHERE status IN ('pending', 'running')), count(*) FROM system.jobs "
                "WHERE job_type = 'publish' AND table_name = 'app.fresh'")
        wait_for(lambda: c.execute("SELECT iceberg_lag FROM system.tables WHERE table_name = 'fresh'").fetchone()[0] == 0
                 and c.execute(jobs).fetchone()[0] == 0, what="the TRUNCATE published")
        job_id, status, message = c.execute("STORAGE PUBLISH TABLE app.fresh WAIT").fetchone()
        assert status == "skipped" and "no unpublished commits" in message, message
        assert c.execute(jobs).fetchone()[1] <= 3


def iceberg_fields(cat, identifier: str) -> dict[str, int]:
    return {f.name: f.field_id for f in cat.load_table(identifier).schema().fields}


def test_alter_table_evolves_the_iceberg_schema_by_column_id(local):
    """RENAME / ADD / DROP COLUMN and widenings: the Iceberg schema follows by column id (the
    field id of a column is its id), old files read under the new schema; an ADD COLUMN with
    a DEFAULT and a widening Iceberg does not allow wait for the compaction that rewrites the
    old files; TRUNCATE empties the Iceberg table, DROP TABLE drops it."""
    cat = catalog(sqlite_uri(local.data_dir))
    t = "app.evolve"
    with local.connect() as c:
        c.execute(f"CREATE TABLE {t} (id BIGINT PRIMARY KEY, a INTEGER, b TEXT, c REAL, x INTEGER) "
                  "WITH (FLUSH_POLICY = 'manual')")
        c.execute(f"INSERT INTO {t} SELECT i, i * 10, 'b' || i, i / 4, i FROM range(1, 101) r(i)")
        flush(c, t)
        assert_same(c, cat, t, ["id", "a", "b", "c", "x", "_seq"])
        assert iceberg_fields(cat, t) == {"id": 1, "a": 2, "b": 3, "c": 4, "x": 5, "_seq": 2_000_000_002}
        # without a flush: the schema alone follows
        c.execute(f"ALTER TABLE {t} RENAME COLUMN b TO label")
        c.execute(f"ALTER TABLE {t} DROP COLUMN c")
        c.execute(f"ALTER TABLE {t} ALTER COLUMN a TYPE BIGINT")  # int -> long: Iceberg reads old files so
        c.execute(f"ALTER TABLE {t} ADD COLUMN note TEXT")
        cols = ["id", "a", "label", "x", "note", "_seq"]
        assert_same(c, cat, t, cols)
        assert iceberg_fields(cat, t) == {"id": 1, "a": 2, "label": 3, "x": 5, "note": 6, "_seq": 2_000_000_002}
        # new rows and updates of old ones under the new schema
        c.execute(f"INSERT INTO {t} VALUES (200, 5000000000, 'new', 1, 'n')")
        c.execute(f"UPDATE {t} SET note = 'upd', label = 'L' WHERE id <= 10")
        c.execute(f"DELETE FROM {t} WHERE id BETWEEN 50 AND 54")
        flush(c, t)
        rows = assert_same(c, cat, t, cols)
        assert len(rows) == 96 and (200, 5000000000, "new", 1, "n") == rows[-1][:5]
        # old rows would read NULL / an int file column as DOUBLE: published once rewritten
        c.execute(f"ALTER TABLE {t} ADD COLUMN d INTEGER DEFAULT 7")
        c.execute(f"ALTER TABLE {t} ALTER COLUMN x TYPE DOUBLE")
        cols += ["d"]
        rows = assert_same(c, cat, t, cols)
        assert {r[6] for r in rows} == {7} and isinstance(rows[0][3], float)
        assert iceberg_fields(cat, t)["d"] == 7
        # TRUNCATE: the Iceberg table is emptied (a snapshot without files)
        before = cat.load_table(t).metadata.current_snapshot_id
        c.execute(f"TRUNCATE {t}")
        assert assert_same(c, cat, t, cols) == []
        table = cat.load_table(t)
        assert table.metadata.current_snapshot_id != before and not list(table.scan().plan_files())
        c.execute(f"INSERT INTO {t} (id, a, label) VALUES (1, 1, 'again')")
        flush(c, t)
        assert len(assert_same(c, cat, t, cols)) == 1
        # DROP TABLE: the Iceberg table goes with the table's files
        c.execute(f"DROP TABLE {t}")
        assert not cat.table_exists(t)


@pytest.mark.parametrize("point", ["flush.after_manifest", "publish.before_commit", "publish.after_commit"])
def test_kill_between_manifest_commit_and_iceberg_commit(make_tierd, point):
    """A crash anywhere between the manifest commit and the record of the Iceberg commit: after
    restart every segment is in the Iceberg table once, and the rows are tierd's."""
    d = make_tierd(FAST + f'[failpoints]\n"{point}" = "crash"\n').start()
    with d.connect() as c:
        c.execute("CREATE NAMESPACE app")
        c.execute(CREATE.format(t="app.k", extra=""))
        insert(c, "app.k", 1, 101)
        try:
            c.execute("STORAGE FLUSH TABLE app.k WAIT")
        except psycopg.OperationalError:
            pass  # flush.after_manifest: the daemon died under the flush
    assert d.wait_exit(60) == 137
    d.stop()
    again = make_tierd(FAST, data_dir=d.data_dir)
    again.port = d.port
    again.start()
    cat = catalog(sqlite_uri(d.data_dir))
    with again.connect() as c:
        rows = assert_same(c, cat, "app.k", COLUMNS)
        assert len(rows) == 100
        table = cat.load_table("app.k")
        assert [len(list(table.scan().plan_files()))] == [1]
        added = [int(s.summary["added-data-files"]) for s in table.metadata.snapshots
                 if s.summary and "added-data-files" in s.summary.additional_properties]
        assert added == [1], f"the segment was published {added} times"
        # and the next commit still follows
        c.execute("UPDATE app.k SET name = 'later' WHERE id < 10")
        flush(c, "app.k")
        assert_same(c, cat, "app.k", COLUMNS)


def test_s3_storage(module_make_tierd, s3):  # noqa: F811 - the fixture
    d = module_make_tierd(FAST, data_dir=str(s3.workdir) + "/tierd").start()
    cfg = json.dumps(s3.storage_config())
    with d.connect() as c:
        c.execute("CREATE NAMESPACE lake")
        c.execute(f"CREATE STORAGE objects TYPE 's3' BASE_DIRECTORY '{s3.base}/tierd' CONFIG '{cfg}'")
        c.execute(CREATE.format(t="lake.items", extra=", STORAGE_ID = 'objects'"))
        cat = catalog(sqlite_uri(d.data_dir), s3)
        lifecycle(c, cat, "lake.items", s3)
        location = cat.load_table("lake.items").location()
        assert location == f"{s3.base}/tierd/lake/items/__iceberg"
        wait_for(lambda: wait_published(c, "lake.items"), what="published")
