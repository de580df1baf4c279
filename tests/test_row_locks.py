"""Row locks (engine/tiers/write_locks.py), over the wire: transactions writing distinct keys
run together, a writer of a key another transaction holds waits and then builds on the
committed version (READ COMMITTED), a cycle of waits is 40P01 and a wait past lock_timeout
55P03, and a crash in the middle of open transactions loses nothing that was committed."""
from __future__ import annotations

import threading

import psycopg
import pytest

from tests.daemon import wait_for

CONFIG = "[server]\nidle_in_transaction_session_timeout_seconds = 0\n[jobs]\nlock_timeout_seconds = 20\n"


@pytest.fixture(scope="module")
def d(module_make_tierd):
    d = module_make_tierd(CONFIG).start()
    with d.connect() as c:
        c.execute("CREATE TABLE kv (id BIGINT PRIMARY KEY, n BIGINT, v TEXT) WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO kv SELECT i, 0, 'v' || i FROM range(1, 101) r(i)")
    return d


def n_of(c, key: int):
    row = c.execute("SELECT n FROM kv WHERE id = %s", (key,)).fetchone()
    return None if row is None else row[0]


def waiting_on_a_row(c) -> int:
    return c.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                     "AND wait_event = 'tuple'").fetchone()[0]


class Background:
    """A statement run on its own thread and connection: its outcome, once it has one."""

    def __init__(self, conn, sql: str, args=()):
        self.error: BaseException | None = None
        self.done = threading.Event()

        def run():
            try:
                conn.execute(sql, args)
            except BaseException as e:  # noqa: BLE001 - looked at by the test
                self.error = e
            finally:
                self.done.set()

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def result(self, timeout: float = 60) -> BaseException | None:
        assert self.done.wait(timeout), "the statement never ended"
        self.thread.join(timeout)
        return self.error


def test_distinct_keys_commit_while_another_transaction_is_open(d):
    """B writes and commits (UPDATE by key, INSERT of a new key) while A, which wrote other
    keys, is still open: with one write lock for the whole of A, B would wait for A's COMMIT
    (and fail with 55P03 here, since A commits only after B's COMMIT returned)."""
    a = d.connect(autocommit=False)
    b = d.connect(autocommit=False)
    try:
        a.execute("UPDATE kv SET n = n + 1 WHERE id = 1")
        a.execute("INSERT INTO kv (id, n, v) VALUES (1001, 1, 'a')")
        a.execute("SELECT now(), 1")  # reads no table: A keeps its row locks only
        b.execute("UPDATE kv SET n = n + 2 WHERE id = 2")
        b.execute("INSERT INTO kv (id, n, v) VALUES (1002, 2, 'b')")
        b.execute("DELETE FROM kv WHERE id = 3")
        b.commit()  # A still open
        with d.connect() as r:  # B's writes are visible, A's not yet
            assert [n_of(r, k) for k in (1, 2, 3, 1001, 1002)] == [0, 2, None, None, 2]
        assert [n_of(a, k) for k in (1, 2, 1001)] == [1, 2, 1]  # A sees its own writes and B's commit
        a.commit()
    finally:
        a.close()
        b.close()
    with d.connect() as r:
        assert [n_of(r, k) for k in (1, 2, 3, 1001, 1002)] == [1, 2, None, 1, 2]


def test_same_key_waits_then_adds_to_the_committed_value(d):
    a = d.connect(autocommit=False)
    try:
        a.execute("UPDATE kv SET n = n + 10 WHERE id = 10")
        with d.connect() as b, d.connect() as watcher:
            bg = Background(b, "UPDATE kv SET n = n + 1 WHERE id = 10")
            wait_for(lambda: waiting_on_a_row(watcher) == 1, timeout=30, what="B waiting for the row")
            assert not bg.done.is_set()
            a.commit()
            assert bg.result() is None
            assert n_of(watcher, 10) == 11  # B built on A's committed version, not the one before
    finally:
        a.close()


@pytest.mark.parametrize("end", ["commit", "rollback"])
def test_insert_of_a_key_another_transaction_inserts(d, end):
    """As in PostgreSQL: the second INSERT waits; after COMMIT it is a unique violation,
    after ROLLBACK it inserts."""
    key = 2000 if end == "commit" else 2001
    a = d.connect(autocommit=False)
    try:
        a.execute("INSERT INTO kv (id, n, v) VALUES (%s, 1, 'a')", (key,))
        with d.connect() as b, d.connect() as watcher:
            bg = Background(b, "INSERT INTO kv (id, n, v) VALUES (%s, 2, 'b')", (key,))
            wait_for(lambda: waiting_on_a_row(watcher) == 1, timeout=30, what="B waiting for the key")
            getattr(a, end)()
            err = bg.result()
            if end == "commit":
                assert isinstance(err, psycopg.errors.UniqueViolation)
                assert n_of(watcher, key) == 1
            else:
                assert err is None
                assert n_of(watcher, key) == 2
    finally:
        a.close()


def test_deadlock_is_40P01_and_the_other_goes_on(d):
    a = d.connect(autocommit=False)
    b = d.connect(autocommit=False)
    try:
        a.execute("UPDATE kv SET n = n + 1 WHERE id = 20")
        b.execute("UPDATE kv SET n = n + 1 WHERE id = 21")
        with d.connect() as watcher:
            bg = Background(a, "UPDATE kv SET n = n + 1 WHERE id = 21")  # A waits for B
            wait_for(lambda: waiting_on_a_row(watcher) == 1, timeout=30, what="A waiting for B's row")
            with pytest.raises(psycopg.errors.DeadlockDetected) as exc:
                b.execute("UPDATE kv SET n = n + 1 WHERE id = 20")  # B would wait for A
            assert exc.value.sqlstate == "40P01" and "deadlock detected" in str(exc.value)
            b.rollback()  # B's row lock goes: A's wait ends
            assert bg.result() is None
            a.commit()
            assert (n_of(watcher, 20), n_of(watcher, 21)) == (1, 1)
    finally:
        a.close()
        b.close()


def test_lock_timeout_is_55P03_and_the_session_goes_on(d):
    a = d.connect(autocommit=False)
    try:
        a.execute("UPDATE kv SET n = n + 1 WHERE id = 30")
        with d.connect() as b:
            b.execute("SET lock_timeout = '300ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable) as exc:
                b.execute("UPDATE kv SET n = n + 5 WHERE id = 30")
            assert exc.value.sqlstate == "55P03" and "lock timeout" in str(exc.value)
            assert 'held by a transaction of role "tierd"' in (exc.value.diag.message_detail or "")
            b.execute("UPDATE kv SET n = n + 5 WHERE id = 31")  # other keys still write
        a.commit()
    finally:
        a.close()
    with d.connect() as r:
        assert (n_of(r, 30), n_of(r, 31)) == (1, 5)


def waiting_for(c, event: str) -> int:
    return c.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = %s",
                     (event,)).fetchone()[0]


def test_two_transactions_needing_the_lock_alone_one_gets_40P01(d):
    """Both hold row locks; each then runs a statement that needs the write lock alone: each
    would wait for the other's end, so one is told 40P01 and the other goes on."""
    a = d.connect(autocommit=False)
    b = d.connect(autocommit=False)
    try:
        a.execute("UPDATE kv SET n = n + 1 WHERE id = 50")
        b.execute("UPDATE kv SET n = n + 1 WHERE id = 51")
        with d.connect() as watcher:
            bg = Background(a, "UPDATE kv SET n = n + 1 WHERE id BETWEEN 52 AND 53")  # waits for B
            wait_for(lambda: waiting_for(watcher, "relation") == 1, timeout=30, what="A waiting for the lock")
            with pytest.raises(psycopg.errors.DeadlockDetected):
                b.execute("UPDATE kv SET n = n + 1 WHERE id BETWEEN 54 AND 55")
            b.rollback()
            assert bg.result() is None
            a.commit()
            assert [n_of(watcher, k) for k in range(50, 56)] == [1, 0, 1, 1, 0, 0]
    finally:
        a.close()
        b.close()


def test_write_locks_exclude_as_documented():
    """engine/tiers/write_locks.py on its own: shared holders together, an exclusive one alone;
    a waiting exclusive holder keeps new shared ones out (no starvation); two threads without
    tokens of their own (background tasks) exclude each other."""
    from engine.errors import LockNotAvailable
    from engine.tiers.write_locks import WriteLocks

    locks = WriteLocks()
    locks.shared("a", "a", 1)
    locks.shared("b", "b", 1)
    locks.row("a", (1, 1), 1)
    with pytest.raises(LockNotAvailable):
        locks.row("b", (1, 1), 0.2)
    with pytest.raises(LockNotAvailable):
        locks.exclusive("x", "x", 0.2)
    got, waits = threading.Event(), threading.Event()
    t = threading.Thread(target=lambda: (locks.exclusive("x", "x", 30, lambda on: on and waits.set()), got.set()))
    t.start()
    assert waits.wait(30), "x never waited"
    with pytest.raises(LockNotAvailable):
        locks.shared("c", "c", 0.2)  # behind x
    locks.release("a")
    assert not got.is_set()
    locks.release("b")
    t.join(30)
    assert got.is_set() and locks.holds_exclusive("x")
    locks.release("x")
    locks.shared("c", "c", 1)
    locks.row("c", (1, 1), 1)  # a's row lock went with a
    locks.release("c")


def test_a_general_write_waits_for_row_locking_transactions(d):
    """A statement that needs the write lock alone (here an UPDATE by a predicate DuckDB
    evaluates) waits for the open row-locking transaction, then sees its committed rows."""
    a = d.connect(autocommit=False)
    try:
        a.execute("UPDATE kv SET n = 100 WHERE id = 40")
        with d.connect() as b:
            bg = Background(b, "UPDATE kv SET n = n + 1 WHERE id BETWEEN 40 AND 41")
            a.commit()  # whether B waited for this or came after it, it builds on A's row
            assert bg.result() is None
            assert (n_of(b, 40), n_of(b, 41)) == (101, 1)
    finally:
        a.close()


def test_kill9_with_open_transactions_loses_nothing_committed(make_tierd):
    d = make_tierd(CONFIG).start()
    with d.connect() as c:
        c.execute("CREATE TABLE kv (id BIGINT PRIMARY KEY, n BIGINT, v TEXT) WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO kv SELECT i, 0, 'v' || i FROM range(1, 11) r(i)")
    open_a = d.connect(autocommit=False)
    open_a.execute("UPDATE kv SET n = 99 WHERE id = 1")
    open_a.execute("INSERT INTO kv (id, n, v) VALUES (50, 99, 'uncommitted')")
    with d.connect(autocommit=False) as b:  # commits while A is open
        b.execute("UPDATE kv SET n = 7 WHERE id = 2")
        b.execute("INSERT INTO kv (id, n, v) VALUES (51, 7, 'committed')")
        b.commit()
    with d.connect() as c:
        c.execute("DELETE FROM kv WHERE id = 3")
    d.kill9()
    open_a.close()
    d.start()
    with d.connect() as c:
        assert [n_of(c, k) for k in (1, 2, 3, 50, 51)] == [0, 7, None, None, 7]
        c.execute("UPDATE kv SET n = n + 1 WHERE id = 1")  # the row lock died with the daemon
        c.execute("INSERT INTO kv (id, n, v) VALUES (52, 1, 'after')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            c.execute("INSERT INTO kv (id, n, v) VALUES (51, 0, 'dup')")
        assert c.execute("SELECT count(*), sum(n) FROM kv").fetchone() == (11, 16)
