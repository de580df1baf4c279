"""pgJDBC (Debian's libpostgresql-jdbc-java) against a real tierd: tests/clients/jdbc/JdbcClient.java
is compiled with javac at test time and run; it prints what it saw, asserted here."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

JAR = "/usr/share/java/postgresql.jar"
SOURCE = os.path.join(os.path.dirname(__file__), "clients", "jdbc", "JdbcClient.java")

pytestmark = [
    pytest.mark.skipif(not shutil.which("java") or not shutil.which("javac"),
                       reason="no Java runtime/compiler (java, javac) on this machine"),
    pytest.mark.skipif(not os.path.exists(JAR),
                       reason=f"pgJDBC is missing ({JAR}): `make test-deps` installs libpostgresql-jdbc-java"),
]


@pytest.fixture(scope="module")
def output(tmp_path_factory, module_tierd) -> list[tuple[str, str]]:
    work = tmp_path_factory.mktemp("jdbc")
    subprocess.run(["javac", "-d", str(work), "-cp", JAR, SOURCE], check=True, timeout=120,
                   capture_output=True)
    run = subprocess.run(["java", "-cp", f"{JAR}:{work}", "JdbcClient", str(module_tierd.port)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return [tuple(line.split(": ", 1)) for line in run.stdout.splitlines() if ": " in line]


def values(output, key: str) -> list[str]:
    return [v for k, v in output if k == key]


def test_connects_as_postgresql_15(output):
    assert values(output, "product") == ["PostgreSQL 15"]


def test_parameterised_dml_round_trips_the_common_types(output):
    assert values(output, "insert") == ["1", "1"]
    assert values(output, "row") == [
        "1|one|7|12.50|0.25|true|2024-05-01|2024-05-01T12:30:00Z|a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11|[1, 2, 3]"]
    assert values(output, "null_qty_was_null") == ["true"]
    assert values(output, "null_price") == ["null"]


def test_returning_transactions_and_errors(output):
    assert values(output, "returning") == ["1|12"]
    assert values(output, "ids") == ["1,2,4"]  # 3 was rolled back, 4 committed
    assert values(output, "duplicate_sqlstate") == ["23505"]
    assert values(output, "after_error") == ["1"]  # the connection survived


def test_database_metadata(output):
    assert values(output, "table") == ["public.jdbc_items TABLE"]
    columns = [v.split() for v in values(output, "column")]
    assert [c[0] for c in columns] == ["id", "name", "qty", "price", "ratio", "flag", "day", "seen", "tag", "data"]
    by_name = {c[0]: c[1:] for c in columns}
    # TYPE_NAME, java.sql.Types code, IS_NULLABLE, ORDINAL_POSITION
    assert by_name["id"] == ["int8", "-5", "NO", "1"]
    assert by_name["name"] == ["text", "12", "NO", "2"]
    assert by_name["qty"] == ["int4", "4", "YES", "3"]
    assert by_name["price"][:2] == ["numeric", "2"]
    assert by_name["ratio"][:2] == ["float8", "8"]
    assert by_name["flag"][:2] == ["bool", "-7"]
    assert by_name["day"][:2] == ["date", "91"]
    assert by_name["seen"][:2] == ["timestamptz", "93"]
    assert by_name["data"][:2] == ["bytea", "-2"]
    assert values(output, "pk") == ["id 1 jdbc_items_pkey"]
    assert values(output, "fk violation") == ["23503"]
    assert values(output, "imported") == [  # DELETE_RULE 0: DatabaseMetaData.importedKeyCascade
        "jdbc_items.id <- jdbc_lines.item_id 1 jdbc_lines_item_id_fkey jdbc_items_pkey delete=0"]
    assert values(output, "exported") == ["jdbc_lines.item_id"]
    schemas = values(output, "schemas")[0].split(",")
    assert {"public", "system", "pg_catalog", "information_schema"} <= set(schemas)
