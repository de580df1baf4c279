"""PK point lookups (engine/tiers/point_lookup.py) answer exactly what the hot ∪ cold view answers:
newest version wins, deleted stays deleted, across flushes, delta segments and compaction,
and while a flush moves rows under a running lookup. The reference query adds `AND true`,
which the fast path does not take. One daemon serves the module; each test has its own tables."""
import threading

import pyarrow as pa

from protocol.rows import plan_columns
from tests.daemon import wait_for
from tests.raw_wire import small_and_vectorised

FAST = "SELECT id, v, n FROM app.t WHERE id = %s"
SLOW = "SELECT id, v, n FROM app.t WHERE id = %s AND true"


def _same_answers(c, keys):
    for k in keys:
        fast = c.execute(FAST, (k,))
        got, types = fast.fetchall(), [d.type_code for d in fast.description]
        slow = c.execute(SLOW, (k,))
        assert got == slow.fetchall(), f"key {k}"
        assert types == [d.type_code for d in slow.description]


def _flush(c, table="app.t"):
    assert c.execute(f"STORAGE FLUSH TABLE {table} WAIT").fetchone()[1] in ("completed", "skipped")


def test_lookups_match_the_view_through_every_tier_change(module_tierd):
    keys = list(range(-3, 130))
    with module_tierd.connect() as c:
        c.execute("CREATE NAMESPACE IF NOT EXISTS app")
        c.execute("CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT, n DOUBLE PRECISION) "
                  "WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO app.t SELECT i, 'v' || i, i * 0.5 FROM range(0, 100) t(i)")
        _same_answers(c, keys)  # all hot
        _flush(c)
        _same_answers(c, keys)  # all cold, base segment
        c.execute("UPDATE app.t SET v = 'new' WHERE id < 10")  # newer hot versions of cold keys
        c.execute("DELETE FROM app.t WHERE id BETWEEN 10 AND 14")  # hot tombstones of cold keys
        c.execute("INSERT INTO app.t SELECT i, 'h' || i, NULL FROM range(100, 120) t(i)")
        c.execute("DELETE FROM app.t WHERE id = 119")
        c.execute("INSERT INTO app.t VALUES (12, 'back', 1)")  # deleted, then inserted again
        for i in range(120, 125):
            c.execute("INSERT INTO app.t VALUES (%s, %s, %s)", (i, f"single {i}", i))  # one batch each
        _same_answers(c, keys)
        assert c.execute(FAST, (3,)).fetchone() == (3, "new", 1.5)
        assert c.execute(FAST, (11,)).fetchone() is None
        assert c.execute(FAST, (12,)).fetchone() == (12, "back", 1.0)
        assert c.execute(FAST, (122,)).fetchone() == (122, "single 122", 122.0)
        _flush(c)  # updates and deletes of flushed keys: a delta segment (the fast path steps aside)
        _same_answers(c, keys)
        assert c.execute("STORAGE COMPACT TABLE app.t WAIT").fetchone()[1] == "completed"
        _same_answers(c, keys)
        # other shapes: a literal key, *, quoted names, a column subset in another order
        assert c.execute("SELECT * FROM app.t WHERE id = 5").fetchall() == [(5, "new", 2.5)]
        assert c.execute('SELECT "n", v FROM "app"."t" WHERE "id" = %s', (7,)).fetchall() == [(3.5, "new")]
        assert c.execute("SELECT n FROM app.t WHERE id = -1").fetchall() == []


def test_non_integer_keys_and_other_filters_take_the_normal_path(db):
    c = db
    c.execute("CREATE TABLE s (k TEXT PRIMARY KEY, v INT) WITH (FLUSH_POLICY = 'manual')")
    c.execute("INSERT INTO s VALUES ('a', 1), ('b', 2)")
    _flush(c, "s")
    c.execute("UPDATE s SET v = 20 WHERE k = 'b'")
    assert c.execute("SELECT v FROM s WHERE k = %s", ("b",)).fetchall() == [(20,)]
    c.execute("CREATE TABLE m (a INT, b INT, v INT, PRIMARY KEY (a, b))")
    c.execute("INSERT INTO m VALUES (1, 1, 11), (1, 2, 12)")
    assert c.execute("SELECT v FROM m WHERE a = %s", (1,)).fetchall() in ([(11,), (12,)], [(12,), (11,)])
    c.execute("CREATE TABLE i (id INT PRIMARY KEY, v INT)")
    c.execute("INSERT INTO i VALUES (1, 10), (2, 20)")
    assert c.execute("SELECT v FROM i WHERE v = %s", (20,)).fetchall() == [(20,)]  # not the key
    assert c.execute("SELECT v FROM i WHERE id = %s", ("2",)).fetchall() == [(20,)]  # text parameter


def test_lookups_never_miss_a_row_while_flushes_move_it(module_tierd):
    """A flush swaps hot rows for a new segment under running lookups: every key that exists
    must be found every time (the seqlock makes a lookup that overlaps the swap fall back).
    Each round's rows are flushed straight from the queue of commits not yet appended to
    DuckDB, and the readers ask for them too: a lookup that fell back to the general path
    between the queue's drop and the view swap once found them nowhere."""
    tierd = module_tierd
    fast = FAST.replace("app.t", "app.moving")  # the module's daemon: a table of its own
    with tierd.connect() as c:
        c.execute("CREATE NAMESPACE IF NOT EXISTS app")
        c.execute("CREATE TABLE app.moving (id BIGINT PRIMARY KEY, v TEXT, n DOUBLE PRECISION) "
                  "WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO app.moving SELECT i, 'v' || i, i FROM range(0, 200) t(i)")
    stop = threading.Event()
    misses: list[int] = []
    errors: list[BaseException] = []
    done = [0]
    live = list(range(200))  # keys committed so far (appended only after their INSERT returns)

    def reader():
        try:
            with tierd.connect() as r:
                i = 0
                while not stop.is_set():
                    k = live[i % len(live)] if i % 2 else live[-1 - i % 50]  # old keys and the newest
                    row = r.execute(fast, (k,)).fetchone()
                    if row is None or row[0] != k:
                        misses.append(k)
                    i += 37
                    done[0] += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        with tierd.connect() as c:
            for round_ in range(8):
                first = 1000 + round_ * 50
                c.execute("INSERT INTO app.moving SELECT i, 'x', 0 FROM range(%s, %s) t(i)", (first, first + 50))
                live.extend(range(first, first + 50))
                _flush(c, "app.moving")
                wait_for(lambda: done[0] > 0, timeout=60, what="lookups running")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors
    assert not misses, f"{len(misses)} lookups missed an existing row, e.g. key {misses[0]}"


def test_small_results_are_encoded_byte_for_byte_like_large_ones():
    import datetime as dt
    import decimal

    table = pa.table({
        "i": pa.array([1, None, -3], pa.int32()), "l": [2**40, None, -1], "s": ["x", None, "zz"],
        "f": [1.5, 2.0, None], "ts": [dt.datetime(2024, 1, 1, 1, 2, 3), None, dt.datetime(2020, 5, 5)],
        "b": [True, False, None], "d": pa.array([decimal.Decimal("1.25"), None, decimal.Decimal("-3.10")],
                                                pa.decimal128(10, 2)),
        "day": [dt.date(2024, 2, 29), None, dt.date(1999, 12, 31)], "bin": [b"\x00\xff", None, b""],
    })
    batch = table.to_batches()[0]
    for formats in ((), (1,)):
        columns = plan_columns(table.schema, formats)
        small, large = small_and_vectorised(batch, columns)
        assert small == large
