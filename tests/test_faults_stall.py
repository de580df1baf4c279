"""Stalled clients, against the daemon as a process: a COPY whose client stops sending and a
writing transaction left idle hold up no other writer beyond the configured timeout, and a
writer that waits in vain is told who holds the write lock.
"""
from __future__ import annotations

import time

import psycopg
import pytest

from tests.raw_wire import RawClient, errors_in, message, query

IDLE_TIMEOUT = 2.0
CONFIG = f"""
[server]
idle_in_transaction_session_timeout_seconds = {IDLE_TIMEOUT}
[jobs]
lock_timeout_seconds = 5
"""


@pytest.fixture(scope="module")
def server(module_make_tierd):
    d = module_make_tierd(CONFIG).start()
    with d.connect() as c:
        c.execute("CREATE TABLE stall (id INT PRIMARY KEY, v TEXT)")
    return d


def test_stalled_copy_does_not_block_other_writers(server):
    with RawClient(server.port) as c:
        c.login()
        c.send(query("COPY stall FROM STDIN"))
        assert c.read()[0] == b"G"   # CopyInResponse
        c.send(message(b"d", b"1\tone\n2\ttwo\n"))   # some data, then nothing more for now
        with server.connect() as other:
            started = time.monotonic()
            other.execute("INSERT INTO stall VALUES (10, 'other writer')")
            # not waiting for the lock: a blocked writer would get 55P03 after the 5 s lock wait
            # (the bound leaves room for a loaded machine: 2.2 s seen under a parallel suite)
            assert time.monotonic() - started < 4.0
        c.send(message(b"d", b"3\tthree\n") + message(b"c", b""))
        replies = c.until_ready()
        assert not errors_in(replies) and (b"C", b"COPY 3\0") in replies
    with server.connect() as c:
        assert c.execute("SELECT count(*) FROM stall WHERE id IN (1, 2, 3, 10)").fetchone()[0] == 4


def test_idle_writing_transaction_is_ended_and_writers_go_on(server):
    idle = psycopg.connect(server.dsn)
    idle.execute("INSERT INTO stall VALUES (20, 'never committed')")   # holds the write lock now
    started = time.monotonic()
    with server.connect() as other:   # the same key: it waits for the idle transaction's row lock
        other.execute("INSERT INTO stall VALUES (20, 'waits at most the idle timeout')")
        waited = time.monotonic() - started
        assert waited < IDLE_TIMEOUT + 3.0, waited
        assert other.execute("SELECT v FROM stall WHERE id = 20").fetchall() == [
            ("waits at most the idle timeout",)]   # the idle one's row was rolled back
    with pytest.raises(psycopg.Error) as exc:
        idle.execute("SELECT 1")
    assert exc.value.sqlstate == "25P03"
    assert "terminating connection due to idle-in-transaction timeout" in str(exc.value)
    idle.close()


def test_stalled_copy_inside_a_writing_transaction_is_ended(server):
    """A COPY in a transaction that has written holds the write lock while it waits for its
    client's data: that wait is bounded by the idle timeout, like the wait between statements."""
    with RawClient(server.port) as c:
        c.login()
        c.send(query("BEGIN; INSERT INTO stall VALUES (30, 'in the transaction')"))
        assert not errors_in(c.until_ready())
        c.send(query("COPY stall FROM STDIN"))
        assert c.read()[0] == b"G"
        c.send(message(b"d", b"31\tone\n"))   # then nothing more
        started = time.monotonic()
        with server.connect() as other:
            other.execute("INSERT INTO stall VALUES (32, 'waits at most the idle timeout')")
            waited = time.monotonic() - started
            assert waited < IDLE_TIMEOUT + 3.0, waited
            assert other.execute("SELECT count(*) FROM stall WHERE id IN (30, 31)").fetchone()[0] == 0
        errors = errors_in(c.until_ready())   # the session ended: FATAL, then EOF
        assert [(e["S"], e["C"]) for e in errors] == [("FATAL", "25P03")], errors


def test_idle_reading_transaction_is_left_alone(server):
    with psycopg.connect(server.dsn) as reader:
        reader.execute("SELECT count(*) FROM stall")
        time.sleep(IDLE_TIMEOUT + 1.0)   # longer than the timeout: only writers are ended
        assert reader.execute("SELECT 1").fetchone() == (1,)
        reader.rollback()


def test_lock_wait_says_who_holds_the_write_lock(make_tierd):
    d = make_tierd("[server]\nidle_in_transaction_session_timeout_seconds = 0\n"
                   "[jobs]\nlock_timeout_seconds = 1\n").start()
    with d.connect() as c:
        c.execute("CREATE TABLE held (id INT PRIMARY KEY)")
    holder = d.connect(autocommit=False)
    holder.execute("INSERT INTO held VALUES (1)")
    try:
        with d.connect() as waiter:
            with pytest.raises(psycopg.errors.LockNotAvailable) as exc:
                # a write DuckDB evaluates needs the write lock alone (a VALUES row of another
                # key would not wait: tests/test_row_locks.py)
                waiter.execute("INSERT INTO held SELECT 2")
            assert 'held by a transaction of role "tierd"' in (exc.value.diag.message_detail or "")
    finally:
        holder.close()


@pytest.mark.parametrize("fmt", ["text", "csv"])
def test_copy_of_one_very_large_field(server, fmt):
    """A single 40 MiB field (longer than any parse block) is read whole, not refused with
    `straddles two block boundaries`, and the time grows linearly (no rescans per piece)."""
    size = 40 << 20
    key = 1000 + (fmt == "csv")
    line = (f"{key}\t" if fmt == "text" else f"{key},").encode() + b"y" * size + b"\n"
    with server.connect() as c:
        with c.cursor().copy(f"COPY stall FROM STDIN WITH (FORMAT {fmt})") as cp:
            for i in range(0, len(line), 1 << 16):
                cp.write(line[i:i + (1 << 16)])
        assert c.execute("SELECT length(v) FROM stall WHERE id = %s", (key,)).fetchone() == (size,)


def test_session_may_turn_the_idle_timeout_off(server):
    with psycopg.connect(server.dsn) as c:
        c.execute("SET idle_in_transaction_session_timeout = 0")
        c.execute("INSERT INTO stall VALUES (40, 'kept')")
        time.sleep(IDLE_TIMEOUT + 1.0)
        c.commit()   # still alive: the session asked for no timeout
    with server.connect() as c:
        assert c.execute("SELECT v FROM stall WHERE id = 40").fetchone() == ("kept",)
