"""Named storages on the filesystem: routing, templates, restart (seed §2). Validation and the
DROP rules are in tests/sql/storage/storages.test."""
import json
import os
import subprocess

import psycopg
import pytest

from tests.daemon import TIERD


def test_tables_write_only_under_their_storage(tierd, tmp_path):
    fast = tmp_path / "fast"
    with tierd.connect() as c:
        c.execute(f"CREATE STORAGE fast_ssd TYPE 'filesystem' PATH '{fast}' NAME 'Fast SSD' "
                  "DESCRIPTION 'NVMe scratch'")
        c.execute("CREATE NAMESPACE app")
        c.execute("CREATE TABLE app.a (id BIGINT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'fast_ssd')")
        c.execute("CREATE TABLE app.b (id BIGINT PRIMARY KEY, v TEXT)")
        c.execute("INSERT INTO app.a SELECT i, 'a' FROM range(10) t(i)")
        c.execute("INSERT INTO app.b SELECT i, 'b' FROM range(5) t(i)")
        assert c.execute("STORAGE FLUSH ALL IN app WAIT").fetchall()[0][1] == "completed"
        assert sorted(os.listdir(fast / "app" / "a")) == ["batch-0.parquet", "manifest.json"]
        local = os.path.join(tierd.data_dir, "storage", "app")
        assert sorted(os.listdir(local)) == ["b"]  # app.a wrote nothing under the local storage
        assert c.execute("SELECT count(*) FROM app.a JOIN app.b USING (id)").fetchone() == (5,)
        rows = c.execute("SELECT storage_id, storage_name, description, storage_type, base_directory "
                         "FROM system.storages ORDER BY storage_id").fetchall()
        assert rows == [("fast_ssd", "Fast SSD", "NVMe scratch", "filesystem", str(fast)),
                        ("local", "local", "the data directory's own storage", "filesystem",
                         os.path.join(tierd.data_dir, "storage"))]
        shown = c.execute("SHOW STORAGES").fetchall()
        assert [r[0] for r in shown] == ["fast_ssd", "local"]
        check = c.execute("STORAGE CHECK fast_ssd").fetchone()
        assert check[1:6] == ("healthy", True, True, True, True) and check[7] is None


def test_templates_validated_and_applied(tierd, tmp_path):
    with tierd.connect() as c:
        c.execute(f"CREATE STORAGE tpl TYPE 'filesystem' PATH '{tmp_path / 'tpl'}' "
                  "SHARED_TABLES_TEMPLATE 'tables/{namespace}-{tableName}'")
        c.execute("CREATE TABLE public.t (id INT PRIMARY KEY) WITH (STORAGE_ID = 'tpl')")
        c.execute("INSERT INTO t VALUES (1)")
        c.execute("STORAGE FLUSH TABLE public.t WAIT")
        assert os.path.exists(tmp_path / "tpl" / "tables" / "public-t" / "manifest.json")
        bad = {
            "'{namespace}'": "must contain",
            "'{namespace}/{table}'": "unknown placeholder",
            "'../{namespace}/{tableName}'": "relative path",
        }
        for i, (template, needle) in enumerate(bad.items()):
            with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
                c.execute(f"CREATE STORAGE bad{i} TYPE 'filesystem' PATH '{tmp_path / f'b{i}'}' "
                          f"SHARED_TABLES_TEMPLATE {template}")
            assert needle in str(info.value)
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            c.execute(f"CREATE STORAGE bad TYPE 'filesystem' PATH '{tmp_path / 'b'}' "
                      "USER_TABLES_TEMPLATE '{namespace}/{tableName}'")
        # Changing a template later moves nothing that exists.
        c.execute("ALTER STORAGE tpl SET SHARED_TABLES_TEMPLATE 'v2/{namespace}/{tableName}', DESCRIPTION 'moved'")
        c.execute("INSERT INTO t VALUES (2)")
        c.execute("STORAGE FLUSH TABLE public.t WAIT")
        assert len(os.listdir(tmp_path / "tpl" / "tables" / "public-t")) == 3
        assert c.execute("SELECT count(*) FROM t").fetchone() == (2,)
        assert c.execute("SELECT description, shared_tables_template FROM system.storages "
                         "WHERE storage_id = 'tpl'").fetchone() == ("moved", "v2/{namespace}/{tableName}")


def test_config_storages_and_restart(make_tierd, tmp_path):
    cold = tmp_path / "cold_cfg"
    cfg = f'[storage.archive]\ntype = "filesystem"\npath = "{cold}"\nname = "Archive"\n'
    data = str(tmp_path / "data")
    d = make_tierd(cfg, data_dir=data).start()
    with d.connect() as c:
        c.execute(f"CREATE STORAGE sqlmade TYPE 'filesystem' PATH '{tmp_path / 'sqlmade'}'")
        c.execute("CREATE TABLE public.a (id INT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'archive')")
        c.execute("CREATE TABLE public.b (id INT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'sqlmade')")
        c.execute("INSERT INTO a VALUES (1, 'x')")
        c.execute("INSERT INTO b VALUES (2, 'y')")
        c.execute("STORAGE FLUSH ALL WAIT")
        c.execute("INSERT INTO a VALUES (3, 'hot')")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            c.execute("DROP STORAGE archive")
    d.stop()
    d2 = make_tierd(cfg, data_dir=data).start()
    with d2.connect() as c:
        assert c.execute("SELECT storage_id FROM system.storages ORDER BY 1").fetchall() == [
            ("archive",), ("local",), ("sqlmade",)]
        assert c.execute("SELECT * FROM a ORDER BY id").fetchall() == [(1, "x"), (3, "hot")]
        assert c.execute("SELECT * FROM b").fetchall() == [(2, "y")]
    assert os.path.exists(cold / "public" / "a" / "manifest.json")


def test_check_config_hides_storage_secrets(tmp_path):
    cfg = tmp_path / "t.toml"
    cfg.write_text('[storage.s3x]\ntype = "s3"\nbase_directory = "s3://bucket/p"\n'
                   '[storage.s3x.config]\nendpoint = "http://127.0.0.1:1"\naccess_key_id = "AK"\n'
                   'secret_access_key = "SUPERSECRET"\n')
    r = subprocess.run([TIERD, "check-config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "SUPERSECRET" not in r.stdout and "s3://bucket/p" in r.stdout


def test_storage_missing_at_start_fails_queries_clearly_until_it_returns(make_tierd, tmp_path):
    fast = tmp_path / "fast"
    data = str(tmp_path / "data")
    d = make_tierd(data_dir=data).start()
    with d.connect() as c:
        c.execute(f"CREATE STORAGE fast TYPE 'filesystem' PATH '{fast}'")
        c.execute("CREATE TABLE public.t (id INT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'fast')")
        c.execute("INSERT INTO t SELECT i, 'cold' FROM range(10) t(i)")
        c.execute("STORAGE FLUSH TABLE public.t WAIT")
        c.execute("INSERT INTO t VALUES (100, 'hot')")
    d.stop()
    os.rename(fast, tmp_path / "unmounted")  # the disk is gone while tierd starts
    d2 = make_tierd(data_dir=data).start()
    with d2.connect() as c:
        for sql in ("SELECT count(*) FROM t", "SELECT * FROM t WHERE id = 100"):
            with pytest.raises(psycopg.Error) as info:  # no partial answer from hot alone
                c.execute(sql)
            assert "cold tier of table 'public.t' is unavailable" in str(info.value)
        assert c.execute("SELECT 1").fetchone() == (1,)  # the rest of the database works
        os.rename(tmp_path / "unmounted", fast)
        from tests.daemon import wait_for

        def back():
            try:
                return c.execute("SELECT count(*) FROM t").fetchone()
            except psycopg.Error:
                return None
        assert wait_for(back, timeout=60, what="the cold tier to come back") == (11,)
        c.execute("INSERT INTO t VALUES (101, 'more')")
        c.execute("STORAGE FLUSH TABLE public.t WAIT")
        assert c.execute("SELECT count(*), count(DISTINCT id) FROM t").fetchone() == (12, 12)
