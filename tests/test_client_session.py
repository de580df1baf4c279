"""Session behaviour with the real drivers: TimeZone in binary and text results, statement_timeout,
psycopg named cursors streaming a large result with flat daemon memory, LISTEN/NOTIFY
between connections (psycopg `notifies()`, asyncpg `add_listener`), advisory locks (a
blocked lock, cancel, disconnect, asyncpg's default pool), pg_stat_activity and
pg_terminate_backend."""
from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from zoneinfo import ZoneInfo

import asyncpg
import psycopg
import pytest

from tests.daemon import wait_for

NEW_YORK = ZoneInfo("America/New_York")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def arun(coro):
    return asyncio.run(coro)


async def aconnect(d, **kw) -> asyncpg.Connection:
    return await asyncpg.connect(host="127.0.0.1", port=d.port, user="tierd", database="tierd", timeout=10, **kw)


# ------------------------------------------------------------------ TimeZone

def test_psycopg_timestamptz_in_a_session_zone_text_and_binary(module_tierd):
    with module_tierd.connect(options="-c TimeZone=America/New_York") as c:
        assert c.info.parameter_status("TimeZone") == "America/New_York"
        sql = "SELECT '2026-07-04 08:30:45'::timestamptz AS t, '2026-07-04 08:30:45'::timestamptz::text AS s"
        for binary in (False, True):
            t, s = c.cursor(binary=binary).execute(sql).fetchone()
            assert s == "2026-07-04 08:30:45-04"
            assert t == dt.datetime(2026, 7, 4, 8, 30, 45, tzinfo=NEW_YORK)
            assert t.utcoffset() == dt.timedelta(hours=-4)
        # a parameter is an instant whatever zone the session has
        instant = dt.datetime(2026, 1, 15, 13, 0, tzinfo=dt.timezone.utc)
        got = c.execute("SELECT %s::timestamptz::text, date_trunc('day', %s::timestamptz)::text",
                        [instant, instant]).fetchone()
        assert got == ("2026-01-15 08:00:00-05", "2026-01-15 00:00:00-05")
        c.execute("SET TimeZone = 'Asia/Kolkata'")
        assert c.info.parameter_status("TimeZone") == "Asia/Kolkata"
        assert c.execute(sql).fetchone()[1] == "2026-07-04 08:30:45+05:30"


def test_asyncpg_timestamptz_under_server_settings_timezone(module_tierd):
    async def main():
        conn = await aconnect(module_tierd, server_settings={"timezone": "America/New_York"})
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS public.tz_events (id INT PRIMARY KEY, ts TIMESTAMPTZ)")
            await conn.execute("INSERT INTO public.tz_events VALUES (1, '2026-07-04 08:30:45')")
            instant = dt.datetime(2026, 3, 8, 6, 59, tzinfo=dt.timezone.utc)  # 01:59 EST
            await conn.execute("INSERT INTO public.tz_events VALUES (2, $1)", instant)
            rows = await conn.fetch("SELECT id, ts, ts::text AS s, extract(hour FROM ts)::int AS h, "
                                    "(ts + interval '1 hour')::text AS later FROM public.tz_events ORDER BY id")
            assert rows[0]["ts"] == dt.datetime(2026, 7, 4, 12, 30, 45, tzinfo=dt.timezone.utc)
            assert rows[0]["s"] == "2026-07-04 08:30:45-04" and rows[0]["h"] == 8
            assert rows[1]["ts"] == instant
            # one hour after 01:59 EST is 03:59 EDT (the clocks skip 02:00-03:00)
            assert rows[1]["s"] == "2026-03-08 01:59:00-05" and rows[1]["later"] == "2026-03-08 03:59:00-04"
            assert await conn.fetchval("SHOW TimeZone") == "America/New_York"
        finally:
            await conn.execute("DROP TABLE IF EXISTS public.tz_events")
            await conn.close()
    arun(main())


# ------------------------------------------------------------------ statement_timeout

def test_statement_timeout_from_startup_options_and_asyncpg(module_tierd):
    slow = "SELECT count(*) FROM range(100000000000) a"
    with module_tierd.connect(options="-c statement_timeout=300") as c:
        assert c.execute("SHOW statement_timeout").fetchone() == ("300ms",)
        start = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            c.execute(slow)
        assert time.monotonic() - start < 10
        assert c.execute("SELECT 1").fetchone() == (1,)

    async def main():
        conn = await aconnect(module_tierd, server_settings={"statement_timeout": "250ms"})
        try:
            with pytest.raises(asyncpg.exceptions.QueryCanceledError, match="statement timeout"):
                await conn.fetchval(slow)
            assert await conn.fetchval("SELECT 2") == 2
        finally:
            await conn.close()
    arun(main())


def test_cancel_request_says_user_request(module_tierd):
    with module_tierd.connect() as c:
        timer = threading.Timer(0.5, c.cancel)
        timer.start()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled, match="user request"):
                c.execute("SELECT count(*) FROM range(100000000000) a")
        finally:
            timer.cancel()


# ------------------------------------------------------------------ search_path and psql

def test_search_path_in_startup_options(module_tierd):
    with module_tierd.connect() as c:
        c.execute("CREATE SCHEMA IF NOT EXISTS sp_app")
        c.execute("CREATE TABLE IF NOT EXISTS sp_app.things (id INT PRIMARY KEY)")
        c.execute("INSERT INTO sp_app.things VALUES (1) ")
    with module_tierd.connect(options="-c search_path=sp_app,public") as c:
        assert c.execute("SELECT current_schema(), count(*) FROM things").fetchone() == ("sp_app", 1)
        names = [r[0] for r in c.execute(
            "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relkind = 'r' "
            "AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1").fetchall()]
        assert "things" in names   # what psql's \dt lists


# ------------------------------------------------------------------ cursors

def test_named_cursor_streams_a_million_rows_with_flat_daemon_memory(module_tierd):
    pid = module_tierd.proc.pid
    rows = 1_000_000
    with module_tierd.connect(autocommit=False) as c:
        cur = c.cursor("big")
        cur.itersize = 5000
        before = rss_mb(pid)
        cur.execute("SELECT i, repeat('x', 200) || i::VARCHAR AS pad FROM range(%s) t(i)", [rows])
        seen = 0
        total = 0
        peak = rss_mb(pid)   # DECLARE ran: a materialized result would show here already
        start_rss = None
        for i, pad in cur:
            assert i == seen
            total += len(pad)
            seen += 1
            if seen == 20_000:
                start_rss = rss_mb(pid)
            if seen % 50_000 == 0:
                peak = max(peak, rss_mb(pid))
        assert seen == rows
        result_mb = total / 1e6
        assert result_mb > 200   # the whole result would be this big; the daemon never holds it
        assert peak - before < 120, (before, peak)
        assert peak - start_rss < 60, (start_rss, peak)   # flat while iterating
        cur.close()
        c.commit()


def test_named_cursor_with_hold_and_parameters(module_tierd):
    with module_tierd.connect() as c:
        c.execute("CREATE TABLE public.cur_rows (id INT PRIMARY KEY, v TEXT)")
        c.execute("INSERT INTO public.cur_rows SELECT i, 'v' || i FROM range(100) t(i)")
        with c.cursor("held", withhold=True) as cur:
            cur.itersize = 7
            cur.execute("SELECT id, v FROM public.cur_rows WHERE id >= %s ORDER BY id", [90])
            assert cur.fetchmany(3) == [(90, "v90"), (91, "v91"), (92, "v92")]
            assert [r[0] for r in cur] == list(range(93, 100))
        c.execute("DROP TABLE public.cur_rows")


# ------------------------------------------------------------------ LISTEN / NOTIFY

def test_psycopg_notifications_between_connections(module_tierd):
    with module_tierd.connect() as listener, module_tierd.connect(autocommit=False) as sender:
        listener.execute("LISTEN jobs")
        got = []

        def collect():
            for n in listener.notifies(timeout=10, stop_after=2):
                got.append((n.channel, n.payload, n.pid))

        t = threading.Thread(target=collect)
        t.start()   # the listener waits, idle, for the server to write to it
        time.sleep(0.2)
        sender.execute("NOTIFY jobs, 'rolled back'")
        sender.rollback()
        sender.execute("NOTIFY jobs, 'first'")
        sender.execute("SELECT pg_notify('jobs', 'second')")
        sender.execute("SELECT pg_notify('other', 'not listened')")
        assert not got   # nothing before commit
        sender.commit()
        t.join(15)
        pid = sender.info.backend_pid
        assert got == [("jobs", "first", pid), ("jobs", "second", pid)]
        listener.execute("UNLISTEN *")
        assert listener.execute("SELECT count(*) FROM pg_listening_channels()").fetchone() == (0,)


def test_asyncpg_add_listener(module_tierd):
    async def main():
        listener = await aconnect(module_tierd)
        sender = await aconnect(module_tierd)
        try:
            queue: asyncio.Queue = asyncio.Queue()
            await listener.add_listener("events", lambda conn, pid, channel, payload: queue.put_nowait(
                (pid, channel, payload)))
            await sender.execute("NOTIFY events, 'hello'")
            async with sender.transaction():
                await sender.execute("SELECT pg_notify('events', $1)", "from a transaction")
            got = [await asyncio.wait_for(queue.get(), 10) for _ in range(2)]
            pid = sender.get_server_pid()
            assert got == [(pid, "events", "hello"), (pid, "events", "from a transaction")]
        finally:
            await listener.close()
            await sender.close()
    arun(main())


# ------------------------------------------------------------------ advisory locks

def test_blocked_advisory_lock_waits_and_can_be_cancelled(module_tierd):
    with module_tierd.connect() as a, module_tierd.connect() as b:
        a.execute("SELECT pg_advisory_lock(1001)")
        done = []

        def take():
            b.execute("SELECT pg_advisory_lock(1001)")
            done.append(time.monotonic())

        t = threading.Thread(target=take)
        t.start()
        wait_for(lambda: a.execute("SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = %s",
                                   [b.info.backend_pid]).fetchone() == ("Lock", "advisory"),
                 timeout=10, what="b waiting for the lock")
        assert not done
        a.execute("SELECT pg_advisory_unlock(1001)")
        t.join(10)
        assert done
        # now b holds it; a blocks until cancelled
        errors = []

        def blocked():
            try:
                a.execute("SELECT pg_advisory_lock(1001)")
            except psycopg.Error as exc:
                errors.append(exc)

        t = threading.Thread(target=blocked)
        t.start()
        wait_for(lambda: b.execute("SELECT state, wait_event FROM pg_stat_activity WHERE pid = %s",
                                   [a.info.backend_pid]).fetchone() == ("active", "advisory"),
                 timeout=10, what="a waiting")
        a.cancel()
        t.join(10)
        assert len(errors) == 1 and isinstance(errors[0], psycopg.errors.QueryCanceled)
        # released when b's session ends
        b.close()
        wait_for(lambda: a.execute("SELECT pg_try_advisory_lock(1001)").fetchone() == (True,),
                 timeout=10, what="the lock released at disconnect")
        a.execute("SELECT pg_advisory_unlock_all()")


def test_asyncpg_default_pool_with_advisory_locks(module_tierd):
    async def main():
        pool = await asyncpg.create_pool(host="127.0.0.1", port=module_tierd.port, user="tierd", database="tierd",
                                         min_size=2, max_size=4)
        try:
            async def work(n: int) -> int:
                async with pool.acquire() as conn:
                    await conn.execute("SELECT pg_advisory_lock($1)", n % 3)
                    value = await conn.fetchval("SELECT $1::int * 2", n)
                    if n % 2:   # left held on purpose: the pool's reset query unlocks it
                        await conn.execute("SELECT pg_advisory_unlock($1)", n % 3)
                    return value
            results = await asyncio.gather(*(work(n) for n in range(24)))
            assert results == [n * 2 for n in range(24)]
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT pg_try_advisory_lock(0) AND pg_try_advisory_lock(1) "
                                           "AND pg_try_advisory_lock(2)")
        finally:
            await pool.close()
    arun(main())


# ------------------------------------------------------------------ pg_stat_activity, terminate

def test_backend_pid_activity_and_terminate(module_tierd):
    with module_tierd.connect(application_name="watcher") as a, \
            module_tierd.connect(application_name="victim") as b:
        assert a.execute("SELECT pg_backend_pid()").fetchone() == (a.info.backend_pid,)
        rows = dict(a.execute("SELECT application_name, pid FROM pg_stat_activity "
                              "WHERE application_name IN ('watcher', 'victim')").fetchall())
        assert rows == {"watcher": a.info.backend_pid, "victim": b.info.backend_pid}
        b.execute("BEGIN")
        b.execute("SELECT 42")
        state, query = a.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s",
                                 [b.info.backend_pid]).fetchone()
        assert (state, query) == ("idle in transaction", "SELECT 42")
        assert a.execute("SELECT pg_terminate_backend(%s)", [b.info.backend_pid]).fetchone() == (True,)
        with pytest.raises(psycopg.OperationalError):
            b.execute("SELECT 1")
        wait_for(lambda: a.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                   [b.info.backend_pid]).fetchone() == (0,), timeout=10, what="b gone")


def test_text_timestamptz_parameter_without_offset_is_session_wall_time(module_tierd):
    """A timestamptz parameter sent as text without an offset (declared type timestamptz) is
    read in the session TimeZone, as PostgreSQL reads it."""
    with module_tierd.connect(options="-c TimeZone=Asia/Kolkata") as c:
        # psycopg sends a str as unknown (OID 0): declare timestamptz (1184) at the libpq level
        got = c.pgconn.exec_params(b"SELECT $1::text", [b"2026-07-04 08:30:45"], [1184])
        assert got.get_value(0, 0) == b"2026-07-04 08:30:45+05:30"
