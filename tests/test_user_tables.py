"""USER tables: each role's rows are private to it, stored in its own scope directory with its
own manifest; a superuser sees every row with its owner in `_user_id`.

Engine-level tests open sessions as different roles in-process; the wire tests start the
daemon (multi-user data is prepared in-process, then flushed and crashed over the wire). What
each user may write, read and own, statement by statement, is in tests/sql/user_tables/."""
from __future__ import annotations

import json
import os
from collections import Counter

import psycopg
import pyarrow.parquet as pq
import pytest

from engine.engine import Engine, EngineConfig
from engine.errors import EngineError
from tests.daemon import Tierd, wait_for
from tests.helpers import assert_cold_consistent

SUPERUSER = "tierd"
FLUSH_STEPS = [
    "flush.start",
    "flush.before_parquet",
    "flush.after_parquet",
    "flush.before_manifest",
    "flush.after_manifest",  # the first user's manifest is committed, the second's is not
    "flush.before_hot_cleanup",
]


class Sessions:
    """In-process sessions of one engine, one per role, created on first use."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.open: dict[str, object] = {}
        self.su = self[SUPERUSER]

    def __getitem__(self, user: str):
        if user not in self.open:
            if not self.engine.roles.exists(user):  # a role must exist before it connects
                self.su.execute(f"CREATE USER {user} WITH PASSWORD 'pw-{user}'")
            self.open[user] = self.engine.connect(user, "tierd")
        return self.open[user]

    def rows(self, user: str, sql: str, params: list | None = None) -> list[tuple]:
        result = self[user].execute(sql, params)[-1]
        return [tuple(r.values()) for r in result.table.to_pylist()] if result.table is not None else []

    def tag(self, user: str, sql: str) -> str:
        return self[user].execute(sql)[-1].tag

    def close(self) -> None:
        for s in self.open.values():
            s.close()


@pytest.fixture
def engine_factory(tmp_path):
    made: list[tuple[Engine, Sessions]] = []

    def make(**config) -> Sessions:
        eng = Engine(EngineConfig(data_dir=str(tmp_path / "data"), **config))
        s = Sessions(eng)
        made.append((eng, s))
        return s

    yield make
    for eng, s in made:
        s.close()
        eng.close()


def _setup(s: Sessions) -> None:
    s.tag(SUPERUSER, "CREATE NAMESPACE app")
    s.tag(SUPERUSER, "CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT) WITH (FLUSH_POLICY = 'manual')")
    s.tag("alice", "INSERT INTO app.notes VALUES (1, 'alice-secret-1'), (2, 'alice-secret-2'), (3, 'alice-3')")
    s.tag("bob", "INSERT INTO app.notes VALUES (1, 'bob-1'), (4, 'bob-4')")


def _all(s: Sessions) -> list[tuple]:
    return s.rows(SUPERUSER, "SELECT _user_id, id, body FROM app.notes ORDER BY _user_id, id")


def _storage(tmp_path, *parts) -> str:
    return os.path.join(str(tmp_path / "data"), "storage", *parts)


def test_each_user_sees_only_their_rows_before_and_after_flush(engine_factory, tmp_path):
    s = engine_factory()
    _setup(s)
    alice = [(1, "alice-secret-1"), (2, "alice-secret-2"), (3, "alice-3")]
    bob = [(1, "bob-1"), (4, "bob-4")]
    for phase in ("hot", "cold", "hot+cold"):
        assert s.rows("alice", "SELECT * FROM app.notes ORDER BY id") == alice, phase
        assert s.rows("bob", "SELECT * FROM app.notes ORDER BY id") == bob, phase
        assert _all(s) == [("alice",) + r for r in alice] + [("bob",) + r for r in bob], phase
        assert s.rows(SUPERUSER, "SELECT * FROM app.notes ORDER BY id, body")[0] == (1, "alice-secret-1")  # no _user_id
        if phase == "hot":
            assert s.rows(SUPERUSER, "STORAGE FLUSH TABLE app.notes WAIT")[0][1] == "completed"
        elif phase == "cold":
            s.tag("alice", "UPDATE app.notes SET body = 'alice-3' WHERE id = 3")  # a new hot version, same value
    for user in ("alice", "bob"):
        files = sorted(os.listdir(_storage(tmp_path, "app", "notes", user)))
        assert files == ["batch-0.parquet", "manifest.json"]
        with open(_storage(tmp_path, "app", "notes", user, "manifest.json")) as f:
            m = json.load(f)
        assert m["user_id"] == user and m["table_id"] == "app.notes" and len(m["segments"]) == 1
        owners = set(pq.read_table(_storage(tmp_path, "app", "notes", user, "batch-0.parquet")).column("_user_id").to_pylist())
        assert owners == {user}
    assert s.rows(SUPERUSER, "SELECT scope, row_count FROM system.manifest ORDER BY scope") == [("alice", 3), ("bob", 2)]
    assert s.rows("bob", "SELECT scope, row_count FROM system.manifest") == [("bob", 2)]
    assert s.rows("bob", "SELECT cold_rows FROM system.tables WHERE table_name = 'notes'") == [(2,)]
    assert s.rows(SUPERUSER, "SELECT cold_rows FROM system.tables WHERE table_name = 'notes'") == [(5,)]


def test_a_user_cannot_reach_another_users_rows_by_any_query(engine_factory):
    """Every query here runs as bob; alice's rows hold 'secret'. Each must either leave them
    out or be refused (42501 for escape routes, 0A000 for statements that are not queries)."""
    s = engine_factory()
    _setup(s)
    s.rows(SUPERUSER, "STORAGE FLUSH TABLE app.notes WAIT")
    s.tag("alice", "INSERT INTO app.notes VALUES (5, 'alice-secret-hot')")  # hot and cold both
    attempts = [
        "SELECT * FROM app.notes",
        "SELECT _user_id, id, body, _seq, _deleted FROM app.notes",
        "SELECT * FROM app.notes WHERE _user_id = 'alice'",
        "SELECT body FROM app.notes WHERE _user_id IS DISTINCT FROM 'bob' OR true",
        "SELECT a.body, b.body FROM app.notes a JOIN app.notes b ON a.id = b.id",
        "SELECT a.body FROM app.notes a CROSS JOIN app.notes b",
        "SELECT (SELECT string_agg(body, ',') FROM app.notes) AS s",
        "WITH x AS (SELECT * FROM app.notes) SELECT * FROM x",
        "SELECT * FROM (SELECT body FROM app.notes) t WHERE body LIKE '%secret%'",
        "SELECT body FROM app.notes UNION ALL SELECT manifest_json FROM system.manifest",
        "SELECT * FROM system.manifest",
        "SELECT message FROM system.jobs UNION ALL SELECT body FROM memory.app.notes",
        "SELECT * FROM memory.app.notes",
        "SELECT string_agg(body, ',') OVER () FROM app.notes",
        "SELECT * FROM __tierd.__hot.t1",
        'SELECT * FROM "__tierd"."__cold"."c1"',
        "SELECT * FROM __TIERD.app.notes",
        "SELECT * FROM query_table('__tie' || 'rd.__hot.t1')",
        "SELECT * FROM query('SELECT * FROM __tie' || 'rd.__cold.c1')",
        "SET VARIABLE tierd_all_users = true",
        "SET VARIABLE tierd_user = 'alice'",
        "RESET VARIABLE tierd_user",
        "SET tierd_all_users = true",
        "EXPLAIN ANALYZE SELECT * FROM app.notes",
        "SELECT * FROM app.notes; SET VARIABLE tierd_user = 'alice'",
    ]
    secret_file = os.path.join(s.engine.data_dir, "storage", "app", "notes", "alice", "batch-0.parquet")
    assert os.path.exists(secret_file)
    attempts += [f"SELECT * FROM read_parquet('{secret_file}')", f"SELECT * FROM '{secret_file}'",
                 f"SELECT * FROM parquet_scan(['{secret_file}'])"]
    for sql in attempts:
        try:
            out = s.rows("bob", sql)
        except EngineError as exc:
            assert exc.sqlstate in ("42501", "0A000", "42601"), (sql, exc.sqlstate, exc.message)
            continue
        assert "secret" not in repr(out), (sql, out)  # EXPLAIN may name alice's directory, never her rows
    # Whatever bob tried, his view is still his own and alice's still hers.
    assert s.rows("bob", "SELECT id FROM app.notes ORDER BY id") == [(1,), (4,)]
    assert s.rows("bob", "SELECT getvariable('tierd_user')") == [("bob",)]
    assert len(s.rows("alice", "SELECT * FROM app.notes")) == 4


def test_failure_between_two_users_manifests_loses_and_duplicates_nothing(engine_factory, tmp_path):
    s = engine_factory(failpoints={"flush.after_manifest": "error:1"})
    s.engine.jobs.config.max_retries = 0
    _setup(s)
    expected = _all(s)
    job = s.rows(SUPERUSER, "STORAGE FLUSH TABLE app.notes WAIT")[0]
    assert job[1] == "failed"
    assert _all(s) == expected
    # alice's scope committed (and was applied at once); bob's stayed hot.
    assert os.path.exists(_storage(tmp_path, "app", "notes", "alice", "manifest.json"))
    assert not os.path.exists(_storage(tmp_path, "app", "notes", "bob", "manifest.json"))
    assert s.rows(SUPERUSER, "STORAGE FLUSH TABLE app.notes WAIT")[0][1] == "completed"
    assert _all(s) == expected
    assert s.rows(SUPERUSER, "STORAGE FLUSH TABLE app.notes WAIT")[0][1] == "skipped"
    for user in ("alice", "bob"):
        assert_cold_consistent(str(tmp_path / "data"), "app", f"notes/{user}")


# ---------------------------------------------------------------------- over the wire

def _prepare_two_users(data: str) -> list[tuple]:
    """alice and bob rows in cold, then updates, deletes and new rows in hot (in-process)."""
    eng = Engine(EngineConfig(data_dir=data))
    s = Sessions(eng)
    try:
        _setup(s)
        s.rows(SUPERUSER, "STORAGE FLUSH TABLE app.notes WAIT")
        for user in ("alice", "bob"):
            s.tag(user, f"INSERT INTO app.notes SELECT i, '{user}-' || i FROM range(100, 140) t(i)")
            s.tag(user, "UPDATE app.notes SET body = body || '-updated' WHERE id IN (1, 100)")
            s.tag(user, "DELETE FROM app.notes WHERE id IN (101, 4)")
        return _all(s)
    finally:
        s.close()
        eng.close()


def _wire_all(c) -> list[tuple]:
    return c.execute("SELECT _user_id, id, body FROM app.notes ORDER BY _user_id, id").fetchall()


@pytest.mark.parametrize("step", FLUSH_STEPS)
def test_crash_at_each_step_of_a_two_user_flush_then_restart(make_tierd, tmp_path, step):
    data = str(tmp_path / "data")
    expected = _prepare_two_users(data)
    crashing = make_tierd(f'[failpoints]\n"{step}" = "crash"\n', data_dir=data).start()
    with crashing.connect() as c:
        assert _wire_all(c) == expected
        with pytest.raises(psycopg.OperationalError):
            c.execute("STORAGE FLUSH TABLE app.notes WAIT")
    assert crashing.wait_exit() != 0
    d = make_tierd(data_dir=data).start()
    with d.connect() as c:
        assert _wire_all(c) == expected
        job_id = c.execute("SELECT job_id FROM system.jobs WHERE job_type = 'flush' "
                           "ORDER BY created_at DESC LIMIT 1").fetchone()[0]
        wait_for(lambda: c.execute("SELECT status FROM system.jobs WHERE job_id = %s AND status IN "
                                   "('completed', 'skipped', 'failed')", (job_id,)).fetchone(),
                 timeout=60, what=f"job {job_id} to finish after restart")
        assert _wire_all(c) == expected
        assert c.execute("STORAGE FLUSH TABLE app.notes WAIT").fetchone()[1] == "skipped"
        assert c.execute("SELECT scope, segments > 0 FROM system.manifest ORDER BY scope").fetchall() == \
            [("alice", True), ("bob", True)]
    d.stop()
    d2 = make_tierd(data_dir=data).start()  # and once more from the flushed state
    with d2.connect() as c:
        assert _wire_all(c) == expected
    for user in ("alice", "bob"):
        assert_cold_consistent(data, "app", f"notes/{user}")
    live = [(u, i) for u, i, _ in expected]
    assert len(live) == len(set(live))


def test_user_table_over_the_wire(tierd):
    with tierd.connect() as c:
        c.execute("CREATE NAMESPACE app")
        c.execute("CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT) WITH (FLUSH_POLICY = 'rows:50')")
        c.execute("INSERT INTO app.notes SELECT i, 'n' || i FROM range(50) t(i)")  # seed §1A on a USER table
        wait_for(lambda: c.execute("SELECT count(*) FROM system.jobs WHERE job_type = 'flush' "
                                   "AND status = 'completed'").fetchone() == (1,), timeout=60,
                 what="the rows:50 policy flush")
        cur = c.execute("SELECT * FROM app.notes ORDER BY id LIMIT 1")
        assert [col.name for col in cur.description] == ["id", "body"] and cur.fetchone() == (0, "n0")
        assert c.execute("SELECT DISTINCT _user_id FROM app.notes").fetchall() == [(SUPERUSER,)]
        assert c.execute("SELECT scope, row_count FROM system.manifest").fetchall() == [(SUPERUSER, 50)]
        c.execute("INSERT INTO app.notes VALUES (100, 'hot')")  # seed §4: hot + cold in one query
        assert c.execute("SELECT count(*), max(id) FROM app.notes").fetchone() == (51, 100)
    scope = os.path.join(tierd.data_dir, "storage", "app", "notes", SUPERUSER)
    assert sorted(os.listdir(scope)) == ["batch-0.parquet", "manifest.json"]
    assert Counter(pq.read_table(os.path.join(scope, "batch-0.parquet")).column("_user_id").to_pylist()) == \
        {SUPERUSER: 50}


@pytest.fixture
def alice_and_bob(scram_tierd):
    """A daemon with SCRAM authentication and the roles alice and bob."""
    with scram_tierd.connect() as c:
        for user in ("alice", "bob"):
            c.execute(f"CREATE USER {user} WITH PASSWORD 'pw-{user}'")
    return scram_tierd


def as_user(d: Tierd, user: str) -> psycopg.Connection:
    return d.connect_as(user, f"pw-{user}")


def test_two_users_on_one_user_table_over_the_wire(alice_and_bob):
    d = alice_and_bob
    with d.connect() as root, as_user(d, "alice") as alice, as_user(d, "bob") as bob:
        root.execute("CREATE NAMESPACE app")
        root.execute("CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT) WITH (FLUSH_POLICY = 'manual')")
        alice.execute("INSERT INTO app.notes VALUES (1, 'alice-secret-1'), (2, 'alice-secret-2')")
        bob.execute("INSERT INTO app.notes VALUES (1, 'bob-1'), (3, 'bob-3')")  # the same key, another scope

        def check() -> None:
            assert alice.execute("SELECT * FROM app.notes ORDER BY id").fetchall() == \
                [(1, "alice-secret-1"), (2, "alice-secret-2")]
            assert bob.execute("SELECT * FROM app.notes ORDER BY id").fetchall() == [(1, "bob-1"), (3, "bob-3")]
            assert root.execute("SELECT _user_id, id, body FROM app.notes ORDER BY 1, 2").fetchall() == [
                ("alice", 1, "alice-secret-1"), ("alice", 2, "alice-secret-2"), ("bob", 1, "bob-1"), ("bob", 3, "bob-3")]
            cur = root.execute("SELECT * FROM app.notes LIMIT 1")
            assert [col.name for col in cur.description] == ["id", "body"]  # _user_id is hidden from *
            for sql in ("UPDATE app.notes SET body = 'x' WHERE id = 2", "DELETE FROM app.notes WHERE id = 2",
                        "UPDATE app.notes SET body = 'x' WHERE _user_id = 'alice'",
                        "DELETE FROM app.notes WHERE _user_id = 'alice'"):
                assert bob.execute(sql).rowcount == 0, sql
            assert bob.execute("SELECT count(*) FROM app.notes WHERE _user_id = 'alice'").fetchone() == (0,)
            assert bob.execute("SELECT DISTINCT _user_id FROM app.notes").fetchall() == [("bob",)]

        check()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bob.execute("STORAGE FLUSH TABLE app.notes")  # storage commands are for superusers
        assert root.execute("STORAGE FLUSH TABLE app.notes WAIT").fetchone()[1] == "completed"
        check()
        assert root.execute("SELECT scope, row_count FROM system.manifest ORDER BY scope").fetchall() == \
            [("alice", 2), ("bob", 2)]
        assert bob.execute("SELECT scope, row_count FROM system.manifest").fetchall() == [("bob", 2)]
        attempts = [
            "SELECT a.body FROM app.notes a JOIN app.notes b USING (id)",
            "SELECT (SELECT string_agg(body, ',') FROM app.notes)",
            "SELECT body FROM app.notes UNION ALL SELECT manifest_json FROM system.manifest",
            "SELECT * FROM app.notes WHERE _user_id = 'alice' OR true",
            "SELECT * FROM __tierd.__hot.t1",
            "SELECT * FROM query_table('__tie' || 'rd.__cold.c1')",
            "SET VARIABLE tierd_user = 'alice'",
            "SELECT * FROM read_parquet('{}')".format(
                os.path.join(d.data_dir, "storage", "app", "notes", "alice", "batch-0.parquet")),
        ]
        for sql in attempts:
            try:
                rows = bob.execute(sql).fetchall()
            except psycopg.errors.Error as exc:
                assert exc.sqlstate in ("42501", "0A000"), (sql, exc.sqlstate)
                continue
            assert "secret" not in repr(rows), (sql, rows)
        with alice.cursor().copy("COPY app.notes (id, body) FROM STDIN") as cp:  # COPY writes as alice too
            for row in ((7, "alice-secret-7"), (8, "alice-secret-8")):
                cp.write_row(row)
        with bob.cursor().copy("COPY app.notes (id, body) FROM STDIN") as cp:
            cp.write_row((7, "bob-7"))  # alice's key 7 is no conflict for bob
        with bob.cursor() as cur:
            with cur.copy("COPY app.notes TO STDOUT") as cp:
                copied = b"".join(bytes(block) for block in cp)
        assert sorted(copied.splitlines()) == [b"1\tbob-1", b"3\tbob-3", b"7\tbob-7"]
        assert root.execute("SELECT _user_id, id FROM app.notes WHERE id = 7 ORDER BY 1").fetchall() == \
            [("alice", 7), ("bob", 7)]
        alice.execute("UPDATE app.notes SET body = 'alice-secret-1b' WHERE id = 1")  # a flushed row, hot again
        assert alice.execute("SELECT body FROM app.notes WHERE id = 1").fetchone() == ("alice-secret-1b",)
        assert bob.execute("SELECT body FROM app.notes WHERE id = 1").fetchone() == ("bob-1",)
    for user in ("alice", "bob"):
        scope = os.path.join(d.data_dir, "storage", "app", "notes", user)
        assert sorted(os.listdir(scope)) == ["batch-0.parquet", "manifest.json"]
        with open(os.path.join(scope, "manifest.json")) as f:
            assert json.load(f)["user_id"] == user


def test_seed_1a_rows_policy_on_a_user_table_writes_the_users_directory(alice_and_bob):
    d = alice_and_bob
    with d.connect() as root, as_user(d, "alice") as alice:
        root.execute("CREATE USER TABLE public.events (id BIGINT PRIMARY KEY, v TEXT) WITH (FLUSH_POLICY = 'rows:50')")
        for i in range(50):
            alice.execute("INSERT INTO public.events VALUES (%s, %s)", (i, f"e{i}"))
        wait_for(lambda: root.execute("SELECT count(*) FROM system.jobs WHERE job_type = 'flush' AND "
                                      "status = 'completed'").fetchone() == (1,), timeout=60, what="the policy flush")
        assert alice.execute("SELECT count(*) FROM public.events").fetchone() == (50,)
        assert alice.execute("SELECT hot_rows, cold_rows FROM system.tables WHERE table_name = 'events'").fetchone() \
            == (0, 50)
    assert sorted(os.listdir(os.path.join(d.data_dir, "storage", "public", "events", "alice"))) == \
        ["batch-0.parquet", "manifest.json"]
