"""Group commit (engine/storage/group_commit.py): concurrent autocommit writers share fsyncs, and
still every acknowledged write survives kill -9, keys stay unique, writers that read (UPDATE)
see every commit queued before them, and a flush never drops a queued commit."""
import threading

import psycopg
import pytest

from engine.storage.group_commit import CommitQueue
from engine.storage.hot_store import HotStore
from tests.daemon import free_port, scrape_metrics, wait_for

WRITERS = 8


def _table(d, flush_policy="manual"):
    with d.connect() as c:
        c.execute("CREATE NAMESPACE app")
        c.execute(f"CREATE TABLE app.t (id BIGINT PRIMARY KEY, body TEXT, n BIGINT) "
                  f"WITH (FLUSH_POLICY = '{flush_policy}')")


def _run(threads):
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a writer thread hung"


def test_concurrent_inserts_of_the_same_keys_succeed_once_each(tierd):
    _table(tierd)
    keys = list(range(300))
    won: list[int] = []
    lost: list[int] = []
    errors: list[BaseException] = []

    def writer(w):
        try:
            with tierd.connect() as c:
                r = w * 37 % len(keys)
                order = keys[r:] + keys[:r]  # every writer tries every key, starting elsewhere
                for k in order:
                    try:
                        c.execute("INSERT INTO app.t (id, body, n) VALUES (%s, %s, %s)", (k, f"w{w}", w))
                        won.append(k)
                    except psycopg.errors.UniqueViolation:
                        lost.append(k)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    _run([threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)])
    assert not errors
    assert sorted(won) == keys  # every key inserted exactly once
    assert len(lost) == len(keys) * (WRITERS - 1)
    with tierd.connect() as c:
        assert c.execute("SELECT count(*), count(DISTINCT id) FROM app.t").fetchone() == (300, 300)
        rows = dict(c.execute("SELECT id, body FROM app.t").fetchall())
    assert set(rows) == set(keys)


def test_updates_see_every_commit_queued_before_them(tierd):
    """A counter bumped by concurrent UPDATEs while inserts keep the commit queue busy: an
    UPDATE that read the row before an earlier queued version became visible would lose an
    increment."""
    _table(tierd)
    with tierd.connect() as c:
        c.execute("INSERT INTO app.t VALUES (-1, 'counter', 0)")
    bumps, per = 4, 40
    errors: list[BaseException] = []
    stop = threading.Event()

    def bumper():
        try:
            with tierd.connect() as c:
                for _ in range(per):
                    c.execute("UPDATE app.t SET n = n + 1 WHERE id = -1")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def inserter(w):
        try:
            with tierd.connect() as c:
                i = 0
                while not stop.is_set():
                    c.execute("INSERT INTO app.t VALUES (%s, 'x', 0)", (w * 1_000_000 + i,))
                    i += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    inserters = [threading.Thread(target=inserter, args=(w,)) for w in range(4)]
    for t in inserters:
        t.start()
    try:
        _run([threading.Thread(target=bumper) for _ in range(bumps)])
    finally:
        stop.set()
        for t in inserters:
            t.join(timeout=60)
    assert not errors
    with tierd.connect() as c:
        assert c.execute("SELECT n FROM app.t WHERE id = -1").fetchone() == (bumps * per,)
        assert c.execute("SELECT count(*) = count(DISTINCT id) FROM app.t").fetchone() == (True,)


def test_flush_while_many_commit_keeps_every_row_once(tierd):
    _table(tierd)
    acked: list[list[int]] = [[] for _ in range(WRITERS)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(w):
        try:
            with tierd.connect() as c:
                i = 0
                while not stop.is_set() or i < 50:
                    k = w * 1_000_000 + i
                    c.execute("INSERT INTO app.t VALUES (%s, %s, %s)", (k, f"row {k}", i))
                    acked[w].append(k)
                    i += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    try:
        with tierd.connect() as c:
            for _ in range(4):
                wait_for(lambda: sum(map(len, acked)) > 0, timeout=60, what="some inserts")
                status = c.execute("STORAGE FLUSH TABLE app.t WAIT").fetchone()[1]
                assert status in ("completed", "skipped")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert not errors
    want = {k for ks in acked for k in ks}
    with tierd.connect() as c:
        got = c.execute("SELECT id FROM app.t").fetchall()
        assert len(got) == len(want)
        assert {r[0] for r in got} == want
        assert c.execute("SELECT count(*) FROM app.t WHERE body <> 'row ' || id").fetchone() == (0,)


def test_kill9_while_many_commit_keeps_every_acknowledged_write(make_tierd):
    d = make_tierd().start()
    _table(d)
    acked: list[list[int]] = [[] for _ in range(WRITERS)]
    stop = threading.Event()

    def writer(w):
        try:
            with d.connect() as c:
                i = 0
                while not stop.is_set():
                    k = w * 1_000_000 + i
                    c.execute("INSERT INTO app.t VALUES (%s, %s, %s)", (k, f"row {k}", i))
                    acked[w].append(k)
                    i += 1
        except psycopg.OperationalError:
            return  # the daemon died under us: the in-flight insert is unacknowledged

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    wait_for(lambda: sum(map(len, acked)) > 400, timeout=120, what="400 acknowledged inserts")
    d.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    d.start()
    want = {k for ks in acked for k in ks}
    with d.connect() as c:
        got = [r[0] for r in c.execute("SELECT id FROM app.t").fetchall()]
        assert len(got) == len(set(got))
        assert want <= set(got), f"{len(want - set(got))} acknowledged rows lost"
        # at most each writer's one in-flight insert was durable without its acknowledgement
        assert len(set(got) - want) <= WRITERS
        # and the table still takes writes with unique keys after recovery
        c.execute("INSERT INTO app.t VALUES (-5, 'after', 0)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            c.execute("INSERT INTO app.t VALUES (%s, 'dup', 0)", (next(iter(want)),))


def test_a_failed_group_write_publishes_nothing_and_undoes(tmp_path):
    """The leader's LevelDB write fails: every ticket of the group gets the error, nothing
    becomes visible, and each writer's undo runs (newest first)."""
    import pyarrow as pa

    store = HotStore(str(tmp_path / "hot"))
    published: list = []
    undone: list[int] = []
    q = CommitQueue(store, lambda batches, last_seq: published.extend(batches))
    rows = pa.table({"id": [1], "_seq": [1], "_deleted": [False]})
    ok = q.enqueue([(1, 1, rows)], 1, lambda: undone.append(1))
    q.wait(ok)
    assert len(published) == 1 and undone == [] and q.groups == 1
    store.close()  # the next write fails
    a = q.enqueue([(1, 2, rows)], 2, lambda: undone.append(2))
    b = q.enqueue([(1, 3, rows)], 3, lambda: undone.append(3))
    with pytest.raises(Exception):
        q.wait(a)
    with pytest.raises(Exception):
        q.wait(b)
    assert len(published) == 1
    assert undone == [3, 2]
    q.drain()  # nothing left to wait for, and the failure is not the drainer's


def test_concurrent_commits_share_fsyncs(make_tierd):
    """Writers that commit while the leader's synced write is in flight go into the next one
    together: fewer fsyncs than commits (the leader's write held 100 ms by a failpoint, so the
    others queue meanwhile), counted at /metrics."""
    port = free_port()
    d = make_tierd(f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
                   '[failpoints]\n"group_commit.before_write" = "sleep:100"\n').start()
    _table(d)
    before = scrape_metrics(port)
    per, errors = 10, []

    def writer(w):
        try:
            with d.connect() as c:
                for i in range(per):
                    c.execute("INSERT INTO app.t VALUES (%s, %s, %s)", (w * 1000 + i, "x", i))
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    _run([threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)])
    assert not errors
    after = scrape_metrics(port)
    commits = after["tierd_group_commits_total"] - before["tierd_group_commits_total"]
    fsyncs = after["tierd_group_commit_fsyncs_total"] - before["tierd_group_commit_fsyncs_total"]
    assert commits == WRITERS * per
    assert fsyncs < commits / 2, (fsyncs, commits)
    with d.connect() as c:
        assert c.execute("SELECT count(*) FROM app.t").fetchone() == (WRITERS * per,)
