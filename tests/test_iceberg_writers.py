"""Several tierd daemons, one Iceberg table (issue 17): two daemons owning disjoint keys publish
into one table through a shared PostgreSQL catalog while both flush and compact; and a catalog
that goes down while flushes go on, then comes back and is caught up."""
from __future__ import annotations

import os
import threading

from tests.daemon import wait_for
from tests.iceberg_readers import assert_same, catalog, duckdb_rows, pyiceberg_rows, tierd_rows, wait_published
from tests.pgserver import pg  # noqa: F401 - the module's PostgreSQL fixture

COLUMNS = ["id", "shard", "n", "_seq"]
CREATE = "CREATE TABLE app.events (id BIGINT PRIMARY KEY, shard TEXT, n BIGINT) WITH (FLUSH_POLICY = 'manual')"


def config(pg, node: str) -> str:
    return ("[jobs]\nretry_backoff_seconds = 0.2\nretry_backoff_max_seconds = 1\n"
            f'[iceberg]\ncatch_up_interval_seconds = 1\ncatalog_uri = "{pg.catalog_uri}"\nnode_id = "{node}"\n')


def shard_work(d, shard: str, base: int, errors: list) -> None:
    """Rounds of inserts, updates and deletes of this shard's keys, each flushed; a compaction."""
    try:
        with d.connect() as c:
            for r in range(4):
                lo = base + r * 100
                c.execute(f"INSERT INTO app.events SELECT i, '{shard}', {r} FROM range({lo}, {lo + 100}) r(i)")
                if r:
                    c.execute(f"UPDATE app.events SET n = n + 10 WHERE id BETWEEN {base} AND {base + 30 * r}")
                    c.execute(f"DELETE FROM app.events WHERE id BETWEEN {lo - 5} AND {lo - 1}")
                assert c.execute("STORAGE FLUSH TABLE app.events WAIT").fetchone()[1] == "completed"
                if r == 2:
                    assert c.execute("STORAGE COMPACT TABLE app.events WAIT").fetchone()[1] == "completed"
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


def test_two_daemons_publish_disjoint_keys_into_one_table(make_tierd, pg, tmp_path):  # noqa: F811
    a = make_tierd(config(pg, "shard-a"), data_dir=str(tmp_path / "a")).start()
    b = make_tierd(config(pg, "shard-b"), data_dir=str(tmp_path / "b")).start()
    for d in (a, b):
        with d.connect() as c:
            c.execute("CREATE NAMESPACE app")
            c.execute(CREATE)
    errors: list = []
    threads = [threading.Thread(target=shard_work, args=(a, "a", 1, errors)),
               threading.Thread(target=shard_work, args=(b, "b", 1_000_001, errors))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=240)
    assert not errors, errors
    cat = catalog(pg.catalog_uri)
    want = []
    for d in (a, b):
        with d.connect() as c:
            wait_published(c, "app.events")
            want += tierd_rows(c, "app.events", COLUMNS)
    want.sort()
    # Each daemon's wait saw its own commits land; the other's may have landed after: re-check both.
    for d in (a, b):
        with d.connect() as c:
            wait_published(c, "app.events")
    got = pyiceberg_rows(cat, "app.events", COLUMNS)
    assert got == want
    assert duckdb_rows(cat.load_table("app.events").metadata_location, COLUMNS) == want
    ids = [r[0] for r in got]
    assert len(ids) == len(set(ids)) and {r[1] for r in got} == {"a", "b"}
    table = cat.load_table("app.events")
    nodes = {s.summary["tierd.node-id"] for s in table.metadata.snapshots}
    assert nodes == {"shard-a", "shard-b"}
    # each daemon's files are under its own storage, its delete files carry its node id
    for task in table.scan().plan_files():
        owner = "a" if task.file.file_path.startswith(str(tmp_path / "a")) else "b"
        assert task.file.file_path.startswith(str(tmp_path / owner))
        for dfile in task.delete_files:
            assert f"/deletes/shard-{owner}/" in dfile.file_path


def test_catalog_down_during_flushes_then_catch_up(make_tierd, pg, tmp_path):  # noqa: F811
    d = make_tierd(config(pg, "solo"), data_dir=str(tmp_path / "solo")).start()
    cat = catalog(pg.catalog_uri)
    with d.connect() as c:
        c.execute("CREATE NAMESPACE solo")
        c.execute(CREATE.replace("app.events", "solo.events"))
        c.execute("INSERT INTO solo.events SELECT i, 's', 0 FROM range(1, 101) r(i)")
        c.execute("STORAGE FLUSH TABLE solo.events WAIT")
        assert_same(c, cat, "solo.events", COLUMNS)
        pg.stop()
        try:
            for r in range(1, 4):  # flushes go on without the catalog
                c.execute(f"UPDATE solo.events SET n = {r} WHERE id <= {20 * r}")
                c.execute(f"INSERT INTO solo.events SELECT i, 's', {r} FROM range({100 * r + 1}, {100 * r + 51}) r(i)")
                assert c.execute("STORAGE FLUSH TABLE solo.events WAIT").fetchone()[1] == "completed"
            wait_for(lambda: c.execute(
                "SELECT count(*) FROM system.jobs WHERE job_type = 'publish' AND table_name = 'solo.events' "
                "AND status IN ('retrying', 'failed') AND message ILIKE '%connect%'").fetchone()[0],
                timeout=60, what="a publish job failing on the catalog")
            assert c.execute("SELECT iceberg_lag FROM system.tables WHERE namespace = 'solo'").fetchone()[0] == 3
            assert c.execute("SELECT count(*) FROM solo.events").fetchone()[0] == 250  # reads never need it
        finally:
            pg.start()
        rows = assert_same(c, cat, "solo.events", COLUMNS)
        assert len(rows) == 250
        assert os.path.isdir(str(tmp_path / "solo" / "storage" / "solo" / "events" / "__iceberg" / "metadata"))
