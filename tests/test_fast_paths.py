"""The fast paths give the general path's answers, and are used.

Key-addressed UPDATE/DELETE (engine/session/keyed_writes.py): one seeded sequence of
statements runs against two identical tables, once in the key-addressed form (`WHERE id = %s`)
and once in a form only the general path takes (`WHERE id = %s AND true`), across hot,
flushed, updated-after-flush, deleted and re-inserted keys; the tables must stay equal row
for row. The `tierd_fast_path_total` counter shows which path ran.
"""
import random
import uuid
from decimal import Decimal

import psycopg
import pytest

from tests.daemon import free_port, scrape_metrics as scrape

COLUMNS = ("id BIGINT PRIMARY KEY, n INT NOT NULL, v TEXT, x DOUBLE PRECISION, d NUMERIC(12,2), "
           "ts TIMESTAMP, u UUID, b BOOLEAN")


def used(m: dict, path: str, outcome: str = "used") -> float:
    return m.get(f'tierd_fast_path_total{{outcome="{outcome}",path="{path}"}}', 0.0)


@pytest.fixture(scope="module")
def metrics_tierd(module_make_tierd):
    port = free_port()
    d = module_make_tierd(f'[metrics]\nlisten = "127.0.0.1:{port}"\n').start()
    d.metrics_port = port
    return d


def rows(c, table):
    return c.execute(f"SELECT * FROM public.{table} ORDER BY id").fetchall()


def test_keyed_writes_equal_the_general_path(metrics_tierd):
    rng = random.Random(20261203)
    with metrics_tierd.connect() as c:
        for t in ("kf", "kg"):
            c.execute(f"CREATE TABLE public.{t} ({COLUMNS}) WITH (FLUSH_POLICY = 'manual')")
            c.execute(f"INSERT INTO public.{t} SELECT i, i, 'v' || i, i * 0.5, i * 1.25, "
                      f"TIMESTAMP '2026-01-01' + i * INTERVAL 1 HOUR, NULL, i % 2 = 0 FROM range(200) r(i)")
        before = scrape(metrics_tierd.metrics_port)
        live = set(range(200))
        for phase in range(6):
            for _ in range(60):
                k = rng.randrange(230)
                op = rng.random()
                if op < 0.45:
                    stmt = ("UPDATE public.{t} SET n = n + %s, v = %s, x = x * 2 WHERE {w}",
                            (rng.randrange(-50, 50), f"p{phase}", ))
                elif op < 0.6:
                    stmt = ("UPDATE public.{t} SET b = %s, d = %s WHERE {w}", (rng.random() < 0.5, None))
                elif op < 0.75:
                    stmt = ("DELETE FROM public.{t} WHERE {w}", ())
                    live.discard(k)
                elif k not in live:
                    stmt = ("INSERT INTO public.{t} (id, n, v) VALUES (%s, %s, %s)", None)
                    live.add(k)
                else:
                    continue
                sql, args = stmt
                counts = []
                for t, where in (("kf", "id = %s"), ("kg", "id = %s AND true")):
                    if args is None:
                        cur = c.execute(sql.format(t=t), (k, k * 3, "new"))
                    else:
                        cur = c.execute(sql.format(t=t, w=where), (*args, k))
                    counts.append(cur.rowcount)
                assert counts[0] == counts[1], (sql, k)
            assert rows(c, "kf") == rows(c, "kg"), f"phase {phase}"
            if phase % 2 == 0:
                for t in ("kf", "kg"):
                    assert c.execute(f"STORAGE FLUSH TABLE public.{t} WAIT").fetchone()[1] == "completed"
            if phase == 3:
                for t in ("kf", "kg"):
                    assert c.execute(f"STORAGE COMPACT TABLE public.{t} WAIT").fetchone()[1] in ("completed", "skipped")
        assert rows(c, "kf") == rows(c, "kg")
    after = scrape(metrics_tierd.metrics_port)
    # the key-addressed form ran on the fast path (most of the time: some shapes of the cold
    # tier hand over), the other form never did
    assert used(after, "keyed_update") - used(before, "keyed_update") >= 60
    assert used(after, "keyed_delete") - used(before, "keyed_delete") >= 10


def test_keyed_writes_in_a_transaction_and_across_restart(metrics_tierd):
    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.kt (id INT PRIMARY KEY, bal INT NOT NULL)")
        c.execute("INSERT INTO public.kt VALUES (1, 100), (2, 100)")
        with c.transaction():
            c.execute("UPDATE public.kt SET bal = bal - %s WHERE id = %s", (30, 1))
            c.execute("UPDATE public.kt SET bal = bal + %s WHERE id = %s", (30, 2))
            assert c.execute("SELECT bal FROM public.kt WHERE id = %s", (1,)).fetchone() == (70,)
            assert c.execute("SELECT sum(bal) FROM public.kt").fetchone() == (200,)
        with pytest.raises(psycopg.errors.NotNullViolation):
            with c.transaction():
                c.execute("UPDATE public.kt SET bal = bal - %s WHERE id = %s", (30, 1))
                c.execute("UPDATE public.kt SET bal = %s WHERE id = %s", (None, 2))
        assert c.execute("SELECT id, bal FROM public.kt ORDER BY id").fetchall() == [(1, 70), (2, 130)]


def test_keyed_writes_follow_privileges_and_user_tables(metrics_tierd):
    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.kp (id BIGINT PRIMARY KEY, v TEXT)")
        c.execute("INSERT INTO public.kp VALUES (1, 'a')")
        c.execute("CREATE USER kp_reader WITH PASSWORD 'pw'")
        c.execute("GRANT SELECT ON public.kp TO kp_reader")
        c.execute("CREATE USER TABLE public.ku (id BIGINT PRIMARY KEY, v TEXT)")
        c.execute("CREATE USER kp_writer WITH PASSWORD 'pw'")
        c.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON public.ku TO kp_writer")
    with metrics_tierd.connect_as("kp_reader", "pw") as r:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            r.execute("UPDATE public.kp SET v = %s WHERE id = %s", ("x", 1))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            r.execute("DELETE FROM public.kp WHERE id = %s", (1,))
    before = scrape(metrics_tierd.metrics_port)
    with metrics_tierd.connect_as("kp_writer", "pw") as w:
        w.execute("INSERT INTO public.ku VALUES (1, 'mine')")
        assert w.execute("UPDATE public.ku SET v = %s WHERE id = %s", ("changed", 1)).rowcount == 1
        assert w.execute("SELECT v FROM public.ku").fetchall() == [("changed",)]
    with metrics_tierd.connect() as c:
        assert c.execute("SELECT v FROM public.kp").fetchall() == [("a",)]
        # a superuser's statements reach every user's rows, as Postgres superusers bypass RLS
        assert c.execute("UPDATE public.ku SET v = %s WHERE id = %s", ("su", 1)).rowcount == 1
    after = scrape(metrics_tierd.metrics_port)
    assert used(after, "keyed_update", "fallback") - used(before, "keyed_update", "fallback") == 2


@pytest.mark.parametrize("binary", [False, True])
def test_executemany_returning_is_one_batch(metrics_tierd, binary):
    """psycopg's executemany(returning=True) (what ORMs use to learn ids): the rows come back
    in order, typed (uuid stays uuid), from one batched append; a duplicate key inside the batch
    fails that row as Postgres does and writes nothing of the implicit transaction."""
    table = f"public.kr_{int(binary)}"
    with metrics_tierd.connect() as c:
        c.execute(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, v TEXT, u UUID)")
        before = scrape(metrics_tierd.metrics_port)
        cur = c.cursor(binary=binary)
        rows = [(i, f"r{i}", uuid.UUID(int=i)) for i in range(300)]
        cur.executemany(f"INSERT INTO {table} (id, v, u) VALUES (%s, %s, %s) RETURNING id, u, {table.split('.')[1]}.v",
                        rows, returning=True)
        got = []
        while True:
            got += cur.fetchall()
            if not cur.nextset():
                break
        assert got == [(i, uuid.UUID(int=i), f"r{i}") for i in range(300)]
        after = scrape(metrics_tierd.metrics_port)
        assert used(after, "insert_batch") - used(before, "insert_batch") >= 1
        with pytest.raises(psycopg.errors.UniqueViolation):
            cur.executemany(f"INSERT INTO {table} (id, v, u) VALUES (%s, %s, %s) RETURNING id",
                            [(1000, "a", None), (1001, "b", None), (5, "dup", None)], returning=True)
        assert c.execute(f"SELECT count(*), max(id) FROM {table}").fetchone() == (300, 299)


def test_cast_parameters_in_values(metrics_tierd):
    """`$n::TYPE` on every parameter (SQLAlchemy's psycopg dialect, pandas' to_sql): typed in
    Python when the value already has the type, converted (or refused) by DuckDB otherwise, with
    the same answers either way."""
    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.kc (id BIGINT PRIMARY KEY, i INT, v TEXT, x DOUBLE PRECISION, "
                  "d NUMERIC(10,2), b BOOLEAN, u UUID)")
        sql = ("INSERT INTO public.kc (id, i, v, x, d, b, u) VALUES (%s::BIGINT, %s::INTEGER, %s::VARCHAR, "
               "%s::FLOAT, %s::NUMERIC, %s::BOOLEAN, %s::UUID)")
        c.execute(sql, (1, 7, "a", 1.5, Decimal("2.25"), True, uuid.UUID(int=1)))
        c.execute(sql, (2, None, None, None, None, None, None))
        c.execute(sql.replace("%s::VARCHAR", "'lit'").replace("%s::BOOLEAN", "FALSE"),
                  (3, -7, 2.0, Decimal("1"), "{00000000-0000-0000-0000-000000000003}"))
        # a value of another type is converted by the cast, as in Postgres
        c.execute("INSERT INTO public.kc (id, i, v) VALUES (%s::BIGINT, %s::INTEGER, %s::VARCHAR)", (4, "12", 5))
        with pytest.raises(psycopg.errors.DataError):  # Postgres: 22003 integer out of range
            c.execute("INSERT INTO public.kc (id, i) VALUES (%s::INTEGER, %s::INTEGER)", (2 ** 40, 1))
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            c.execute("INSERT INTO public.kc (id, i) VALUES (%s::BIGINT, %s::INTEGER)", (5, "x"))
        assert c.execute("SELECT id, i, v, x, d, b, u FROM public.kc ORDER BY id").fetchall() == [
            (1, 7, "a", 1.5, Decimal("2.25"), True, uuid.UUID(int=1)),
            (2, None, None, None, None, None, None),
            (3, -7, "lit", 2.0, Decimal("1.00"), False, uuid.UUID(int=3)),
            (4, 12, "5", None, None, None, None),
        ]


def test_sqlalchemy_executemany_as_pandas_sends_it(metrics_tierd):
    """SQLAlchemy Core's executemany of many rows (its insertmanyvalues batches: one multi-row
    VALUES with a cast on every parameter): one plan per batch text, rows typed in Python."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"postgresql+psycopg://tierd@127.0.0.1:{metrics_tierd.port}/tierd")
    md = sa.MetaData(schema="public")
    t = sa.Table("ksa", md, sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
                 sa.Column("v", sa.Text), sa.Column("x", sa.Float), sa.Column("u", sa.Uuid))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("CREATE TABLE public.ksa (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION, u UUID)"))
            conn.commit()
            before = scrape(metrics_tierd.metrics_port)
            rows = [{"id": i, "v": f"r{i}", "x": i / 4, "u": uuid.UUID(int=i)} for i in range(2500)]
            conn.execute(sa.insert(t), rows)
            conn.commit()
            got = conn.execute(sa.select(t).order_by(t.c.id)).all()
            assert [tuple(r) for r in got] == [(r["id"], r["v"], r["x"], r["u"]) for r in rows]
    finally:
        engine.dispose()
