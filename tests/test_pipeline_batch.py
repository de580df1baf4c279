"""Batched INSERTs of a pipelined executemany (protocol/server.py PendingBatch, engine
EngineSession.execute_batch): the outcome must be that of one INSERT per Execute, as Postgres.

psycopg (pipeline mode, and executemany outside it, which pipelines too) and asyncpg send
Bind/Execute per row and one Sync at the end; the server holds those Executes and appends
them as one batch. Each test checks something a wrong batch would break: row contents and
types, a duplicate key or NULL in the middle (the whole implicit transaction rolled back,
the right SQLSTATE, the connection usable after), other statements interleaved, RETURNING.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import asyncpg
import psycopg
import pytest

COLUMNS = "id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION, n NUMERIC(10,2), ok BOOLEAN, " \
          "ts TIMESTAMP, d DATE, tag TEXT DEFAULT 'dflt' NOT NULL"
INSERT = "INSERT INTO {} (id, v, x, n, ok, ts, d) VALUES (%s, %s, %s, %s, %s, %s, %s)"


def sample_rows(n: int, start: int = 0) -> list[tuple]:
    base = dt.datetime(2024, 5, 1, 12, 0, 0)
    return [(i, None if i % 7 == 0 else f"row-{i}", i * 0.5, Decimal(i) / 4, i % 2 == 0,
             base + dt.timedelta(seconds=i), (base + dt.timedelta(days=i % 40)).date())
            for i in range(start, start + n)]


def make_table(conn: psycopg.Connection, name: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} ({COLUMNS})")


def contents(conn: psycopg.Connection, name: str) -> list[tuple]:
    return conn.execute(f"SELECT * FROM {name} ORDER BY id").fetchall()


def test_pipeline_executemany_equals_one_insert_per_row(db):
    rows = sample_rows(600)
    make_table(db, "batched")
    make_table(db, "single")
    with db.pipeline():
        db.cursor().executemany(INSERT.format("batched"), rows)
    for row in rows:   # the unbatched path: one statement, one Sync each
        db.execute(INSERT.format("single"), row)
    got = contents(db, "batched")
    assert len(got) == 600
    assert got == contents(db, "single")
    assert got[3] == (3, "row-3", 1.5, Decimal("0.75"), False, dt.datetime(2024, 5, 1, 12, 0, 3),
                      dt.date(2024, 5, 4), "dflt")
    assert got[0][1] is None


def test_executemany_without_pipeline_mode(db):
    make_table(db, "nopipe")
    rows = sample_rows(300)
    cur = db.cursor()
    cur.executemany(INSERT.format("nopipe"), rows)
    assert cur.rowcount == 300
    assert [r[:3] for r in contents(db, "nopipe")] == [r[:3] for r in rows]


def test_executemany_in_explicit_transaction_rolls_back(module_tierd):
    with module_tierd.connect(autocommit=False) as c:
        make_table(c, "txn")
        c.commit()
        c.cursor().executemany(INSERT.format("txn"), sample_rows(50))
        assert c.execute("SELECT count(*) FROM txn").fetchone()[0] == 50   # own writes
        c.rollback()
        assert c.execute("SELECT count(*) FROM txn").fetchone()[0] == 0
        c.cursor().executemany(INSERT.format("txn"), sample_rows(50))
        c.commit()
    with module_tierd.connect() as c:
        assert c.execute("SELECT count(*) FROM txn").fetchone()[0] == 50


def test_duplicate_key_inside_batch_rolls_back_implicit_transaction(db):
    make_table(db, "dup")
    rows = sample_rows(100)
    rows[60] = sample_rows(1, start=20)[0]   # row 60 repeats key 20
    with pytest.raises(psycopg.errors.UniqueViolation) as err:
        with db.pipeline():
            db.cursor().executemany(INSERT.format("dup"), rows)
    assert err.value.sqlstate == "23505"
    assert "(id)=(20)" in (err.value.diag.message_detail or "")
    assert db.execute("SELECT count(*) FROM dup").fetchone()[0] == 0
    db.execute(INSERT.format("dup"), sample_rows(1)[0])    # the connection still works
    assert db.execute("SELECT count(*) FROM dup").fetchone()[0] == 1


def test_duplicate_of_existing_row_in_the_middle(db):
    make_table(db, "dup2")
    db.execute(INSERT.format("dup2"), (1000, "existing", 0, 0, True, None, None))
    rows = sample_rows(80)
    rows[40] = (1000, "clash", 1, 1, False, None, None)
    with pytest.raises(psycopg.errors.UniqueViolation) as err:
        with db.pipeline():
            db.cursor().executemany(INSERT.format("dup2"), rows)
    assert "(id)=(1000)" in (err.value.diag.message_detail or "")
    assert db.execute("SELECT id, v FROM dup2").fetchall() == [(1000, "existing")]
    with db.pipeline():    # the same batch without the clash goes through afterwards
        db.cursor().executemany(INSERT.format("dup2"), sample_rows(80))
    assert db.execute("SELECT count(*) FROM dup2").fetchone()[0] == 81


def test_not_null_violation_in_the_middle(db):
    db.execute("DROP TABLE IF EXISTS nn")
    db.execute("CREATE TABLE nn (id INT PRIMARY KEY, v TEXT NOT NULL)")
    rows = [(i, f"v{i}") for i in range(30)]
    rows[17] = (17, None)
    with pytest.raises(psycopg.errors.NotNullViolation):
        with db.pipeline():
            db.cursor().executemany("INSERT INTO nn (id, v) VALUES (%s, %s)", rows)
    assert db.execute("SELECT count(*) FROM nn").fetchone()[0] == 0


def test_error_earlier_in_pipeline_segment_is_rolled_back_too(db):
    """A plain INSERT, then a batch failing at its 10th row, in one implicit transaction:
    nothing of it stays, and what the client queued after the error is skipped."""
    make_table(db, "seg_a")
    make_table(db, "seg_b")
    rows = sample_rows(20)
    rows[9] = rows[2]
    with pytest.raises(psycopg.errors.UniqueViolation):
        with db.pipeline():
            db.execute(INSERT.format("seg_a"), sample_rows(1, start=500)[0])
            db.cursor().executemany(INSERT.format("seg_b"), rows)
            db.execute(INSERT.format("seg_a"), sample_rows(1, start=501)[0])
    assert db.execute("SELECT count(*) FROM seg_a").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM seg_b").fetchone()[0] == 0


def test_mixed_statements_in_one_pipeline(db):
    make_table(db, "mix_a")
    make_table(db, "mix_b")
    with db.pipeline():
        cur = db.cursor()
        cur.executemany(INSERT.format("mix_a"), sample_rows(40))
        counted = db.execute("SELECT count(*) FROM mix_a")
        cur.executemany(INSERT.format("mix_b"), sample_rows(25, start=100))
        db.execute("UPDATE mix_a SET v = 'updated' WHERE id < 5")
        cur.executemany(INSERT.format("mix_a"), sample_rows(10, start=40))
        deleted = db.execute("DELETE FROM mix_b WHERE id >= 120")
    assert counted.fetchone()[0] == 40
    assert deleted.rowcount == 5
    assert db.execute("SELECT count(*), count(*) FILTER (WHERE v = 'updated') FROM mix_a").fetchone() == (50, 5)
    assert db.execute("SELECT min(id), max(id) FROM mix_b").fetchone() == (100, 119)


def test_returning_is_answered_per_row(db):
    db.execute("DROP TABLE IF EXISTS ret")
    db.execute("CREATE TABLE ret (id INT PRIMARY KEY, v TEXT)")
    cur = db.cursor()
    with db.pipeline():
        cur.executemany("INSERT INTO ret (id, v) VALUES (%s, %s) RETURNING id * 10, v",
                        [(i, f"r{i}") for i in range(12)], returning=True)
    got = []
    while True:
        got.append(cur.fetchone())
        if not cur.nextset():
            break
    assert got == [(i * 10, f"r{i}") for i in range(12)]


def test_asyncpg_executemany(module_tierd, db):
    db.execute("DROP TABLE IF EXISTS apg")
    db.execute("CREATE TABLE apg (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION)")

    async def main():
        c = await asyncpg.connect(host="127.0.0.1", port=module_tierd.port, user="tierd",
                                  database="tierd", timeout=10)
        try:
            await c.executemany("INSERT INTO apg (id, v, x) VALUES ($1, $2, $3)",
                                [(i, f"a{i}", i / 2) for i in range(200)])
            bad = [(i, f"b{i}", 0.0) for i in range(200, 260)] + [(5, "dup", 0.0)]
            with pytest.raises(asyncpg.UniqueViolationError):
                await c.executemany("INSERT INTO apg (id, v, x) VALUES ($1, $2, $3)", bad)
            return await c.fetchval("SELECT count(*) FROM apg")
        finally:
            await c.close()

    assert asyncio.run(main()) == 200
    assert db.execute("SELECT sum(x) FROM apg").fetchone()[0] == sum(i / 2 for i in range(200))


def test_user_table_batch_rows_get_their_owner(db):
    """A USER table's rows carry their writer as owner (part of the key), batched or not."""
    db.execute("CREATE USER TABLE public.owned (id BIGINT PRIMARY KEY, v TEXT)")
    with db.pipeline():
        db.cursor().executemany("INSERT INTO public.owned (id, v) VALUES (%s, %s)",
                                  [(i, f"u{i}") for i in range(20)])
    assert db.execute("SELECT _user_id, count(*), min(v) FROM public.owned GROUP BY 1").fetchall() == \
        [("tierd", 20, "u0")]
    with pytest.raises(psycopg.errors.UniqueViolation) as err:
        with db.pipeline():
            db.cursor().executemany("INSERT INTO public.owned (id, v) VALUES (%s, %s)",
                                      [(100, "x"), (7, "again")])
    assert "(id)=(7)" in (err.value.diag.message_detail or "")


def test_batch_cells_of_every_kind(db):
    """A VALUES row mixing a parameter, a cast parameter, a constant and the transaction's
    timestamp, over a serial column's default: the batch gives each row what one INSERT per
    row gives (the timestamp is the one transaction's, the serial numbers consecutive)."""
    db.execute("DROP TABLE IF EXISTS kinds")
    db.execute("CREATE TABLE kinds (n SERIAL, id BIGINT PRIMARY KEY, big BIGINT, c TEXT, at_ts TIMESTAMPTZ)")
    sql = "INSERT INTO kinds (id, big, c, at_ts) VALUES (%s, %s::BIGINT, 'const', now())"
    with db.pipeline():
        db.cursor().executemany(sql, [(i, i * 10**12) for i in range(400)])
    got = db.execute("SELECT n, id, big, c, at_ts FROM kinds ORDER BY id").fetchall()
    assert [(r[1], r[2], r[3]) for r in got] == [(i, i * 10**12, "const") for i in range(400)]
    assert [r[0] for r in got] == list(range(got[0][0], got[0][0] + 400))
    assert len({r[4] for r in got}) == 1 and got[0][4] is not None


def test_default_now_is_the_transaction_start(module_tierd):
    """DEFAULT now() on the Python-typed INSERT path is the transaction's start, as in
    Postgres: every row of one transaction gets the same value (not each statement's time)."""
    with module_tierd.connect(autocommit=False) as c:
        c.execute("CREATE TABLE stamped (id BIGINT PRIMARY KEY, at_ts TIMESTAMPTZ DEFAULT now())")
        c.commit()
        for i in range(3):
            c.execute("INSERT INTO stamped (id) VALUES (%s)", (i,))
        (now,) = c.execute("SELECT now()").fetchone()
        c.commit()
        stamps = {r[0] for r in c.execute("SELECT at_ts FROM stamped")}
        assert len(stamps) == 1 and stamps.pop() <= now


def test_a_pipeline_is_one_transaction_start(db):
    """A long pipelined executemany runs in parts before its Sync, all in one implicit
    transaction: DEFAULT now() is that transaction's start in every part, as in Postgres."""
    db.execute("DROP TABLE IF EXISTS stamped_pipe")
    db.execute("CREATE TABLE stamped_pipe (id BIGINT PRIMARY KEY, v TEXT, at_ts TIMESTAMPTZ DEFAULT now())")
    with db.pipeline():
        db.cursor().executemany("INSERT INTO stamped_pipe (id, v) VALUES (%s, %s)",
                                [(i, "x" * 50) for i in range(5000)])
    assert db.execute("SELECT count(*), count(DISTINCT at_ts) FROM stamped_pipe").fetchone() == (5000, 1)
    with db.pipeline():   # the next Sync segment is a transaction of its own
        db.execute("INSERT INTO stamped_pipe (id, v) VALUES (%s, %s)", (-1, "later"))
    assert db.execute("SELECT count(DISTINCT at_ts) FROM stamped_pipe").fetchone() == (2,)
