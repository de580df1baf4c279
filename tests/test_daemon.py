"""The daemon as a process: start-up rules, database name, one daemon per data dir."""
import subprocess

import psycopg
import pytest

from tests.daemon import TIERD, Tierd


def test_second_daemon_on_same_data_dir_exits_clearly(tierd):
    other = Tierd(tierd.data_dir)
    other.start(wait=False)
    assert other.wait_exit(timeout=60) != 0
    assert "in use by another tierd process" in other.output()
    other.stop()
    with tierd.connect() as c:  # the first one is unaffected
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_unknown_database_is_rejected_with_3D000(tierd):
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(f"host=127.0.0.1 port={tierd.port} user=tierd dbname=postgres")
    assert "3D000" in str(info.value) or 'database "postgres" does not exist' in str(info.value)


def test_refuses_non_loopback_without_password(tmp_path):
    r = subprocess.run([TIERD, "serve", "--data-dir", str(tmp_path / "d"), "--host", "0.0.0.0", "--port", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "without a password" in r.stderr


def test_bad_config_names_the_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[flush]\ndefault_policy = "rows:0"\n')
    r = subprocess.run([TIERD, "check-config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "flush.default_policy" in r.stderr


def test_failed_statement_keeps_connection_and_reports_sqlstate(conn):
    with pytest.raises(psycopg.errors.UndefinedTable):
        conn.execute("SELECT * FROM nowhere.nothing")
    with pytest.raises(psycopg.errors.SyntaxError):
        conn.execute("SELEC 1")
    with pytest.raises(psycopg.errors.InvalidTableDefinition):
        conn.execute("CREATE TABLE public.nopk (a INT)")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("CREATE TABLE public.p (a INT PRIMARY KEY) WITH (FLUSH_POLICY = 'rows:abc')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="TTL_SECONDS"):
        conn.execute("CREATE TABLE public.u (a INT PRIMARY KEY) WITH (TYPE = 'STREAM')")
    with pytest.raises(psycopg.errors.UndefinedObject) as info:
        conn.execute("CREATE TABLE public.s (a INT PRIMARY KEY) WITH (STORAGE_ID = 'nope')")
    assert "Storage 'nope' does not exist" in str(info.value)
    assert conn.execute("SELECT 41 + 1").fetchone() == (42,)


def test_transaction_applies_atomically_at_commit(tierd):
    with tierd.connect(autocommit=False) as a, tierd.connect() as b:
        a.execute("CREATE TABLE public.acct (id INT PRIMARY KEY, v INT)")
        a.commit()
        a.execute("INSERT INTO acct VALUES (1, 10)")
        a.execute("INSERT INTO acct VALUES (2, 20)")
        assert a.execute("SELECT count(*) FROM acct").fetchone() == (2,)  # own writes visible
        assert b.execute("SELECT count(*) FROM acct").fetchone() == (0,)  # others see nothing yet
        a.commit()
        assert b.execute("SELECT sum(v) FROM acct").fetchone() == (30,)
        a.execute("UPDATE acct SET v = 0")
        a.rollback()
        assert b.execute("SELECT sum(v) FROM acct").fetchone() == (30,)
        # An error inside a transaction block: the block fails until ROLLBACK (25P02).
        with pytest.raises(psycopg.errors.UniqueViolation):
            a.execute("INSERT INTO acct VALUES (1, 0)")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            a.execute("SELECT 1")
        a.rollback()
        assert a.execute("SELECT count(*) FROM acct").fetchone() == (2,)
