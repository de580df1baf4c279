"""The engine sandbox over the wire: every way out of DuckDB a client could try is refused with
SQLSTATE 42501, the connection lives on, nothing is written; the daemon still reads and writes its
own Parquet (local and S3, storages created at run time included). That ordinary analytic SQL,
session statements and the catalog queries clients send still work is tests/sql/sandbox/allowed.test."""
import glob
import json
import os

import duckdb
import psycopg
import pytest

from engine.tiers import views
from engine.storage.s3 import httpfs_extension_path
from tests.helpers import scope_dir
from tests.s3server import s3  # noqa: F401  (module-scoped SeaweedFS fixture)


@pytest.fixture(scope="module")
def box(tmp_path_factory, module_tierd):
    """The module's daemon with a flushed table (its Parquet on disk) and files a client must not reach."""
    root = tmp_path_factory.mktemp("sandbox")
    secret = root / "secret.csv"
    secret.write_text("user,password\nalice,hunter2\n")
    d = module_tierd
    with d.connect() as c:
        c.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)")
        c.execute("INSERT INTO t SELECT i, 'v' || i FROM range(10) r(i)")
        c.execute("STORAGE FLUSH TABLE public.t WAIT")
        c.execute("INSERT INTO t VALUES (100, 'hot')")
    parquet = glob.glob(os.path.join(scope_dir(d.data_dir, "public", "t"), "*.parquet"))[0]
    out = root / "out"
    out.mkdir()
    return {"d": d, "secret": str(secret), "parquet": parquet, "out": str(out), "root": str(root),
            "data": d.data_dir, "ext": httpfs_extension_path() or "/nonexistent/httpfs.duckdb_extension"}


ESCAPES = [
    # table functions that read files or list directories
    "SELECT * FROM read_csv('{secret}')",
    "SELECT * FROM read_csv_auto('{secret}')",
    "SELECT * FROM read_parquet('{parquet}')",  # tierd's own files: would bypass row filtering
    "SELECT * FROM parquet_scan('{parquet}')",
    "SELECT * FROM read_parquet(['{parquet}', '{parquet}'])",
    "SELECT * FROM read_json('{secret}')",
    "SELECT * FROM read_json_auto('{secret}')",
    "SELECT * FROM read_ndjson('{secret}')",
    "SELECT * FROM read_json_objects('{secret}')",
    "SELECT * FROM read_text('{secret}')",
    "SELECT * FROM read_blob('{secret}')",
    "SELECT * FROM glob('{root}/*')",
    "SELECT * FROM parquet_metadata('{parquet}')",
    "SELECT * FROM parquet_schema('{parquet}')",
    "SELECT * FROM parquet_file_metadata('{parquet}')",
    "SELECT * FROM parquet_kv_metadata('{parquet}')",
    "SELECT * FROM sniff_csv('{secret}')",
    "SELECT * FROM delta_scan('{root}')",
    "SELECT * FROM iceberg_scan('{root}')",
    "SELECT * FROM iceberg_metadata('{root}')",
    "SELECT * FROM read_duckdb('{root}/x.db')",
    "SELECT * FROM main.read_csv('{secret}')",
    "SELECT * FROM system.main.read_text('{secret}')",
    # dynamic SQL
    "SELECT * FROM query('SELECT * FROM read_text(''{secret}'')')",
    "SELECT * FROM query_table('t')",
    "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
    "SELECT * FROM histogram(t, id)",
    # engine internals: settings, secrets, extensions, databases, logs
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM which_secret('s3://b/x', 's3')",
    "SELECT * FROM duckdb_extensions()",
    "SELECT * FROM duckdb_databases()",
    "SELECT * FROM duckdb_databases",
    "SELECT * FROM duckdb_views",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM duckdb_temporary_files()",
    "SELECT * FROM duckdb_logs",
    "SELECT * FROM pragma_database_list",
    "SELECT * FROM sqlite_master",
    "SELECT * FROM system.main.duckdb_settings()",
    "SELECT getenv('HOME')",
    "SELECT write_log('x')",
    # replacement scans: a path or URL where a table name goes
    "SELECT * FROM '{parquet}'",
    "SELECT * FROM '{secret}'",
    'SELECT * FROM "{secret}"',
    "FROM '{secret}'",
    "SELECT count(*) FROM '{root}/*.csv'",
    "SELECT * FROM 's3://tierd-test/x.parquet'",
    "SELECT * FROM 'https://example.com/x.csv'",
    "DESCRIBE '{secret}'",
    "SUMMARIZE '{parquet}'",
    "SUMMARIZE SELECT * FROM read_csv('{secret}')",
    # hidden in CTEs, subqueries, set operations, lateral joins, EXPLAIN, function arguments
    "WITH x AS (SELECT * FROM read_csv('{secret}')) SELECT * FROM x",
    "WITH t AS (SELECT 1) SELECT * FROM t, read_text('{secret}')",
    "SELECT * FROM t WHERE v IN (SELECT content FROM read_text('{secret}'))",
    "SELECT (SELECT content FROM read_text('{secret}')) AS x",
    "SELECT 1 UNION ALL SELECT count(*) FROM read_text('{secret}')",
    "SELECT * FROM t, LATERAL (SELECT * FROM read_text('{secret}')) x",
    "SELECT * FROM range((SELECT count(*) FROM read_text('{secret}')))",
    "SELECT list_transform([1], x -> (SELECT count(*) FROM read_text('{secret}')))",
    "EXPLAIN SELECT * FROM read_csv('{secret}')",
    "EXPLAIN ANALYZE SELECT * FROM read_csv('{secret}')",
    "SELECT 1; SELECT * FROM read_text('{secret}')",
    "/* comment */ SELECT * FROM read_text('{secret}')",
    "(SELECT * FROM read_text('{secret}'))",
    # writes run client expressions in DuckDB too
    "INSERT INTO t SELECT 1000, content FROM read_text('{secret}')",
    "INSERT INTO t VALUES (1000, current_setting('home_directory'))",
    "INSERT INTO t VALUES (1000, 'x') RETURNING current_setting('home_directory')",
    "INSERT INTO t SELECT * FROM '{parquet}' WHERE id > 1000",
    "UPDATE t SET v = (SELECT content FROM read_text('{secret}')) WHERE id = 1",
    "UPDATE t SET v = r.content FROM read_text('{secret}') r WHERE t.id = 1",
    "DELETE FROM t USING read_csv('{secret}') r WHERE t.v = r.user",
    "DELETE FROM t WHERE id IN (SELECT size FROM read_blob('{secret}'))",
    "INSERT INTO t VALUES " + ", ".join(f"({1000 + i}, 'row {i}')" for i in range(400))
    + ", (2000, current_setting('home_directory'))",  # a big VALUES list, screened not parsed
    # tierd's internals
    "SELECT * FROM __tierd.__hot.t1",
    "SELECT _seq, * FROM __hot.t1",
    "SELECT * FROM __cold.c1",
    "SELECT * FROM __sys.storages",
    "SELECT * FROM temp.main.x",
    "SHOW databases",
    "SHOW ALL TABLES",
    # statements: files, databases, extensions, settings, secrets
    "COPY t TO '{out}/t.csv'",
    "COPY (SELECT 1) TO '{out}/q.parquet' (FORMAT parquet)",
    "COPY (SELECT 'TO STDOUT') TO '{out}/s.csv'",
    "COPY t FROM '{secret}'",
    "COPY t TO PROGRAM 'touch {out}/p'",
    "copy t to '{out}/lower.csv'",
    "ATTACH '{out}/a.db' AS a",
    "ATTACH ':memory:' AS m",
    "DETACH memory",
    "INSTALL httpfs",
    "FORCE INSTALL httpfs",
    "LOAD httpfs",
    "LOAD '{ext}'",
    "UPDATE EXTENSIONS",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "SET lock_configuration = false",
    "SET autoinstall_known_extensions = true",
    "SET GLOBAL threads = 1",
    "SET SESSION memory_limit = '1GB'",
    'SET "enable_external_access" TO true',
    "RESET disabled_filesystems",
    "SET VARIABLE x = 1",
    "PRAGMA version",
    "PRAGMA database_list",
    "PRAGMA enable_profiling",
    "PRAGMA threads = 1",
    "CALL pragma_version()",
    "CALL duckdb_settings()",
    "EXPORT DATABASE '{out}/export'",
    "IMPORT DATABASE '{out}'",
    "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "CREATE OR REPLACE PERSISTENT SECRET s (TYPE s3)",
    "CREATE TEMPORARY SECRET IF NOT EXISTS s (TYPE s3)",
    "DROP SECRET tierd_s3_x",
    "DROP TEMPORARY SECRET IF EXISTS tierd_s3_x",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_escape_refused(box, template):
    sql = template.format(**box)
    with box["d"].connect() as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
            c.execute(sql)
        assert info.value.sqlstate == "42501"
        assert "permission denied" in str(info.value)
        assert c.execute("SELECT count(*) FROM t").fetchone() == (11,)  # the connection lives on
    assert os.listdir(box["out"]) == [], "a refused statement wrote a file"


@pytest.mark.parametrize("sql,params", [
    ("SELECT * FROM read_csv(%s)", ["{secret}"]),
    ("SELECT * FROM read_parquet(%s::VARCHAR)", ["{parquet}"]),
])
def test_escape_refused_with_parameters(box, sql, params):
    """The extended protocol: the statement is checked, whatever the parameters hold."""
    with box["d"].connect() as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(sql, [p.format(**box) for p in params])
        assert c.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("sql,params", [
    ("SELECT current_setting('home_directory')", None),
    ("SELECT current_setting('secret_directory')", None),
    ("SELECT current_setting('extension_directory')", None),
    ("SELECT current_setting('s3_secret_access_key')", None),
    ("SELECT current_setting(lower('HOME_DIRECTORY'))", None),
    ("SELECT current_setting(%s)", ["home_directory"]),
    ("SELECT current_setting(%s, false)", ["secret_directory"]),
])
def test_current_setting_knows_only_postgres_settings(box, sql, params):
    """current_setting() reads the session's Postgres settings, never DuckDB's: an engine
    setting is as unknown as any other name (42704, as Postgres answers)."""
    with box["d"].connect() as c:
        with pytest.raises(psycopg.errors.UndefinedObject) as info:
            c.execute(sql, params)
        assert "unrecognized configuration parameter" in str(info.value)
        assert box["root"] not in str(info.value)
        assert c.execute("SELECT current_setting(%s)", ["application_name"]).fetchone() == ("",)


def test_copy_of_a_query_is_sandboxed_too(box):
    with box["d"].connect() as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with c.cursor().copy(f"COPY (SELECT * FROM read_text('{box['secret']}')) TO STDOUT") as cp:
                list(cp)
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_refusal_inside_a_transaction_aborts_it_like_any_error(box):
    with box["d"].connect(autocommit=False) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(f"ATTACH '{box['out']}/tx.db' AS tx")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            c.execute("SELECT 1")
        c.rollback()
        assert c.execute("SELECT count(*) FROM t").fetchone() == (11,)
    assert os.listdir(box["out"]) == []


def test_daemon_reads_and_writes_its_own_parquet_after_lockdown(make_tierd, tmp_path):
    """Local storages, the default and one created at run time outside the data dir, flush and
    read back, before and after a restart (start-up reads the manifests again)."""
    data = str(tmp_path / "data")
    d = make_tierd(data_dir=data).start()
    with d.connect() as c:
        c.execute(f"CREATE STORAGE elsewhere TYPE 'filesystem' PATH '{tmp_path / 'elsewhere'}'")
        c.execute("CREATE TABLE a (id INT PRIMARY KEY, v TEXT)")
        c.execute("CREATE TABLE b (id INT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'elsewhere')")
        for name in ("a", "b"):
            c.execute(f"INSERT INTO {name} SELECT i, 'x' FROM range(20) r(i)")
            assert c.execute(f"STORAGE FLUSH TABLE public.{name} WAIT").fetchone()[1] == "completed"
        c.execute("UPDATE b SET v = 'y' WHERE id < 5")
        assert c.execute("SELECT count(*), count(*) FILTER (WHERE b.v = 'y') FROM a JOIN b USING (id)").fetchone() == (20, 5)
    assert glob.glob(str(tmp_path / "elsewhere" / "**" / "*.parquet"), recursive=True)
    d.stop()
    d2 = make_tierd(data_dir=data).start()
    with d2.connect() as c:
        assert c.execute("SELECT count(*), count(*) FILTER (WHERE v = 'y') FROM b").fetchone() == (20, 5)
        assert c.execute("STORAGE FLUSH TABLE public.b WAIT").fetchone()[1] == "completed"
        assert c.execute("SELECT count(*) FROM a").fetchone() == (20,)


def test_s3_storage_created_at_run_time_works_after_lockdown(make_tierd, tmp_path, s3):
    data = str(tmp_path / "data")
    d = make_tierd(data_dir=data).start()
    config = json.dumps(s3.storage_config())
    with d.connect() as c:
        c.execute(f"CREATE STORAGE arch TYPE 's3' BASE_DIRECTORY '{s3.base}/sandbox' CONFIG '{config}'")
        c.execute("CREATE TABLE s (id INT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'arch')")
        c.execute("INSERT INTO s SELECT i, 'x' FROM range(30) r(i)")
        assert c.execute("STORAGE FLUSH TABLE public.s WAIT").fetchone()[1] == "completed"
        assert c.execute("SELECT count(*) FROM s").fetchone() == (30,)
        # ...but a client cannot read the bucket through the daemon's secret.
        for sql in (f"SELECT * FROM read_parquet('{s3.base}/sandbox/public/s/*.parquet')",
                    f"SELECT * FROM '{s3.base}/sandbox/public/s/batch-0.parquet'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(sql)
        c.execute("DROP STORAGE IF EXISTS unused")
    d.stop()
    d2 = make_tierd(data_dir=data).start()  # registered at start-up, after the lock-down
    with d2.connect() as c:
        assert c.execute("SELECT count(*) FROM s").fetchone() == (30,)


def test_duckdb_itself_is_locked_down():
    """The second layer, inside DuckDB: what a statement slipping past the checks would meet."""
    con = views.open_database()
    try:
        for stmt in ("SET autoinstall_known_extensions = true", "SET autoload_known_extensions = true",
                     "SET allow_community_extensions = true", "SET python_enable_replacements = true",
                     "SET disabled_filesystems = ''", "SET lock_configuration = false",
                     "SET allow_persistent_secrets = true"):
            with pytest.raises(duckdb.InvalidInputException, match="locked"):
                con.execute(stmt)
        if httpfs_extension_path():
            with pytest.raises(duckdb.PermissionException, match="disabled"):
                con.execute("SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')")
        with pytest.raises(duckdb.Error):
            con.execute("SELECT * FROM secret_python_table")  # no Python variables as tables
        # What the daemon still does after the lock: its session settings and S3 secrets.
        cur = con.cursor()
        cur.execute("SET TimeZone = 'Europe/Paris'")
        cur.execute("USE memory.main")
        if httpfs_extension_path():
            cur.execute("CREATE OR REPLACE TEMPORARY SECRET t_s3 (TYPE s3, SCOPE 's3://b/')")
            cur.execute("DROP TEMPORARY SECRET t_s3")
    finally:
        con.close()


secret_python_table = __import__("pyarrow").table({"x": [1]})  # what a replacement scan would find


@pytest.mark.parametrize("template", [
    "SELECT * FROM read_text('{secret}')",
    "INSERT INTO t VALUES (1000, 'x') RETURNING (SELECT content FROM read_text('{secret}'))",
    "DELETE FROM t USING read_csv('{secret}') r WHERE t.v = r.user",
])
def test_describe_without_running_is_sandboxed_too(box, template):
    """asyncpg prepares (Parse + Describe) before it runs: binding alone may touch files."""
    import asyncio

    import asyncpg

    async def run():
        conn = await asyncpg.connect(host="127.0.0.1", port=box["d"].port, user="tierd", database="tierd")
        try:
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await conn.prepare(template.format(**box))
            assert await conn.fetchval("SELECT count(*) FROM t") == 11
        finally:
            await conn.close()

    asyncio.run(run())
