"""Hot and cold as one table: the seed's §4 scenario and the read-path invariants.

One daemon serves the module (`module_tierd`); each test has its own tables."""
import psycopg
import pytest

from tests.helpers import assert_cold_consistent, manifest


def rows(conn, sql, params=None):
    return conn.execute(sql, params).fetchall()


def flush(conn, table):
    job_id, status, message = conn.execute(f"STORAGE FLUSH TABLE {table} WAIT").fetchone()
    assert status == "completed", message
    assert job_id.startswith("FL-") and len(job_id) == 15
    return job_id


def create_events(conn, table):
    conn.execute("CREATE NAMESPACE IF NOT EXISTS app")
    conn.execute(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, body TEXT, n INT) WITH (FLUSH_POLICY = 'manual')")


def test_seed_4_query_spans_hot_and_cold(module_tierd, db):
    tierd, conn = module_tierd, db
    create_events(conn, "app.events")
    cur = conn.execute("INSERT INTO app.events VALUES (1, 'a', 10), (2, 'b', 20), (3, 'c', 30)")
    assert cur.statusmessage == "INSERT 0 3"
    assert manifest(tierd.data_dir, "app", "events") is None  # no manifest before the first flush
    flush(conn, "app.events")
    m = manifest(tierd.data_dir, "app", "events")
    assert m["table_id"] == "app.events" and m["version"] == 1
    assert [s["path"] for s in m["segments"]] == ["batch-0.parquet"]
    assert m["segments"][0]["row_count"] == 3
    assert m["segments"][0]["column_stats"]["id"] == {"min": 1, "max": 3, "null_count": 0}
    conn.execute("INSERT INTO app.events VALUES (4, 'd', 40), (5, 'e', 50)")
    assert rows(conn, "SELECT id, body FROM app.events ORDER BY id") == [
        (1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]
    assert rows(conn, "SELECT count(*), sum(n) FROM app.events") == [(5, 150)]
    # Hidden system columns are selectable but not part of SELECT *.
    assert [d.name for d in conn.execute("SELECT * FROM app.events").description] == ["id", "body", "n"]
    seqs = rows(conn, "SELECT id, _seq, _deleted FROM app.events ORDER BY id")
    assert [s[0] for s in seqs] == [1, 2, 3, 4, 5]
    assert all(s[2] is False for s in seqs)
    assert seqs[3][1] > seqs[2][1]  # newer writes carry larger _seq
    # A join of the table with itself across tiers.
    assert rows(conn, "SELECT count(*) FROM app.events a JOIN app.events b ON a.id = b.id") == [(5,)]
    assert rows(conn, "SELECT hot_rows, cold_rows, segments FROM system.tables WHERE table_name = 'events'") == [(2, 3, 1)]
    assert_cold_consistent(tierd.data_dir, "app", "events")


def test_update_and_delete_of_flushed_rows_survive_later_flushes(module_tierd, db):
    tierd, conn = module_tierd, db
    create_events(conn, "app.versions")
    conn.execute("INSERT INTO app.versions SELECT i, 'v' || i, i FROM range(1, 101) t(i)")
    flush(conn, "app.versions")
    assert conn.execute("UPDATE app.versions SET body = 'new' WHERE id <= 10").statusmessage == "UPDATE 10"
    assert conn.execute("DELETE FROM app.versions WHERE id > 90").statusmessage == "DELETE 10"
    expected = [(i, "new" if i <= 10 else f"v{i}") for i in range(1, 91)]
    assert rows(conn, "SELECT id, body FROM app.versions ORDER BY id") == expected
    flush(conn, "app.versions")
    assert rows(conn, "SELECT id, body FROM app.versions ORDER BY id") == expected
    for round_ in range(3):
        conn.execute("INSERT INTO app.versions VALUES (%s, 'later', 0)", (1000 + round_,))
        flush(conn, "app.versions")
    got = rows(conn, "SELECT id, body FROM app.versions WHERE id < 1000 ORDER BY id")
    assert got == expected
    assert rows(conn, "SELECT count(*) FROM app.versions WHERE id > 90 AND id < 1000") == [(0,)]
    # A deleted row can come back with a new insert, and is then visible once.
    conn.execute("INSERT INTO app.versions VALUES (95, 'back', 1)")
    flush(conn, "app.versions")
    assert rows(conn, "SELECT id, body FROM app.versions WHERE id = 95") == [(95, "back")]
    assert rows(conn, "SELECT count(*), count(DISTINCT id) FROM app.versions") == [(94, 94)]
    assert_cold_consistent(tierd.data_dir, "app", "versions")


def test_insert_returning_defaults_and_params(db):
    conn = db
    conn.execute("CREATE TABLE public.notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL, "
                 "created TIMESTAMPTZ DEFAULT now(), score DOUBLE DEFAULT 1.5)")
    cur = conn.execute("INSERT INTO notes (id, body) VALUES (%s, %s), (%s, %s) RETURNING id, score",
                       (1, "x", 2, "y"))
    assert cur.statusmessage == "INSERT 0 2"
    assert cur.fetchall() == [(1, 1.5), (2, 1.5)]
    with pytest.raises(psycopg.errors.NotNullViolation):
        conn.execute("INSERT INTO notes (id) VALUES (3)")
    cur = conn.execute("DELETE FROM notes WHERE id = %s RETURNING body", (2,))
    assert cur.statusmessage == "DELETE 1" and cur.fetchall() == [("x" if False else "y",)]
    cur = conn.execute("UPDATE notes SET score = score * 2 WHERE id = 1 RETURNING id, score")
    assert cur.statusmessage == "UPDATE 1" and cur.fetchall() == [(1, 3.0)]
    assert conn.execute("SELECT created IS NOT NULL FROM notes").fetchall() == [(True,)]


def test_acknowledged_write_visible_to_next_statement_of_any_session_under_load(module_tierd):
    tierd = module_tierd
    import threading

    with tierd.connect() as w, tierd.connect() as r:
        w.execute("CREATE TABLE public.vis (id BIGINT PRIMARY KEY)")
        stop = threading.Event()
        errors = []

        def reader():
            with tierd.connect() as c:
                while not stop.is_set():
                    try:
                        c.execute("SELECT count(*) FROM vis").fetchone()
                    except Exception as exc:  # surfaced below
                        errors.append(exc)
                        return

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for i in range(300):
                w.execute("INSERT INTO vis VALUES (%s)", (i,))
                assert r.execute("SELECT count(*) FROM vis WHERE id = %s", (i,)).fetchone() == (1,), i
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert not errors
