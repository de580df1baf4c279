"""PK point SELECT's fast path (engine/session/reads.py `_point_plan`, engine/tiers/point_lookup.py,
protocol/types/cells.py) gives the general path's answers and is used.

One seeded history of a table with every common column type (hot, flushed, updated after a
flush, deleted, re-inserted, delta segments) is read key by key in the fast form
(`WHERE id = %s`) and in a form only DuckDB takes (`WHERE id = %s AND true`), over the extended
protocol in text and binary, and over the simple protocol with literal keys; the rows and their
types must be equal. `tierd_fast_path_total{path="point_select"}` proves which path ran. The
cached analysis of a text must follow GRANT/REVOKE, ALTER, DROP + CREATE of the same name and
the search path; USER tables and a non-UTC TimeZone answer as the general path does.
"""
import random

import psycopg
import pytest

from tests.daemon import scrape_metrics as scrape

COLUMNS = ("id BIGINT PRIMARY KEY, n INT, v TEXT, x DOUBLE PRECISION, d NUMERIC(12,2), ts TIMESTAMP, "
           "tz TIMESTAMPTZ, day DATE, b BOOLEAN, u UUID")
# `*` includes the uuid (answered as Arrow); the column list is all plain types (Python values)
SHAPES = [("SELECT * FROM public.pt WHERE id = {}", "SELECT * FROM public.pt WHERE id = {} AND true"),
          ("SELECT id, n, v, x, d, ts, tz, day, b FROM public.pt WHERE id = {}",
           "SELECT id, n, v, x, d, ts, tz, day, b FROM public.pt WHERE id = {} AND true")]


def used(m: dict, outcome: str = "used") -> float:
    return m.get(f'tierd_fast_path_total{{outcome="{outcome}",path="point_select"}}', 0.0)


def _flush(c, table="public.pt"):
    assert c.execute(f"STORAGE FLUSH TABLE {table} WAIT").fetchone()[1] in ("completed", "skipped")


def _compare(c, keys) -> int:
    """Every key read fast and slow, in each protocol and format; the count of fast reads."""
    fast_reads = 0
    for fast_sql, slow_sql in SHAPES:
        for binary in (False, True):
            cur = c.cursor(binary=binary)
            for k in keys:
                fast = cur.execute(fast_sql.format("%s"), (k,))
                got, types = fast.fetchall(), [d.type_code for d in fast.description]
                slow = cur.execute(slow_sql.format("%s"), (k,))
                assert repr(got) == repr(slow.fetchall()), (binary, k)  # repr: NaN equals NaN
                assert types == [d.type_code for d in slow.description]
                fast_reads += 1
        simple = psycopg.ClientCursor(c)
        for k in keys:
            got = simple.execute(fast_sql.format(k)).fetchall()
            assert repr(got) == repr(simple.execute(slow_sql.format(k)).fetchall()), ("simple", k)
            fast_reads += 1
    return fast_reads


def test_point_select_equals_the_general_path_and_is_used(metrics_tierd):
    rng = random.Random(2026_12_03)
    with metrics_tierd.connect() as c:
        c.execute(f"CREATE TABLE public.pt ({COLUMNS}) WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO public.pt SELECT i, i, 'v' || i, i * 0.37 - 5, i * 1.25, "
                  "TIMESTAMP '2026-01-01' + i * INTERVAL 1 HOUR + i * INTERVAL 7 MICROSECOND, "
                  "TIMESTAMPTZ '2026-03-29 00:30:00+00' + i * INTERVAL 17 MINUTE, DATE '1999-12-30' + CAST(i AS INTEGER), "
                  "i % 2 = 0, NULL FROM range(120) r(i)")
        c.execute("INSERT INTO public.pt (id, v, x) VALUES (1000, NULL, 'NaN'), (1001, 'é\u2603', 1e300)")
        changed = rng.sample(range(120), 16)
        keys = sorted({-1, 0, 1, 119, 120, 121, 1000, 1001, *changed, *rng.sample(range(120), 8)})
        before = scrape(metrics_tierd.metrics_port)
        total = _compare(c, keys)  # all hot
        _flush(c)
        total += _compare(c, keys)  # all cold
        for k in changed:  # newer hot versions and tombstones of cold keys
            if rng.random() < 0.6:
                c.execute("UPDATE public.pt SET v = %s, x = x * 2, b = NOT b WHERE id = %s", (f"u{k}", k))
            else:
                c.execute("DELETE FROM public.pt WHERE id = %s", (k,))
        c.execute("INSERT INTO public.pt (id, v) VALUES (121, 'new hot')")
        total += _compare(c, keys)
        _flush(c)  # updates and deletes of flushed keys: a delta segment
        total += _compare(c, keys)
        after = scrape(metrics_tierd.metrics_port)
    fell_back = used(after, "fallback") - used(before, "fallback")
    # every point-shaped read took the fast path; one may step aside when it lands in the
    # instant a commit is durable but not yet visible to readers (the view then answers)
    assert used(after) - used(before) + fell_back == total
    assert fell_back <= 3, fell_back


def test_point_select_in_other_time_zones_and_on_user_tables(metrics_tierd):
    with metrics_tierd.connect() as c:
        c.execute(f"CREATE TABLE IF NOT EXISTS public.pt ({COLUMNS}) WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO public.pt (id, tz, ts) VALUES (5000, '2026-03-29 00:59:59+00', '2026-01-01 10:00'), "
                  "(5001, '1969-12-31 23:00:00.5+00', NULL) ON CONFLICT DO NOTHING")
        for zone in ("Asia/Kolkata", "America/New_York", "UTC"):
            c.execute(f"SET TimeZone = '{zone}'")
            before = used(scrape(metrics_tierd.metrics_port))
            _compare(c, [5000, 5001])
            assert used(scrape(metrics_tierd.metrics_port)) > before
        c.execute("CREATE USER TABLE public.pu (id BIGINT PRIMARY KEY, v TEXT)")
        c.execute("CREATE USER pu_a WITH PASSWORD 'pw'")
        c.execute("CREATE USER pu_b WITH PASSWORD 'pw'")
        c.execute("GRANT SELECT, INSERT ON public.pu TO pu_a, pu_b")
    for user in ("pu_a", "pu_b"):
        with metrics_tierd.connect_as(user, "pw") as u:
            u.execute("INSERT INTO public.pu VALUES (%s, %s)", (1 if user == "pu_a" else 2, user))
    with metrics_tierd.connect_as("pu_a", "pw") as a:
        for k in (1, 2):  # a USER table filters by owner: the general path answers
            assert a.execute("SELECT v FROM public.pu WHERE id = %s", (k,)).fetchall() == \
                a.execute("SELECT v FROM public.pu WHERE id = %s AND true", (k,)).fetchall()
        assert a.execute("SELECT v FROM public.pu WHERE id = 2").fetchall() == []
        assert a.execute("SELECT v FROM public.pu WHERE id = 1").fetchall() == [("pu_a",)]
    with metrics_tierd.connect() as c:  # a superuser sees every user's rows
        assert c.execute("SELECT v FROM public.pu WHERE id = 2").fetchall() == [("pu_b",)]


def test_cached_analysis_follows_catalog_changes(metrics_tierd):
    q = "SELECT * FROM pc WHERE id = %s"
    with metrics_tierd.connect() as c:
        c.execute("CREATE NAMESPACE IF NOT EXISTS other")
        c.execute("CREATE TABLE public.pc (id BIGINT PRIMARY KEY, v TEXT)")
        c.execute("INSERT INTO public.pc VALUES (1, 'a')")
        c.execute("CREATE USER pc_reader WITH PASSWORD 'pw'")
        with metrics_tierd.connect_as("pc_reader", "pw") as r:
            for _ in range(2):  # a refusal is never cached as an answer
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    r.execute(q, (1,))
            c.execute("GRANT SELECT ON public.pc TO pc_reader")
            assert r.execute(q, (1,)).fetchall() == [(1, "a")]
            assert r.execute(q, (1,)).fetchall() == [(1, "a")]
            c.execute("REVOKE SELECT ON public.pc FROM pc_reader")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                r.execute(q, (1,))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                r.execute("SELECT * FROM pc WHERE id = 1")  # the simple protocol's literal form too
            c.execute("ALTER USER pc_reader SUPERUSER")
            assert r.execute(q, (1,)).fetchall() == [(1, "a")]
            c.execute("ALTER USER pc_reader NOSUPERUSER")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                r.execute(q, (1,))
        assert c.execute(q, (1,)).fetchall() == [(1, "a")]
        c.execute("ALTER TABLE public.pc ADD COLUMN w INT DEFAULT 7")
        assert c.execute(q, (1,)).fetchall() == [(1, "a", 7)]
        c.execute("ALTER TABLE public.pc RENAME COLUMN v TO vv")
        assert c.execute("SELECT vv FROM pc WHERE id = %s", (1,)).fetchall() == [("a",)]
        c.execute("DROP TABLE public.pc")
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute(q, (1,))
        c.execute("CREATE TABLE public.pc (id BIGINT PRIMARY KEY, z DOUBLE PRECISION)")
        c.execute("INSERT INTO public.pc VALUES (1, 2.5)")
        assert c.execute(q, (1,)).fetchall() == [(1, 2.5)]
        c.execute("CREATE TABLE other.pc (id BIGINT PRIMARY KEY, s TEXT)")
        c.execute("INSERT INTO other.pc VALUES (1, 'other')")
        c.execute("SET search_path = other, public")
        assert c.execute(q, (1,)).fetchall() == [(1, "other")]
        c.execute("RESET search_path")
        assert c.execute(q, (1,)).fetchall() == [(1, 2.5)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # internals stay out of reach
            c.execute("SELECT * FROM __tierd.tables WHERE id = 1")


def test_untyped_text_keys_take_the_fast_path(metrics_tierd):
    """pgbench -M prepared and psycopg's str parameters send the key as untyped text: read as
    the integer Postgres reads (`+07` is 7), on the fast path."""
    with metrics_tierd.connect() as c:
        c.execute("CREATE TABLE public.pk_text (id INT PRIMARY KEY, v TEXT)")
        c.execute("INSERT INTO public.pk_text VALUES (7, 'seven'), (-3, 'minus three')")
        before = used(scrape(metrics_tierd.metrics_port))
        for text, want in (("7", [(7, "seven")]), (" -3 ", [(-3, "minus three")]), ("+07", [(7, "seven")]),
                           ("8", [])):
            assert c.execute("SELECT id, v FROM public.pk_text WHERE id = %s", (text,)).fetchall() == want
        assert used(scrape(metrics_tierd.metrics_port)) >= before + 4
