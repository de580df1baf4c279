"""The fast paths give the general path's answers, and are used.

Key-addressed UPDATE/DELETE (engine/session/keyed_writes.py): one seeded sequence of
statements runs against two identical tables, once in the key-addressed form (`WHERE id = %s`)
and once in a form only the general path takes (`WHERE id = %s AND true`), across hot,
flushed, updated-after-flush, deleted and re-inserted keys; the tables must stay equal row
for row. The `tierd_fast_path_total` counter shows which path ran.
"""
import random
import struct
import time
import uuid
from decimal import Decimal

import psycopg
import pytest

from tests.daemon import scrape_metrics as scrape
from tests.raw_wire import RawClient, errors_in, message

COLUMNS = ("id BIGINT PRIMARY KEY, n INT NOT NULL, v TEXT, x DOUBLE PRECISION, d NUMERIC(12,2), "
           "ts TIMESTAMP, u UUID, b BOOLEAN")


def used(m: dict, path: str, outcome: str = "used") -> float:
    return m.get(f'tierd_fast_path_total{{outcome="{outcome}",path="{path}"}}', 0.0)


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


def test_keyed_upserts_equal_the_general_path(metrics_tierd):
    """INSERT ... ON CONFLICT DO UPDATE whose SET and WHERE are simple (EXCLUDED's columns, the
    existing row's, parameters, `col + expr`) runs without DuckDB; the same statements in a form
    only the general path takes (`|| ''` on a text) keep two tables equal across hot, flushed,
    updated-after-flush and deleted keys, several rows per statement and RETURNING."""
    rng = random.Random(20261204)
    fast = ("INSERT INTO public.{t} (id, n, v) VALUES {values} ON CONFLICT (id) DO UPDATE "
            "SET n = {t}.n + excluded.n * %s, v = excluded.v{tail} WHERE {t}.n < %s OR excluded.v IS NULL "
            "RETURNING id, n, v")
    with metrics_tierd.connect() as c:
        for t in ("uf", "ug"):
            c.execute(f"CREATE TABLE public.{t} (id BIGINT PRIMARY KEY, n INT NOT NULL, v TEXT) "
                      "WITH (FLUSH_POLICY = 'manual')")
            c.execute(f"INSERT INTO public.{t} SELECT i, i, 'v' || i FROM range(100) r(i)")
        before = scrape(metrics_tierd.metrics_port)
        for phase in range(6):
            for _ in range(40):
                keys = rng.sample(range(130), rng.choice((1, 1, 1, 3)))
                if rng.random() < 0.15:
                    for t in ("uf", "ug"):
                        c.execute(f"DELETE FROM public.{t} WHERE id = %s", (keys[0],))
                    continue
                rows = [(k, rng.randrange(-5, 5), rng.choice((None, f"p{phase}"))) for k in keys]
                factor, limit = rng.randrange(1, 4), rng.randrange(0, 400)
                values = ", ".join(["(%s, %s, %s)"] * len(rows))
                args = [x for r in rows for x in r] + [factor, limit]
                got = []
                for t, tail in (("uf", ""), ("ug", " || ''")):
                    cur = c.execute(fast.format(t=t, values=values, tail=tail), args)
                    got.append((cur.statusmessage, sorted(cur.fetchall(), key=str)))
                assert got[0] == got[1], (rows, factor, limit)
            assert rows_of(c, "uf") == rows_of(c, "ug"), f"phase {phase}"
            if phase % 2 == 0:
                for t in ("uf", "ug"):
                    assert c.execute(f"STORAGE FLUSH TABLE public.{t} WAIT").fetchone()[1] == "completed"
    after = scrape(metrics_tierd.metrics_port)
    assert used(after, "keyed_upsert") - used(before, "keyed_upsert") >= 100
    # the `|| ''` form is the general path's: as many fallbacks as the fast form's uses at most
    assert used(after, "keyed_upsert", "fallback") - used(before, "keyed_upsert", "fallback") >= 100


def rows_of(c, table):
    return c.execute(f"SELECT id, n, v FROM public.{table} ORDER BY id").fetchall()


def test_simple_protocol_texts_share_one_shape(metrics_tierd):
    """pgbench -M simple sends every UPDATE with its values inline: the literals are lifted out
    so each text is key-addressed (no sqlglot per text), with literal semantics: a string key,
    a negative number, a decimal into a numeric column, a quote inside a string."""
    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.ks (id INT PRIMARY KEY, bal INT NOT NULL, v TEXT, d NUMERIC(10,2))")
        c.execute("CREATE TABLE public.kst (k TEXT PRIMARY KEY, n BIGINT)")
        c.execute("INSERT INTO public.ks SELECT i, 0, NULL, 0 FROM range(50) r(i)")
        c.execute("INSERT INTO public.kst VALUES ('a', 1), ('it''s', 2)")
        before = scrape(metrics_tierd.metrics_port)
        expected = {i: 0 for i in range(50)}
        rng = random.Random(7)
        for _ in range(120):
            k, delta = rng.randrange(50), rng.randrange(-5000, 5000)
            c.execute(f"UPDATE ks SET bal = bal + {delta} WHERE id = {k};")
            expected[k] += delta
        c.execute("UPDATE public.ks SET v = 'it''s', d = d + 1.25 WHERE id = 3")
        c.execute("UPDATE kst SET n = n * 10 WHERE k = 'it''s'")
        c.execute("DELETE FROM kst WHERE k = 'a'")
        assert c.execute("UPDATE ks SET bal = bal + 1 WHERE id = 999").statusmessage == "UPDATE 0"
        after = scrape(metrics_tierd.metrics_port)
        assert dict(c.execute("SELECT id, bal FROM public.ks").fetchall()) == expected
        assert c.execute("SELECT v, d FROM public.ks WHERE id = 3").fetchone() == ("it's", Decimal("1.25"))
        assert c.execute("SELECT k, n FROM public.kst").fetchall() == [("it's", 20)]
        # out of int4's range: the general path raises Postgres's error
        with pytest.raises(psycopg.errors.NumericValueOutOfRange):
            c.execute("UPDATE ks SET bal = bal + 3000000000 WHERE id = 1")
    assert used(after, "keyed_update") - used(before, "keyed_update") >= 122
    assert used(after, "keyed_delete") - used(before, "keyed_delete") >= 1


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_transaction_timestamp_and_zones(metrics_tierd, zone):
    """pgbench's history INSERT (`..., CURRENT_TIMESTAMP)`) types the transaction's timestamp in
    Python: timestamptz the instant, timestamp the wall-clock time in the session's TimeZone, as
    DuckDB's cast gives it; rows DuckDB types (a timestamptz in the session's zone) are stored
    as the table's type, so a transaction mixing both reads, commits, flushes and survives a
    restart under any TimeZone."""
    t = f"public.kz_{zone.split('/')[-1].lower()}"
    with metrics_tierd.connect() as c:
        c.execute(f"CREATE TABLE {t} (id INT PRIMARY KEY, n INT, ts TIMESTAMP, tz TIMESTAMPTZ)")
        c.execute(f"INSERT INTO {t} VALUES (0, 0, NULL, NULL)")
        c.execute(f"SET TimeZone = '{zone}'")
        with c.transaction():
            c.execute(f"UPDATE {t} SET n = n + %s WHERE id = %s", (5, 0))
            c.execute(f"INSERT INTO {t} (id, ts, tz) VALUES (%s, CURRENT_TIMESTAMP, now())", (1,))
            c.execute(f"INSERT INTO {t} (id, ts, tz) VALUES (%s, CURRENT_TIMESTAMP + INTERVAL '0 s', "
                      "now() + INTERVAL '0 s')", (2,))
            c.execute(f"UPDATE {t} SET tz = now() WHERE n = 5")  # the general UPDATE path
            assert c.execute(f"SELECT count(*) FROM {t}").fetchone() == (3,)
        rows = c.execute(f"SELECT id, ts, tz, localtimestamp, now() FROM {t} WHERE id > 0 ORDER BY id").fetchall()
        for _, ts, tz, local, now in rows:
            assert abs((local - ts).total_seconds()) < 600, (ts, local)  # wall clock of the zone
            assert abs((now - tz).total_seconds()) < 600
        assert c.execute(f"STORAGE FLUSH TABLE {t} WAIT").fetchone()[1] == "completed"
        assert c.execute(f"SELECT count(*), count(ts), count(tz) FROM {t}").fetchone() == (3, 2, 3)


def test_write_analysis_is_kept_until_the_catalog_changes(metrics_tierd):
    """A write text seen before reuses its analysis (plan, target, privilege verdicts); CREATE,
    ALTER, DROP, GRANT, REVOKE, ALTER ROLE and a new search_path each make the next execution
    analyse it anew, with the answers a fresh analysis gives."""
    port = metrics_tierd.metrics_port
    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.ka (id BIGINT PRIMARY KEY, v TEXT, n INT)")
        c.execute("CREATE USER ka_writer WITH PASSWORD 'pw'")
        c.execute("GRANT SELECT, INSERT, UPDATE ON public.ka TO ka_writer")
    with metrics_tierd.connect_as("ka_writer", "pw") as w, metrics_tierd.connect() as c:
        before = scrape(port)
        for i in range(20):
            w.execute("INSERT INTO public.ka (id, v, n) VALUES (%s, %s, %s)", (i, "a", 0))
            w.execute("UPDATE public.ka SET n = n + %s WHERE id = %s", (1, i))
        after = scrape(port)
        assert used(after, "write_analysis") - used(before, "write_analysis") >= 36
        assert used(after, "insert_values") - used(before, "insert_values") >= 20
        # REVOKE: the kept verdict goes with it
        c.execute("REVOKE UPDATE ON public.ka FROM ka_writer")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            w.execute("UPDATE public.ka SET n = n + %s WHERE id = %s", (1, 1))
        c.execute("GRANT UPDATE ON public.ka TO ka_writer")
        assert w.execute("UPDATE public.ka SET n = n + %s WHERE id = %s", (1, 1)).rowcount == 1
        # ALTER TABLE: a renamed column is gone for the kept plan too
        c.execute("ALTER TABLE public.ka RENAME COLUMN v TO w")
        with pytest.raises(psycopg.errors.UndefinedColumn):
            w.execute("INSERT INTO public.ka (id, v, n) VALUES (%s, %s, %s)", (100, "a", 0))
        # DROP and CREATE again, with another key type: the same text writes the new table
        c.execute("DROP TABLE public.ka")
        with pytest.raises(psycopg.errors.UndefinedTable):
            w.execute("UPDATE public.ka SET n = n + %s WHERE id = %s", (1, 1))
        c.execute("CREATE TABLE public.ka (id TEXT PRIMARY KEY, v TEXT, n INT)")
        c.execute("GRANT SELECT, INSERT, UPDATE ON public.ka TO ka_writer")
        w.execute("INSERT INTO public.ka (id, v, n) VALUES (%s, %s, %s)", ("k", "a", 0))
        assert w.execute("UPDATE public.ka SET n = n + %s WHERE id = %s", (5, "k")).rowcount == 1
        assert w.execute("SELECT id, n FROM public.ka").fetchall() == [("k", 5)]
        # ALTER ROLE: a superuser's verdict does not outlive NOSUPERUSER
        c.execute("CREATE TABLE public.kb (id BIGINT PRIMARY KEY, n INT)")
        c.execute("INSERT INTO public.kb VALUES (1, 0)")
        c.execute("ALTER ROLE ka_writer SUPERUSER")
        assert w.execute("UPDATE public.kb SET n = n + %s WHERE id = %s", (1, 1)).rowcount == 1
        c.execute("ALTER ROLE ka_writer NOSUPERUSER")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            w.execute("UPDATE public.kb SET n = n + %s WHERE id = %s", (1, 1))
        # a new search path: the unqualified name is another namespace's table
        c.execute("CREATE NAMESPACE kns")
        c.execute("CREATE TABLE kns.kb (id BIGINT PRIMARY KEY, n INT)")
        c.execute("INSERT INTO kns.kb VALUES (1, 100)")
        for path, expected in (("public", (2,)), ("kns", (101,)), ("public", (3,))):
            c.execute(f"SET search_path = {path}")
            assert c.execute("UPDATE kb SET n = n + %s WHERE id = %s", (1, 1)).rowcount == 1
            assert c.execute("SELECT n FROM kb WHERE id = 1").fetchone() == expected


def test_untyped_text_parameters_of_number_columns(metrics_tierd):
    """pgbench -M prepared sends every parameter as untyped text: into a number column (a
    VALUES item, the key of a key-addressed UPDATE) a text that spells a number is that number,
    on the fast paths; any other text takes the general path and its error."""
    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.kx (id INT PRIMARY KEY, n BIGINT, x DOUBLE PRECISION, d NUMERIC(8,2))")
        before = scrape(metrics_tierd.metrics_port)
        for i in range(10):  # psycopg sends a str as untyped (OID 0), as pgbench does
            c.execute("INSERT INTO public.kx (id, n, x, d) VALUES (%s, %s, %s, %s)", (str(i), f" {-i} ", "1.5e1", "2.25"))
            c.execute("UPDATE public.kx SET n = n + %s WHERE id = %s", (1, str(i)))
        after = scrape(metrics_tierd.metrics_port)
        assert c.execute("SELECT id, n, x, d FROM public.kx ORDER BY id").fetchall() == [
            (i, 1 - i, 15.0, Decimal("2.25")) for i in range(10)]
        assert used(after, "insert_values") - used(before, "insert_values") >= 10
        assert used(after, "keyed_update") - used(before, "keyed_update") >= 10
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            c.execute("INSERT INTO public.kx (id, n) VALUES (%s, %s)", ("11", "eleven"))
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            c.execute("UPDATE public.kx SET n = 0 WHERE id = %s", ("x1",))


UNTYPED_CASES = [  # (parameter text, the rows Postgres 15 returns | its error message)
    ("07", [("seven",)]), (" 7 ", [("seven",)]), ("+7", [("seven",)]), ("8", [("eight",)]),
    ("7.5", 'invalid input syntax for type bigint: "7.5"'),
    ("x", 'invalid input syntax for type bigint: "x"'),
    ("7_0", 'invalid input syntax for type bigint: "7_0"'),
    ("99999999999999999999", 'value "99999999999999999999" is out of range for type bigint'),
]


@pytest.mark.parametrize("prepare", [True, False], ids=["named", "unnamed"])
def test_untyped_text_compared_with_an_integer_column(metrics_tierd, prepare):
    """An untyped text parameter compared with an integer column (`pk = $1`, `IN`, `= ANY`) has
    the column's type, as Postgres infers it at Parse: `'07'` finds key 7 and `'7.5'` is 22P02,
    on the point-lookup path and on the general (DuckDB) path alike, hot and flushed rows. The
    expected answers are Postgres 15's (psycopg sends a str untyped, pg8000 every parameter)."""
    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.ut (pk BIGINT PRIMARY KEY, v TEXT, n INT) WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO public.ut VALUES (7, 'seven', 70)")
        c.execute("STORAGE FLUSH TABLE public.ut WAIT")
        c.execute("INSERT INTO public.ut VALUES (8, 'eight', 80)")  # 7 cold, 8 hot
        before = scrape(metrics_tierd.metrics_port)
        forms = ["SELECT v FROM public.ut WHERE pk = %s",  # a point lookup
                 "SELECT v FROM public.ut WHERE pk = %s AND v IS NOT NULL ORDER BY v",  # DuckDB
                 "SELECT v FROM public.ut WHERE pk IN (%s, -1) ORDER BY v",
                 "SELECT v FROM public.ut WHERE %s = pk ORDER BY v"]
        for sql in forms:
            for text, want in UNTYPED_CASES:
                if isinstance(want, list):
                    assert c.execute(sql, (text,), prepare=prepare).fetchall() == want, (sql, text)
                    continue
                with pytest.raises(psycopg.Error) as err:
                    c.execute(sql, (text,), prepare=prepare)
                assert (err.value.sqlstate, err.value.diag.message_primary) == (
                    "22003" if "range" in want else "22P02", want), (sql, text)
        any_ = "SELECT v FROM public.ut WHERE pk = ANY(%s) ORDER BY v"
        assert c.execute(any_, ("{07,8}",), prepare=prepare).fetchall() == [("eight",), ("seven",)]
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match='type bigint: "7.5"'):
            c.execute(any_, ("{7.5}",), prepare=prepare)
        # an int column is int4: its own range and name
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match='type integer: "7.5"'):
            c.execute("SELECT v FROM public.ut WHERE n = %s", ("7.5",), prepare=prepare)
        assert c.execute("SELECT v FROM public.ut WHERE n = %s", ("070",), prepare=prepare).fetchall() == [("seven",)]
        # writes by key, key-addressed and general, with the key as untyped text
        c.execute("UPDATE public.ut SET n = n + 1 WHERE pk = %s", ("07",), prepare=prepare)
        c.execute("UPDATE public.ut SET n = n + 1 WHERE pk = %s AND true", (" 8",), prepare=prepare)
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match='type bigint: "7.5"'):
            c.execute("DELETE FROM public.ut WHERE pk = %s AND true", ("7.5",), prepare=prepare)
        assert c.execute("SELECT pk, n FROM public.ut ORDER BY pk").fetchall() == [(7, 71), (8, 81)]
        after = scrape(metrics_tierd.metrics_port)
        assert used(after, "point_select") - used(before, "point_select") >= 4
        assert used(after, "keyed_update") - used(before, "keyed_update") >= 1
        c.execute("DROP TABLE public.ut")


def test_a_bind_error_fails_the_transaction(metrics_tierd):
    """A parameter its inferred type cannot read fails at Bind, before any statement runs; as in
    Postgres the transaction block fails (COMMIT then rolls back, as pandas' to_sql relies on),
    and in autocommit the implicit transaction's earlier writes roll back."""
    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.be (id BIGINT PRIMARY KEY, n INT)")
    with psycopg.connect(host="127.0.0.1", port=metrics_tierd.port, user="tierd", dbname="tierd") as c:
        c.execute("INSERT INTO public.be VALUES (1, 1)")
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match='type integer: "one"'):
            c.execute("INSERT INTO public.be (id, n) VALUES (%s, %s)", (2, "one"))
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        assert c.execute("COMMIT").statusmessage == "ROLLBACK"
        c.autocommit = True
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            with c.pipeline():  # one implicit transaction up to Sync: the first INSERT rolls back too
                c.execute("INSERT INTO public.be VALUES (3, 3)")
                c.execute("INSERT INTO public.be (id, n) VALUES (%s, %s)", (4, "four"))
        assert c.execute("SELECT count(*) FROM public.be").fetchone() == (0,)


def test_untyped_text_from_pg8000(metrics_tierd):
    """pg8000 declares no parameter types at all: an integer key sent as text is read as the
    key column's type (Postgres 15's answers)."""
    import pg8000.native

    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.ut8 (pk BIGINT PRIMARY KEY, v TEXT)")
        c.execute("INSERT INTO public.ut8 VALUES (7, 'seven')")
    conn = pg8000.native.Connection("tierd", host="127.0.0.1", port=metrics_tierd.port, database="tierd", timeout=30)
    try:
        for sql in ("SELECT v FROM public.ut8 WHERE pk = :k", "SELECT v FROM public.ut8 WHERE pk = :k AND true"):
            assert conn.run(sql, k="07") == [["seven"]]
            with pytest.raises(pg8000.native.DatabaseError) as err:
                conn.run(sql, k="7.5")
            assert (err.value.args[0]["C"], err.value.args[0]["M"]) == (
                "22P02", 'invalid input syntax for type bigint: "7.5"')
        assert conn.run("SELECT count(*) FROM public.ut8 WHERE pk IN (:a, :b)", a="7", b="008") == [[1]]
    finally:
        conn.close()


def test_resent_parse_reuses_its_analysis_until_the_catalog_changes(metrics_tierd):
    """asyncpg without a statement cache sends Parse + Describe of an unnamed statement at every
    call: the parameter types and result columns worked out for the text are reused
    (`parse_analysis` counted as used) with the same answers, until a CREATE/ALTER changes what
    the text means (then `SELECT *` shows the new column)."""
    import asyncio

    import asyncpg

    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.ra (id BIGINT PRIMARY KEY, v TEXT)")
        c.execute("INSERT INTO public.ra VALUES (1, 'one'), (2, 'two')")

    async def body():
        conn = await asyncpg.connect(host="127.0.0.1", port=metrics_tierd.port, user="tierd",
                                     database="tierd", timeout=10, statement_cache_size=0)
        try:
            got = [await conn.fetch("SELECT * FROM public.ra WHERE id = $1", k % 2 + 1) for k in range(10)]
            await conn.execute("INSERT INTO public.ra (id, v) VALUES ($1, $2)", 3, "three")
            await conn.execute("INSERT INTO public.ra (id, v) VALUES ($1, $2)", 4, "four")
            await conn.execute("ALTER TABLE public.ra ADD COLUMN n INT")
            after = await conn.fetch("SELECT * FROM public.ra WHERE id = $1", 3)
            return got, after
        finally:
            await conn.close()

    before = scrape(metrics_tierd.metrics_port)
    got, after = asyncio.run(body())
    metrics = scrape(metrics_tierd.metrics_port)
    assert [tuple(r[0].values()) for r in got] == [(1, "one"), (2, "two")] * 5
    assert [tuple(r.values()) for r in after] == [(3, "three", None)]
    assert used(metrics, "parse_analysis") - used(before, "parse_analysis") >= 10
    # the first SELECT, the first INSERT and the SELECT after the ALTER (sent as a simple
    # query) were analysed afresh
    assert used(metrics, "parse_analysis", "fallback") - used(before, "parse_analysis", "fallback") >= 3


def test_keyed_returning(metrics_tierd):
    """UPDATE/DELETE by key with RETURNING of plain columns stay key-addressed (hot and cold
    versions); an expression in RETURNING takes the general path, with the same answer."""
    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.kr (id BIGINT PRIMARY KEY, n INT, v TEXT) WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO public.kr VALUES (1, 1, 'a'), (2, 2, 'b')")
        c.execute("STORAGE FLUSH TABLE public.kr WAIT")
        before = scrape(metrics_tierd.metrics_port)
        assert c.execute("UPDATE public.kr SET n = n + %s WHERE id = %s RETURNING id, n, v", (5, 1)).fetchall() \
            == [(1, 6, "a")]
        assert c.execute("UPDATE public.kr SET n = n + %s WHERE id = %s RETURNING *", (5, 1)).fetchall() == [(1, 11, "a")]
        assert c.execute("DELETE FROM public.kr WHERE id = %s RETURNING v, id", (2,)).fetchall() == [("b", 2)]
        assert c.execute("DELETE FROM public.kr WHERE id = %s RETURNING v", (2,)).fetchall() == []
        after = scrape(metrics_tierd.metrics_port)
        assert c.execute("UPDATE public.kr SET n = n + %s WHERE id = %s RETURNING n * 2", (1, 1)).fetchall() == [(24,)]
        last = scrape(metrics_tierd.metrics_port)
    assert used(after, "keyed_update") - used(before, "keyed_update") == 2
    assert used(after, "keyed_delete") - used(before, "keyed_delete") == 2
    assert used(last, "keyed_update", "fallback") - used(after, "keyed_update", "fallback") == 1


def test_asyncpg_pool_release_unlocks_without_duckdb(metrics_tierd):
    """asyncpg's pool resets a released connection with `SELECT pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL;`: answered as one engine call without a DuckDB query (as
    four statements it cost each pooled INSERT about half as much as the INSERT), and it still
    releases the locks, closes the cursors, stops listening and resets the settings."""
    import asyncio

    import asyncpg

    d = metrics_tierd

    async def main():
        pool = await asyncpg.create_pool(host="127.0.0.1", port=d.port, user="tierd", database="tierd",
                                         min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                await conn.execute("SELECT pg_advisory_lock(4242)")
                await conn.execute("SET TimeZone = 'Asia/Tokyo'; SET application_name = 'pooled'")
                await conn.execute("LISTEN pooled_channel")
                async with conn.transaction():
                    await conn.execute("DECLARE pooled CURSOR WITH HOLD FOR SELECT 1")
            with d.connect() as other:  # released with the pool's reset
                assert other.execute("SELECT pg_try_advisory_lock(4242)").fetchone() == (True,)
                assert other.execute("SELECT pg_advisory_unlock(4242)").fetchone() == (True,)
            async with pool.acquire() as conn:  # the same connection, reset
                assert await conn.fetchval("SHOW TimeZone") == "UTC"
                assert await conn.fetchval("SHOW application_name") == ""
                assert await conn.fetch("SELECT * FROM pg_listening_channels()") == []
                assert await conn.fetchval("SELECT count(*) FROM pg_cursors") == 0
                row = await conn.fetchrow("SELECT pg_advisory_unlock_all()")
                assert list(row.keys()) == ["pg_advisory_unlock_all"] and row[0] is None
        finally:
            await asyncio.wait_for(pool.close(), 30)

    before = scrape(d.metrics_port)
    asyncio.run(main())
    after = scrape(d.metrics_port)
    assert used(after, "unlock_all") - used(before, "unlock_all") >= 3
    assert used(after, "pool_reset") - used(before, "pool_reset") >= 2  # the script as one call


def test_updates_of_keys_just_written_read_the_committed_batch(metrics_tierd):
    """pgbench's tellers and branches: every transaction updates a key the previous one just
    wrote. Its current version comes from the batch group commit handed over (no LevelDB read),
    and must equal what the general path reads: across two sessions, explicit transactions,
    a rolled-back one and a flush in the middle."""
    with metrics_tierd.connect() as a, metrics_tierd.connect() as b:
        for t in ("ctr", "ctr_g"):
            a.execute(f"CREATE TABLE public.{t} (id INT PRIMARY KEY, n BIGINT NOT NULL, v TEXT) "
                      "WITH (FLUSH_POLICY = 'manual')")
            a.execute(f"INSERT INTO public.{t} SELECT i, 0, 'v' FROM range(1, 4) r(i)")
        before = scrape(metrics_tierd.metrics_port)
        expected = {1: 0, 2: 0, 3: 0}
        for i in range(120):
            c = a if i % 2 else b
            k, delta = 1 + i % 3, i - 60
            for t, where in (("ctr", "id = %s"), ("ctr_g", "id = %s AND true")):
                if i % 5 == 0:  # an explicit transaction that reads its own write back
                    with c.transaction():
                        c.execute(f"UPDATE public.{t} SET n = n + %s, v = %s WHERE {where}", (delta, f"t{i}", k))
                        assert c.execute(f"SELECT n FROM public.{t} WHERE id = %s", (k,)).fetchone()[0] == \
                            expected[k] + delta
                elif i % 7 == 0:  # rolled back: the committed batch before it stays the current one
                    c.execute("BEGIN")
                    c.execute(f"UPDATE public.{t} SET n = n + 1000 WHERE {where}", (k,))
                    c.execute("ROLLBACK")
                    continue
                else:
                    c.execute(f"UPDATE public.{t} SET n = n + %s, v = %s WHERE {where}", (delta, f"a{i}", k))
            if i % 7 or i % 5 == 0:
                expected[k] += delta
            if i == 60:
                for t in ("ctr", "ctr_g"):
                    assert a.execute(f"STORAGE FLUSH TABLE public.{t} WAIT").fetchone()[1] == "completed"
        got = dict(a.execute("SELECT id, n FROM public.ctr ORDER BY id").fetchall())
        assert got == expected
        assert a.execute("SELECT * FROM public.ctr ORDER BY id").fetchall() == \
            a.execute("SELECT * FROM public.ctr_g ORDER BY id").fetchall()
    after = scrape(metrics_tierd.metrics_port)
    assert used(after, "committed_batch") - used(before, "committed_batch") >= 50
    assert used(after, "keyed_update") - used(before, "keyed_update") >= 100


def test_connection_checks_are_answered_without_duckdb(metrics_tierd):
    """`SELECT 1`, as Django's connection health checks and PgBouncer 1.18's default
    server_check_query send it, is answered without a DuckDB query, with the general path's
    column and type (int4 `?column?`, or the alias), in both protocols; anything more goes to
    DuckDB."""
    d = metrics_tierd
    before = scrape(d.metrics_port)
    with d.connect() as c:
        for sql, general in (("SELECT 1", "SELECT 1 + 0"), ("select 42 AS ok", "SELECT 41 + 1 AS ok"),
                             ('SELECT -7 AS "Mixed Case"', 'SELECT -7 + 0 AS "Mixed Case"')):
            fast, slow = c.execute(sql), c.execute(general)
            assert [(f.name, f.type_code) for f in fast.description] == \
                [(f.name, f.type_code) for f in slow.description]
            expected = slow.fetchall()
            assert fast.fetchall() == expected
            cur = c.cursor()
            cur.execute(sql, prepare=True)   # the extended protocol: Describe, then Execute
            assert cur.description[0].type_code == 23 and cur.fetchall() == expected
        assert c.execute("SELECT 1 FROM (VALUES (1), (2)) v").fetchall() == [(1,), (1,)]
        bare = c.execute("SELECT 3 x")   # a label without AS: the general path (it knows the keywords)
        assert bare.description[0].name == "x" and bare.fetchall() == [(3,)]
    after = scrape(d.metrics_port)
    assert used(after, "constant_select") - used(before, "constant_select") == 6


def test_aggregate_types_are_kept_until_the_catalog_changes(metrics_tierd):
    """A repeated query's sum/avg result types (PostgreSQL's: sum(int) bigint, sum(bigint) and
    avg numeric) are worked out once per text; an ALTER TABLE that widens the column or a new
    search path gives the types a fresh analysis gives."""
    port = metrics_tierd.metrics_port
    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.agg (id BIGINT PRIMARY KEY, i INT)")
        c.execute("INSERT INTO public.agg VALUES (1, 2), (2, 3)")
        c.execute("CREATE NAMESPACE aggns")
        c.execute("CREATE TABLE aggns.agg (id BIGINT PRIMARY KEY, i BIGINT)")
        c.execute("INSERT INTO aggns.agg VALUES (1, 40)")
        sql = "SELECT sum(i), avg(i) FROM agg"
        before = scrape(port)
        results = [c.execute(sql) for _ in range(5)]
        after = scrape(port)
        assert used(after, "read_analysis") - used(before, "read_analysis") >= 4
        for cur in results:
            assert [d.type_code for d in cur.description] == [20, 1700]  # bigint, numeric
            assert cur.fetchone() == (5, Decimal("2.5000000000000000"))
        c.execute("ALTER TABLE public.agg ALTER COLUMN i TYPE BIGINT")
        cur = c.execute(sql)
        assert [d.type_code for d in cur.description] == [1700, 1700]  # sum(bigint) is numeric
        assert cur.fetchone() == (Decimal(5), Decimal("2.5000000000000000"))
        c.execute("SET search_path = aggns")
        assert c.execute(sql).fetchone() == (Decimal(40), Decimal("40.0000000000000000"))


# ---------------------------------------------------------------- runs of Binds (protocol/batch.py)
def _parse(sql: str) -> bytes:
    return message(b"P", b"s\0" + sql.encode() + b"\0" + struct.pack("!h3I", 3, 20, 25, 701))


def _bind(values: list, binary_id: bool = False, describe: bool = True) -> bytes:
    """Bind (id, v, x) as text, or the id as a binary int8; then Describe and Execute."""
    formats = struct.pack("!h3h", 3, 1, 0, 0) if binary_id else struct.pack("!h", 0)
    body = b"\0s\0" + formats + struct.pack("!h", len(values))
    for i, v in enumerate(values):
        if v is None:
            body += struct.pack("!i", -1)
            continue
        data = struct.pack("!q", v) if binary_id and i == 0 else str(v).encode()
        body += struct.pack("!i", len(data)) + data
    body += struct.pack("!h", 0)
    return (message(b"B", body) + (message(b"D", b"P\0") if describe else b"")
            + message(b"E", b"\0" + struct.pack("!i", 0)))


def _replies_of(rows: list[tuple[bool, str]]) -> list[bytes]:
    """The reply kinds Postgres sends for (described, tag) rows: BindComplete, NoData if
    described, CommandComplete."""
    out = []
    for described, _ in rows:
        out += [b"2", b"n", b"C"] if described else [b"2", b"C"]
    return out


def _raw_client(port: int) -> RawClient:
    c = RawClient(port)
    c.login()
    return c


def test_runs_of_binds_are_read_straight_off_the_buffer(metrics_tierd):
    """One packet of 200 Bind/Describe/Execute rows (some without Describe, NULLs, one Bind
    with a binary id: another frame) answers as one handler per message would, and the run
    reader held most rows."""
    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.runs (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION)")
    before = scrape(metrics_tierd.metrics_port)
    expected, packet, shape = [], _parse("INSERT INTO public.runs (id, v, x) VALUES ($1, $2, $3)"), []
    for i in range(200):
        v = None if i % 3 == 0 else f"röw-{i}"
        x = None if i % 7 == 0 else i * 0.25
        packet += _bind([i, v, x], binary_id=i == 150, describe=i % 5 != 0)
        shape.append((i % 5 != 0, "INSERT 0 1"))
        expected.append((i, v, x))
    with _raw_client(metrics_tierd.port) as raw:
        raw.send(packet + message(b"S", b""))
        replies = raw.until_ready()
        assert [k for k, _ in replies] == [b"1", *_replies_of(shape), b"Z"]
        assert {body for k, body in replies if k == b"C"} == {b"INSERT 0 1\0"}
    after = scrape(metrics_tierd.metrics_port)
    assert used(after, "bind_run") - used(before, "bind_run") >= 150
    with metrics_tierd.connect() as c:
        assert c.execute("SELECT * FROM public.runs ORDER BY id").fetchall() == expected


def test_a_bad_value_inside_a_run_is_postgres_error(metrics_tierd):
    """Row 60's id is not a bigint: the rows before it answered, then 22P02 worded as the Bind
    handler words it, the rest skipped to Sync, nothing written, the connection usable."""
    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.badrun (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION)")
    sql = "INSERT INTO public.badrun (id, v, x) VALUES ($1, $2, $3)"
    with _raw_client(metrics_tierd.port) as raw:   # the handler's wording of that one value
        raw.send(_parse(sql) + _bind(["6x0", "a", 1]) + message(b"S", b""))
        alone = errors_in(raw.until_ready())
    packet = _parse(sql) + b"".join(_bind([i if i != 60 else "6x0", "a", 1.5]) for i in range(100))
    with _raw_client(metrics_tierd.port) as raw:
        raw.send(packet + message(b"S", b""))
        replies = raw.until_ready()
        kinds = [k for k, _ in replies]
        assert kinds == [b"1", *_replies_of([(True, "")] * 60), b"E", b"Z"]
        (error,) = errors_in(replies)
        assert error["C"] == "22P02" and error == alone[0]
        assert raw.ask("SELECT count(*) FROM public.badrun")[1][1].endswith(b"0")
    with metrics_tierd.connect() as c:
        assert c.execute("SELECT count(*) FROM public.badrun").fetchone() == (0,)


def test_held_rows_run_before_sync_and_roll_back_with_it(metrics_tierd):
    """A long executemany runs what it holds while it waits for more (Postgres runs each
    Execute as it comes): 300 rows sent without Sync run at once; a duplicate key in the next
    part then fails that row with 23505 and rolls back the whole implicit transaction."""
    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.early (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION)")
    sql = "INSERT INTO public.early (id, v, x) VALUES ($1, $2, $3)"
    ran = lambda: used(scrape(metrics_tierd.metrics_port), "insert_batch")  # noqa: E731
    for duplicate in (True, False):
        with _raw_client(metrics_tierd.port) as raw:
            before = ran()
            raw.send(_parse(sql) + b"".join(_bind([i, f"v{i}", i]) for i in range(300)))
            deadline = time.monotonic() + 30
            while ran() == before:   # the held rows ran, though no Sync came
                assert time.monotonic() < deadline, "held rows did not run before Sync"
                time.sleep(0.02)
            rest = [5 if duplicate and i == 350 else i for i in range(300, 400)]
            raw.send(b"".join(_bind([i, f"v{i}", i]) for i in rest) + message(b"S", b""))
            replies = raw.until_ready()
            done = [body for k, body in replies if k == b"C"]
            if duplicate:
                assert len(done) == 350 and errors_in(replies)[0]["C"] == "23505"
            else:
                assert len(done) == 400 and not errors_in(replies)
        with metrics_tierd.connect() as c:
            assert c.execute("SELECT count(*), min(id), max(id) FROM public.early").fetchone() == \
                ((0, None, None) if duplicate else (400, 0, 399))


def test_long_pipelined_executemany_from_psycopg(metrics_tierd):
    """psycopg's own pipelined executemany of 5,000 rows: a duplicate late in it fails the
    whole executemany; without it every row is there as sent."""
    rows = [(i, None if i % 11 == 0 else f"r{i}", i / 8) for i in range(5000)]
    with metrics_tierd.connect(autocommit=True) as c:
        c.execute("CREATE TABLE public.longrun (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION)")
        sql = "INSERT INTO public.longrun (id, v, x) VALUES (%s, %s, %s)"
        with pytest.raises(psycopg.errors.UniqueViolation):
            with c.pipeline():
                c.cursor().executemany(sql, rows[:4000] + [(7, "dup", 0.0)] + rows[4000:])
        assert c.execute("SELECT count(*) FROM public.longrun").fetchone() == (0,)
        with c.pipeline():
            c.cursor().executemany(sql, rows)
        assert c.execute("SELECT * FROM public.longrun ORDER BY id").fetchall() == rows


def test_a_run_is_read_by_its_own_bind_decoders(metrics_tierd):
    """A named portal bound in binary between the unnamed portal's Bind and its Execute: the
    text Binds that follow are read as text (their own frame's decoders), not by the
    statement's latest, binary ones (12345678 must not become 3544952156018063160)."""
    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.frames (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE PRECISION)")
    sql = "INSERT INTO public.frames (id, v, x) VALUES ($1, $2, $3)"
    first = _bind([1, "a", 1])
    first = first[:first.index(b"D\x00\x00\x00\x06")]   # the Bind alone, executed after the other
    named = _bind([2, "b", 2], binary_id=True)
    named = message(b"B", b"p" + named[5:named.index(b"D\x00\x00\x00\x06")])   # into portal "p"
    packet = (_parse(sql) + first + named + message(b"E", b"p\0" + struct.pack("!i", 0))
              + message(b"E", b"\0" + struct.pack("!i", 0))
              + b"".join(_bind([12345678 + i, "t", 0.5]) for i in range(20)) + message(b"S", b""))
    with _raw_client(metrics_tierd.port) as raw:
        raw.send(packet)
        replies = raw.until_ready()
        assert not errors_in(replies)
    with metrics_tierd.connect() as c:
        ids = [r[0] for r in c.execute("SELECT id FROM public.frames ORDER BY id")]
    assert ids == [1, 2] + [12345678 + i for i in range(20)]


def test_insert_only_hot_rows_are_read_without_the_version_window(metrics_tierd):
    """The hot part of a table's view takes the newest-version window only while hot may
    hold superseded versions (engine/tiers/views.py full_view_sql): EXPLAIN shows it."""
    def plan(c) -> str:
        return "\n".join(r[1] for r in c.execute("EXPLAIN SELECT id, n FROM public.hw").fetchall())

    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.hw (id BIGINT PRIMARY KEY, n INT) WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO public.hw SELECT i, i FROM range(1000) r(i)")
        c.execute("STORAGE FLUSH TABLE public.hw WAIT")
        c.execute("INSERT INTO public.hw SELECT i, i FROM range(1000, 1100) r(i)")
        assert "WINDOW" not in plan(c) and "ANTI" not in plan(c)
        assert c.execute("SELECT count(*), sum(n) FROM public.hw").fetchone() == (1100, sum(range(1100)))
        c.execute("UPDATE public.hw SET n = 0 WHERE id = 1050")  # a hot key: two versions in hot
        assert "WINDOW" in plan(c)
        assert c.execute("SELECT count(*), sum(n) FROM public.hw").fetchone() == (1100, sum(range(1100)) - 1050)
        c.execute("STORAGE FLUSH TABLE public.hw WAIT")
        c.execute("INSERT INTO public.hw VALUES (5000, 1)")
        assert "WINDOW" not in plan(c)
        c.execute("DELETE FROM public.hw WHERE id = 5")  # a cold key: a tombstone in hot
        assert "WINDOW" in plan(c) and "ANTI" in plan(c)
        assert c.execute("SELECT count(*), sum(n) FROM public.hw").fetchone() == (1100, sum(range(1100)) - 1050 - 5 + 1)


@pytest.mark.parametrize("during", ["insert", "update"])
def test_rows_written_during_a_flush_keep_the_window_only_if_they_supersede(make_tierd, during):
    """A flush leaves behind the rows written while it ran. Plain INSERTs of new keys are
    read without the newest-version window afterwards; an UPDATE of a key the flush just
    moved keeps it (and the anti join), so the cold version stays hidden."""
    import threading

    from tests.daemon import wait_for

    d = make_tierd('[failpoints]\n"flush.before_manifest" = "sleep:1500"\n').start()
    try:
        with d.connect() as c:
            c.execute("CREATE TABLE public.fw (id BIGINT PRIMARY KEY, n INT) WITH (FLUSH_POLICY = 'manual')")
            c.execute("INSERT INTO public.fw SELECT i, i FROM range(100) r(i)")
            done = []

            def run_flush() -> None:
                with d.connect() as fc:
                    done.append(fc.execute("STORAGE FLUSH TABLE public.fw WAIT").fetchone())

            flush = threading.Thread(target=run_flush)
            flush.start()
            wait_for(lambda: c.execute("SELECT phase FROM system.jobs WHERE job_type = 'flush' AND status = 'running'"
                                       ).fetchone() == ("committing manifest",), timeout=30, what="the flush's commit")
            if during == "insert":
                c.execute("INSERT INTO public.fw VALUES (100, 100), (101, 101)")
            else:
                c.execute("UPDATE public.fw SET n = -1 WHERE id = 7")
            flush.join(timeout=60)
            assert done and done[0][1] == "completed"
            hot, cold = c.execute("SELECT hot_rows, cold_rows FROM system.tables WHERE table_name = 'fw'").fetchone()
            assert cold == 100 and hot == (2 if during == "insert" else 1)
            plan = "\n".join(r[1] for r in c.execute("EXPLAIN SELECT id, n FROM public.fw").fetchall())
            if during == "insert":
                assert "WINDOW" not in plan
                assert c.execute("SELECT count(*), sum(n) FROM public.fw").fetchone() == (102, sum(range(102)))
            else:
                assert "WINDOW" in plan and "ANTI" in plan
                assert c.execute("SELECT count(*), sum(n) FROM public.fw").fetchone() == (100, sum(range(100)) - 7 - 1)
                assert c.execute("SELECT n FROM public.fw WHERE id = 7").fetchall() == [(-1,)]
    finally:
        d.stop()
