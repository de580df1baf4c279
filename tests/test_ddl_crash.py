"""A crash at each step of a schema change leaves the old or the new schema, never a mix:
ALTER TABLE around its catalog commit, and a transaction with DDL (pandas' replace) around its
one WriteBatch. The daemon crashes at a failpoint (as kill -9 would) and starts again on the
same data dir without it."""
from __future__ import annotations

import psycopg
import pytest

from tests.helpers import assert_cold_consistent

SETUP = ["CREATE NAMESPACE app",
         "CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT) WITH (FLUSH_POLICY = 'manual')",
         "INSERT INTO app.t SELECT i, 'cold' FROM range(0, 50) r(i)",
         "STORAGE FLUSH TABLE app.t WAIT",
         "INSERT INTO app.t SELECT i, 'hot' FROM range(50, 60) r(i)"]
OLD = [(i, "cold" if i < 50 else "hot") for i in range(60)]


def crash_at(make_tierd, step: str, statements: list[str]) -> str:
    d = make_tierd(f'[failpoints]\n"{step}" = "crash"\n').start()
    with d.connect() as c:
        for sql in SETUP:
            c.execute(sql)
    with pytest.raises(psycopg.OperationalError):
        with d.connect() as c:
            for sql in statements:
                c.execute(sql)
    assert d.wait_exit() != 0
    return d.data_dir


@pytest.mark.parametrize("step, changed", [("alter.before_commit", False), ("alter.after_commit", True)])
def test_crash_during_alter_table(make_tierd, step, changed):
    data = crash_at(make_tierd, step, ["ALTER TABLE app.t RENAME COLUMN v TO label"])
    d = make_tierd(data_dir=data).start()
    with d.connect() as c:
        column = "label" if changed else "v"
        assert c.execute(f"SELECT id, {column} FROM app.t ORDER BY id").fetchall() == OLD
        c.execute("ALTER TABLE app.t ADD COLUMN n INT DEFAULT 1")
        c.execute("STORAGE FLUSH TABLE app.t WAIT")
        c.execute("STORAGE COMPACT TABLE app.t WAIT")
        assert c.execute(f"SELECT id, {column} FROM app.t ORDER BY id").fetchall() == OLD
        assert c.execute("SELECT count(*) FROM app.t WHERE n = 1").fetchone() == (60,)
    assert_cold_consistent(data, "app", "t")


@pytest.mark.parametrize("step, replaced", [("commit.before_ddl_batch", False), ("commit.after_ddl_batch", True)])
def test_crash_during_commit_of_drop_create_insert(make_tierd, step, replaced):
    data = crash_at(make_tierd, step, [
        "BEGIN", "DROP TABLE app.t", "CREATE TABLE app.t (id BIGINT PRIMARY KEY, w DOUBLE)",
        "INSERT INTO app.t VALUES (1, 0.5), (2, 1.5)", "COMMIT"])
    d = make_tierd(data_dir=data).start()
    with d.connect() as c:
        rows = c.execute("SELECT * FROM app.t ORDER BY id").fetchall()
        assert rows == ([(1, 0.5), (2, 1.5)] if replaced else OLD)
        c.execute("STORAGE FLUSH TABLE app.t WAIT")  # the replaced table's files are gone or orphans
        assert c.execute("SELECT * FROM app.t ORDER BY id").fetchall() == rows
    d.restart()
    with d.connect() as c:
        assert c.execute("SELECT * FROM app.t ORDER BY id").fetchall() == rows
    assert_cold_consistent(data, "app", "t")
