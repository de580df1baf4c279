"""A large COPY FROM streamed into Parquet segments (engine/session/copy_segments.py).

The shared daemon streams from 1,000 rows on, in segments of 3,000 rows, so small inputs
cover several segments. Each test checks the answers against what Postgres gives for the
same COPY, that nothing of a failed COPY is visible or left on disk, and that the fast path
was taken (hot_rows stays 0) or fell back as it should. The crash tests kill the daemon in
the middle of a COPY and at its commit; the memory test measures the daemon's peak RSS.
"""
from __future__ import annotations

import glob
import os
import threading

import psycopg
import pytest

from tests.daemon import wait_for
from tests.helpers import scope_dir

SMALL = "[copy]\nsegment_threshold_rows = 1000\nsegment_rows = 3000\n"


@pytest.fixture(scope="module")
def seg(module_make_tierd):
    return module_make_tierd(SMALL).start()


@pytest.fixture
def c(seg):
    with seg.connect(connect_timeout=10) as conn:
        yield conn


def copy_in(conn, sql: str, data: str) -> str:
    with conn.cursor() as cur:
        with cur.copy(sql) as cp:
            cp.write(data)
        return cur.statusmessage


def lines(ids, text: str = "v") -> str:
    return "".join(f"{i}\t{text}{i}\n" for i in ids)


PAD = "x" * 1000  # rows of ~1 KB: 9,000 of them fill more than one 8 MiB parse block


def hot_rows(conn, name: str) -> int:
    return conn.execute("SELECT hot_rows FROM system.tables WHERE table_name = %s", (name,)).fetchone()[0]


def load_files(d, table: str, ns: str = "public") -> list[str]:
    return glob.glob(os.path.join(scope_dir(d.data_dir, ns, table), "**", "batch-load-*"), recursive=True)


def test_large_copy_goes_to_segments_small_one_stays_hot(c, seg):
    c.execute("CREATE TABLE s_big (id BIGINT PRIMARY KEY, v TEXT)")
    assert copy_in(c, "COPY s_big FROM STDIN", lines(range(10_000))) == "COPY 10000"
    assert c.execute("SELECT count(*), sum(id), min(v), max(v) FROM s_big").fetchone() == \
        (10_000, 10_000 * 9_999 // 2, "v0", "v9999")
    assert hot_rows(c, "s_big") == 0  # straight to Parquet: no hot row, no key index entry
    assert len(load_files(seg, "s_big")) == 4  # 3,000-row segments
    assert c.execute("SELECT v FROM s_big WHERE id = 4321").fetchone() == ("v4321",)
    assert copy_in(c, "COPY s_big FROM STDIN", lines(range(20_000, 20_100))) == "COPY 100"
    assert hot_rows(c, "s_big") == 100  # below the threshold: the hot tier, as before
    c.execute("UPDATE s_big SET v = 'new' WHERE id = 5")
    c.execute("DELETE FROM s_big WHERE id = 6")
    assert c.execute("SELECT count(*) FROM s_big").fetchone() == (10_099,)
    assert c.execute("SELECT v FROM s_big WHERE id = 5").fetchone() == ("new",)


def test_few_wide_rows_stream_too(c, seg):
    """70 rows of 1 MiB: fewer rows than the threshold, but more than 64 MiB of them."""
    c.execute("CREATE TABLE s_wide (id BIGINT PRIMARY KEY, v TEXT)")
    with c.cursor() as cur:
        with cur.copy("COPY s_wide FROM STDIN") as cp:
            for i in range(70):
                cp.write(f"{i}\t{'w' * (1 << 20)}\n")
        assert cur.statusmessage == "COPY 70"
    assert hot_rows(c, "s_wide") == 0 and load_files(seg, "s_wide")
    assert c.execute("SELECT count(*), sum(length(v)) FROM s_wide").fetchone() == (70, 70 << 20)


@pytest.mark.parametrize("case, data, line, key", [
    ("within a segment", lines(range(2000)) + lines([17]), 2001, 17),
    ("across segments", lines(range(5000)) + lines([4500]) + lines(range(5000, 8000)) + lines([10]), 5001, 4500),
    ("later segment repeats an earlier one", lines(range(0, 6000, 2)) + lines(range(1, 6000, 2)) + lines([2]),
     6001, 2),
])
def test_duplicate_in_the_copy_names_its_line_and_writes_nothing(c, seg, case, data, line, key):
    name = f"s_dup_{line}"
    c.execute(f"CREATE TABLE {name} (id BIGINT PRIMARY KEY, v TEXT)")
    with pytest.raises(psycopg.errors.UniqueViolation) as e:
        copy_in(c, f"COPY {name} FROM STDIN", data)
    assert str(e.value.diag.message_primary) == f'duplicate key value violates unique constraint "{name}_pkey"'
    assert e.value.diag.message_detail == f"Key (id)=({key}) already exists."
    assert e.value.diag.context == f"COPY {name}, line {line}"
    assert c.execute(f"SELECT count(*) FROM {name}").fetchone() == (0,)
    assert load_files(seg, name) == []  # no orphan file of the failed COPY


def test_duplicate_against_hot_and_cold_rows(c, seg):
    c.execute("CREATE TABLE s_exist (id BIGINT PRIMARY KEY, v TEXT)")
    copy_in(c, "COPY s_exist FROM STDIN", lines(range(3000)))  # cold (segments)
    c.execute("INSERT INTO s_exist VALUES (100000, 'hot')")
    for dup in (1500, 100000):
        with pytest.raises(psycopg.errors.UniqueViolation) as e:
            copy_in(c, "COPY s_exist FROM STDIN", lines(range(50_000, 52_000)) + lines([dup]))
        assert e.value.diag.context == "COPY s_exist, line 2001"
        assert e.value.diag.message_detail == f"Key (id)=({dup}) already exists."
    assert c.execute("SELECT count(*) FROM s_exist").fetchone() == (3001,)
    assert len(load_files(seg, "s_exist")) == 1


def test_reloading_deleted_keys(c, seg):
    """A key deleted while hot (its tombstone would shadow a cold row: the COPY falls back to
    the hot tier) and a key deleted and flushed (its row goes to a delta segment)."""
    c.execute("CREATE TABLE s_del (id BIGINT PRIMARY KEY, v TEXT)")
    copy_in(c, "COPY s_del FROM STDIN", lines(range(3000)))
    c.execute("DELETE FROM s_del WHERE id IN (1, 2)")
    assert c.execute("STORAGE FLUSH TABLE public.s_del WAIT").fetchone()[1] == "completed"
    assert copy_in(c, "COPY s_del FROM STDIN", lines([1]) + lines(range(10_000, 12_000), "w")) == "COPY 2001"
    assert hot_rows(c, "s_del") == 0  # id 1 was deleted in cold: a delta segment, not a fallback
    c.execute("DELETE FROM s_del WHERE id = 3")  # a hot tombstone
    assert copy_in(c, "COPY s_del FROM STDIN", lines(range(20_000, 22_000)) + lines([3], "back")) == "COPY 2001"
    assert hot_rows(c, "s_del") > 0  # fell back to the hot tier
    expect = (3000 - 2 + 1 + 2000 + 2000, )
    assert c.execute("SELECT count(*) FROM s_del").fetchone() == expect
    assert c.execute("SELECT id, v FROM s_del WHERE id IN (1, 2, 3) ORDER BY id").fetchall() == \
        [(1, "v1"), (3, "back3")]
    for step in ("STORAGE FLUSH TABLE public.s_del WAIT", "STORAGE COMPACT TABLE public.s_del WAIT"):
        assert c.execute(step).fetchone()[1] == "completed"
        assert c.execute("SELECT count(*) FROM s_del").fetchone() == expect
        assert c.execute("SELECT id, v FROM s_del WHERE id IN (1, 2, 3) ORDER BY id").fetchall() == \
            [(1, "v1"), (3, "back3")]


def test_defaults_sequences_and_keyless_tables(c):
    c.execute("CREATE TABLE s_def (id BIGSERIAL PRIMARY KEY, v TEXT, n INT DEFAULT 7)")
    assert copy_in(c, "COPY s_def (v) FROM STDIN", "".join(f"x{i}\n" for i in range(5000))) == "COPY 5000"
    assert c.execute("SELECT count(DISTINCT id), min(id), max(id), min(n), max(n) FROM s_def").fetchone() == \
        (5000, 1, 5000, 7, 7)
    c.execute("INSERT INTO s_def (v) VALUES ('after')")
    assert c.execute("SELECT id FROM s_def WHERE v = 'after'").fetchone() == (5001,)
    c.execute("CREATE TABLE s_nokey (v TEXT, n INT)")
    assert copy_in(c, "COPY s_nokey FROM STDIN", "".join(f"a\t{i % 10}\n" for i in range(4000))) == "COPY 4000"
    assert copy_in(c, "COPY s_nokey FROM STDIN", "".join(f"a\t{i % 10}\n" for i in range(4000))) == "COPY 4000"
    assert c.execute("SELECT count(*), sum(n) FROM s_nokey").fetchone() == (8000, 2 * 18000)
    # each row has its own hidden row id: an UPDATE by value touches exactly its rows
    assert c.execute("UPDATE s_nokey SET n = 100 WHERE n = 3").rowcount == 800
    assert c.execute("SELECT count(*), count(*) FILTER (WHERE n = 100) FROM s_nokey").fetchone() == (8000, 800)
    assert c.execute("SELECT * FROM s_nokey LIMIT 1").description[0].name == "v"  # _rowid stays hidden


def test_user_table_rows_belong_to_the_copying_role(c, seg):
    c.execute("CREATE USER s_alice PASSWORD 'pw'")
    c.execute("CREATE USER s_bob PASSWORD 'pw'")
    c.execute("CREATE USER TABLE s_notes (id BIGINT PRIMARY KEY, v TEXT)")
    with seg.connect_as("s_alice", "pw") as a, seg.connect_as("s_bob", "pw") as b:
        assert copy_in(a, "COPY s_notes FROM STDIN", lines(range(4000), "a")) == "COPY 4000"
        assert copy_in(b, "COPY s_notes FROM STDIN", lines(range(2000), "b")) == "COPY 2000"  # same keys, own scope
        with pytest.raises(psycopg.errors.UniqueViolation):
            copy_in(b, "COPY s_notes FROM STDIN", lines(range(5000, 7000), "b") + lines([5], "b"))
        assert a.execute("SELECT count(*), min(v) FROM s_notes").fetchone() == (4000, "a0")
        assert b.execute("SELECT count(*), min(v) FROM s_notes").fetchone() == (2000, "b0")
    assert c.execute("SELECT _user_id, count(*) FROM s_notes GROUP BY 1 ORDER BY 1").fetchall() == \
        [("s_alice", 4000), ("s_bob", 2000)]


def test_without_insert_privilege(c, seg):
    c.execute("CREATE USER s_carol PASSWORD 'pw'")
    c.execute("CREATE TABLE s_priv (id BIGINT PRIMARY KEY)")
    with seg.connect_as("s_carol", "pw") as carol:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            copy_in(carol, "COPY s_priv FROM STDIN", "".join(f"{i}\n" for i in range(5000)))


def test_concurrent_writers_and_readers(c, seg):
    """While a streamed COPY reads its input, others write (no wait on the write lock) and
    read (none of the COPY's rows); a key another session wrote meanwhile fails the COPY at
    its commit, as Postgres' unique index would."""
    c.execute("CREATE TABLE s_conc (id BIGINT PRIMARY KEY, v TEXT)")
    half = threading.Event()
    go_on = threading.Event()
    outcome: list = []

    def copy(ids_before, ids_after) -> None:
        try:
            with seg.connect() as w, w.cursor() as cur:
                with cur.copy("COPY s_conc FROM STDIN") as cp:
                    cp.write(lines(ids_before, PAD))
                    half.set()
                    go_on.wait(120)
                    cp.write(lines(ids_after, PAD))
                outcome.append(cur.statusmessage)
        except psycopg.Error as e:
            outcome.append(e)

    for clash in (False, True):
        half.clear(), go_on.clear(), outcome.clear()
        base = 100_000 if clash else 0
        th = threading.Thread(target=copy, args=(range(base, base + 9000), range(base + 9000, base + 11_000)))
        th.start()
        assert half.wait(60)
        # one parse block read: segments of it are written (3,000 rows each), none visible
        wait_for(lambda: len(load_files(seg, "s_conc")) >= (6 if clash else 2), timeout=120, what="segments written")
        with seg.connect() as other:
            before = other.execute("SELECT count(*) FROM s_conc").fetchone()[0]
            assert before == (11_001 if clash else 0)
            # a key the COPY has already checked and written: its commit finds it
            other.execute("INSERT INTO s_conc VALUES (%s, 'other')", (base + 100 if clash else 50_000,))
            assert other.execute("SELECT count(*) FROM s_conc").fetchone()[0] == before + 1
        go_on.set()
        th.join(120)
        if clash:
            assert isinstance(outcome[0], psycopg.errors.UniqueViolation), outcome
            assert outcome[0].diag.message_detail == f"Key (id)=({base + 100}) already exists."
        else:
            assert outcome == ["COPY 11000"]
    assert c.execute("SELECT count(*) FROM s_conc").fetchone() == (11_002,)
    assert len(load_files(seg, "s_conc")) == 4  # the failed COPY's files are gone


def test_copy_fail_midway_leaves_nothing(c, seg):
    c.execute("CREATE TABLE s_fail (id BIGINT PRIMARY KEY, v TEXT)")
    class Abandon(Exception):
        pass

    with pytest.raises(Abandon):
        with c.cursor() as cur:
            with cur.copy("COPY s_fail FROM STDIN") as cp:
                cp.write(lines(range(10_000), PAD))
                wait_for(lambda: load_files(seg, "s_fail"), timeout=120, what="a segment written")
                raise Abandon()  # psycopg sends CopyFail
    assert c.execute("SELECT count(*) FROM s_fail").fetchone() == (0,)
    assert load_files(seg, "s_fail") == []


# ------------------------------------------------------------------ crashes
@pytest.mark.parametrize("step, survives", [
    ("copy.after_parquet", False),  # mid-COPY: some segments written
    ("copy.before_manifest", False),
    ("copy.after_manifest", True),  # the commit point has passed
])
def test_crash_mid_copy_and_at_commit(make_tierd, step, survives):
    d = make_tierd(SMALL).start()
    with d.connect() as conn:
        conn.execute("CREATE TABLE s_crash (id BIGINT PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO s_crash VALUES (-1, 'before')")
    d.stop()
    d = make_tierd(SMALL + f'[failpoints]\n"{step}" = "crash"\n').start()
    with pytest.raises(psycopg.OperationalError):
        with d.connect() as conn:
            copy_in(conn, "COPY s_crash FROM STDIN", lines(range(10_000)))
    d.wait_exit()
    d = make_tierd(SMALL).start()
    with d.connect() as conn:
        assert conn.execute("SELECT count(*) FROM s_crash").fetchone() == ((10_001,) if survives else (1,))
        assert len(load_files(d, "s_crash")) == (4 if survives else 0)  # orphans removed at start-up
        assert copy_in(conn, "COPY s_crash FROM STDIN", lines(range(20_000, 25_000))) == "COPY 5000"
        assert conn.execute("SELECT count(*) FROM s_crash").fetchone()[0] == (15_001 if survives else 5001)


def test_kill9_while_the_client_is_sending(make_tierd):
    d = make_tierd(SMALL).start()
    with d.connect() as conn:
        conn.execute("CREATE TABLE s_kill (id BIGINT PRIMARY KEY, v TEXT)")
    with pytest.raises(psycopg.OperationalError):
        with d.connect() as conn, conn.cursor() as cur:
            with cur.copy("COPY s_kill FROM STDIN") as cp:
                cp.write(lines(range(10_000), PAD))
                wait_for(lambda: len(load_files(d, "s_kill")) >= 2, timeout=120, what="segments written")
                d.kill9()
                cp.write(lines(range(7000, 8000)))
    d.restart()
    with d.connect() as conn:
        assert conn.execute("SELECT count(*) FROM s_kill").fetchone() == (0,)
        assert load_files(d, "s_kill") == []


# ------------------------------------------------------------------ memory
def test_peak_rss_of_one_large_copy_is_bounded(make_tierd):
    """One COPY of 2.5M rows: the daemon's peak RSS grows by far less than the rows' size
    (the old path held every row until its commit: about 1 GiB more for these rows)."""
    d = make_tierd().start()

    def hwm_mib() -> float:
        with open(f"/proc/{d.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024

    n = 2_500_000
    with d.connect() as conn:
        conn.execute("CREATE TABLE s_rss (id BIGINT PRIMARY KEY, device INT, kind TEXT, value DOUBLE PRECISION)")
        conn.execute("SELECT count(*) FROM s_rss").fetchone()
        before = hwm_mib()
        with conn.cursor() as cur:
            with cur.copy("COPY s_rss FROM STDIN") as cp:
                for lo in range(0, n, 100_000):
                    cp.write("".join(f"{i}\t{i % 100}\tkind{i % 5}\t{i * 0.5}\n" for i in range(lo, lo + 100_000)))
            assert cur.statusmessage == f"COPY {n}"
        assert conn.execute("SELECT count(*), count(DISTINCT kind) FROM s_rss").fetchone() == (n, 5)
        grown = hwm_mib() - before
        assert grown < 600, f"peak RSS grew by {grown:.0f} MiB during one {n:,}-row COPY"
        # COPY TO STDOUT of the whole table streams too: sent a batch at a time as it is read
        peak, got, total = hwm_mib(), 0, 0
        with conn.cursor().copy("COPY s_rss TO STDOUT") as cp:
            for data in cp:
                got += bytes(data).count(b"\n")
                total += len(data)
        assert got == n
        grown = hwm_mib() - peak
        assert grown < total / 2**20 / 2, f"peak RSS grew by {grown:.0f} MiB sending {total / 2**20:.0f} MiB"
