"""psql against a real tierd over the wire: output formats, command tags, errors, flush.

One daemon serves the whole module (`module_tierd`); each test uses its own tables. psql runs as a
subprocess with `-X` (no ~/.psqlrc), a C locale (English messages) and a timeout.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from tests.daemon import Tierd, wait_for

PSQL = "/usr/bin/psql"

pytestmark = pytest.mark.skipif(not os.path.exists(PSQL), reason="psql is not installed")


def psql(d: Tierd, *args: str, input: str | None = None, timeout: float = 60) \
        -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", PGCONNECT_TIMEOUT="10", PSQL_PAGER="", PAGER="")
    cmd = [PSQL, "-X", "-v", "ON_ERROR_STOP=0", "-P", "pager=off",
           "-h", "127.0.0.1", "-p", str(d.port), "-U", "tierd", "tierd", *args]
    return subprocess.run(cmd, input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, env=env)


def ok(result: subprocess.CompletedProcess) -> str:
    """stdout of a psql run that must have succeeded without any error."""
    assert result.returncode == 0, result.stderr
    assert "ERROR" not in result.stderr, result.stderr
    return result.stdout


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


# --- output ---------------------------------------------------------------------------


def test_booleans_print_as_t_and_f(module_tierd):
    out = ok(psql(module_tierd, "-c", "SELECT true AS yes, false AS no, 1 = 1 AS eq"))
    assert lines(out) == [" yes | no | eq ", "-----+----+----", " t   | f  | t", "(1 row)"]


def test_booleans_from_a_table_print_as_t_and_f(module_tierd):
    ok(psql(module_tierd, "-c", "CREATE TABLE public.psql_bools (id BIGINT PRIMARY KEY, b BOOLEAN)",
            "-c", "INSERT INTO public.psql_bools VALUES (1, true), (2, false), (3, NULL)"))
    out = ok(psql(module_tierd, "-A", "-t", "-c", "SELECT id, b FROM public.psql_bools ORDER BY id"))
    assert lines(out) == ["1|t", "2|f", "3|"]


def test_null_display(module_tierd):
    out = ok(psql(module_tierd, "-A", "-t", "-c", "SELECT NULL::text AS n, 'x' AS s, NULL::int AS i"))
    assert lines(out) == ["|x|"]
    out = ok(psql(module_tierd, "-A", "-t", "-P", "null=(null)", "-c", "SELECT NULL::text, 'x', NULL::int"))
    assert lines(out) == ["(null)|x|(null)"]
    out = ok(psql(module_tierd, input="\\pset null '<NULL>'\nSELECT NULL::bigint AS v;\n"))
    assert lines(out) == ['Null display is "<NULL>".', "   v    ", "--------", " <NULL>", "(1 row)"]


def test_empty_string_and_null_are_different(module_tierd):
    out = ok(psql(module_tierd, "-A", "-t", "-P", "null=NULL", "-c", "SELECT '' AS e, NULL AS n"))
    assert lines(out) == ["|NULL"]


# --- command tags -------------------------------------------------------------------


def test_command_tags(module_tierd):
    out = ok(psql(module_tierd,
                  "-c", "CREATE TABLE public.psql_tags (id BIGINT PRIMARY KEY, v TEXT)",
                  "-c", "INSERT INTO public.psql_tags VALUES (1, 'a'), (2, 'b'), (3, 'c')",
                  "-c", "UPDATE public.psql_tags SET v = 'z' WHERE id >= 2",
                  "-c", "DELETE FROM public.psql_tags WHERE id = 1",
                  "-c", "UPDATE public.psql_tags SET v = 'none' WHERE id = 99",
                  "-c", "DROP TABLE public.psql_tags"))
    assert lines(out) == ["CREATE TABLE", "INSERT 0 3", "UPDATE 2", "DELETE 1", "UPDATE 0",
                          "DROP TABLE"]


def test_namespace_and_transaction_tags(module_tierd):
    out = ok(psql(module_tierd, input=(
        "CREATE NAMESPACE psql_app;\n"
        "CREATE TABLE psql_app.t (id BIGINT PRIMARY KEY);\n"
        "BEGIN;\n"
        "INSERT INTO psql_app.t VALUES (1);\n"
        "COMMIT;\n"
        "BEGIN;\n"
        "INSERT INTO psql_app.t VALUES (2);\n"
        "ROLLBACK;\n"
        "SELECT count(*) AS n FROM psql_app.t;\n")))
    assert lines(out) == ["CREATE SCHEMA", "CREATE TABLE", "BEGIN", "INSERT 0 1", "COMMIT",
                          "BEGIN", "INSERT 0 1", "ROLLBACK", " n ", "---", " 1", "(1 row)"]


def test_multi_statement_command_gives_two_result_sets(module_tierd):
    out = ok(psql(module_tierd, "-c", "select 1 as a; select 2 as b"))
    assert lines(out) == [" a ", "---", " 1", "(1 row)", " b ", "---", " 2", "(1 row)"]


def test_multi_statement_command_mixing_ddl_dml_and_queries(module_tierd):
    out = ok(psql(module_tierd, "-A", "-c",
                  "CREATE TABLE public.psql_multi (id BIGINT PRIMARY KEY, v TEXT); "
                  "INSERT INTO public.psql_multi VALUES (1, 'one'), (2, 'two'); "
                  "SELECT v FROM public.psql_multi ORDER BY id; "
                  "SELECT count(*) AS n FROM public.psql_multi"))
    assert lines(out) == ["CREATE TABLE", "INSERT 0 2", "v", "one", "two", "(2 rows)",
                          "n", "2", "(1 row)"]
    out = ok(psql(module_tierd, "-A", "-t", "-c", "SELECT v FROM public.psql_multi ORDER BY id"))
    assert lines(out) == ["one", "two"]


# --- errors -------------------------------------------------------------------------


def test_error_is_shown_and_session_continues(module_tierd, tmp_path):
    script = tmp_path / "script.sql"
    script.write_text(
        "CREATE TABLE public.psql_err (id BIGINT PRIMARY KEY, v TEXT);\n"
        "INSERT INTO public.psql_err VALUES (1, 'first');\n"
        "SELECT * FROM public.psql_nowhere;\n"
        "INSERT INTO public.psql_err VALUES (1, 'duplicate');\n"
        "SELEC 1;\n"
        "SELECT 'abc'::int;\n"
        "INSERT INTO public.psql_err VALUES (2, 'second');\n"
        "SELECT id, v FROM public.psql_err ORDER BY id;\n")
    r = psql(module_tierd, "-A", "-t", "-f", str(script))
    assert r.returncode == 0, r.stderr   # ON_ERROR_STOP=0: psql carries on
    errors = [line for line in r.stderr.splitlines() if "ERROR:" in line]
    assert len(errors) == 4, r.stderr
    assert errors[0].startswith(f"psql:{script}:3: ERROR:") and "psql_nowhere" in errors[0]
    assert errors[1].startswith(f"psql:{script}:4: ERROR:") and \
        "duplicate key value violates unique constraint" in errors[1]
    assert errors[2].startswith(f"psql:{script}:5: ERROR:") and \
        'syntax error at or near "SELEC"' in errors[2]
    assert errors[3].startswith(f"psql:{script}:6: ERROR:") and "abc" in errors[3]
    # the connection was never lost: no reconnect, and every later statement ran
    assert "connection" not in r.stderr.lower()
    assert lines(r.stdout) == ["CREATE TABLE", "INSERT 0 1", "INSERT 0 1", "1|first", "2|second"]


def test_error_from_stdin_then_next_statement_runs(module_tierd):
    r = psql(module_tierd, input="SELECT 1 AS x;\nSELECT * FROM psql_missing_table;\nSELECT 3 AS y;\n")
    assert r.returncode == 0
    assert r.stderr.startswith("ERROR:") and "psql_missing_table" in r.stderr
    assert lines(r.stdout) == [" x ", "---", " 1", "(1 row)", " y ", "---", " 3", "(1 row)"]


def test_error_in_transaction_block_needs_rollback(module_tierd):
    r = psql(module_tierd, "-A", "-t", input=(
        "CREATE TABLE public.psql_txerr (id BIGINT PRIMARY KEY);\n"
        "BEGIN;\n"
        "INSERT INTO public.psql_txerr VALUES (1);\n"
        "SELECT * FROM psql_nope;\n"
        "SELECT 42;\n"
        "ROLLBACK;\n"
        "SELECT count(*) FROM public.psql_txerr;\n"))
    assert "current transaction is aborted" in r.stderr
    assert lines(r.stdout) == ["CREATE TABLE", "BEGIN", "INSERT 0 1", "ROLLBACK", "0"]


def test_on_error_stop_exits_with_3(module_tierd):
    env_script = "SELECT 1;\nSELECT * FROM psql_nope2;\nSELECT 2;\n"
    r = psql(module_tierd, "-A", "-t", "-v", "ON_ERROR_STOP=1", input=env_script)
    assert r.returncode == 3
    assert lines(r.stdout) == ["1"]


# --- hot and cold -------------------------------------------------------------------


def test_query_after_flush_spans_hot_and_cold(module_tierd):
    ok(psql(module_tierd,
            "-c", "CREATE TABLE public.psql_tier (id BIGINT PRIMARY KEY, v TEXT)",
            "-c", "INSERT INTO public.psql_tier SELECT i, 'cold' || i FROM range(1, 6) t(i)"))
    out = ok(psql(module_tierd, "-A", "-t", "-F", "|", "-c", "STORAGE FLUSH TABLE public.psql_tier WAIT"))
    job_id, status, message = lines(out)[0].split("|")
    assert job_id.startswith("FL-") and status == "completed"
    assert message == f"Storage flush started for table 'public.psql_tier'. Job ID: {job_id}"

    def cold_rows():
        out = ok(psql(module_tierd, "-A", "-t", "-c",
                      "SELECT cold_rows FROM system.tables "
                      "WHERE namespace = 'public' AND table_name = 'psql_tier'"))
        return lines(out) == ["5"]
    wait_for(cold_rows, timeout=30, what="5 cold rows in system.tables")

    ok(psql(module_tierd,
            "-c", "INSERT INTO public.psql_tier VALUES (6, 'hot6'), (7, 'hot7')",
            "-c", "UPDATE public.psql_tier SET v = 'updated' WHERE id = 2",
            "-c", "DELETE FROM public.psql_tier WHERE id = 4"))
    out = ok(psql(module_tierd, "-A", "-t", "-c", "SELECT id, v FROM public.psql_tier ORDER BY id"))
    assert lines(out) == ["1|cold1", "2|updated", "3|cold3", "5|cold5", "6|hot6", "7|hot7"]
    out = ok(psql(module_tierd, "-c", "SELECT count(*) AS n, sum(id) AS s FROM public.psql_tier"))
    assert lines(out) == [" n | s  ", "---+----", " 6 | 24", "(1 row)"]


def test_flush_with_nothing_pending_is_skipped(module_tierd):
    ok(psql(module_tierd, "-c", "CREATE TABLE public.psql_empty (id BIGINT PRIMARY KEY)"))
    out = ok(psql(module_tierd, "-A", "-t", "-c", "STORAGE FLUSH TABLE public.psql_empty WAIT"))
    assert "Storage flush skipped: no pending writes for table 'public.psql_empty'" in out


# --- bytea --------------------------------------------------------------------------


def test_bytea_results_print_as_hex(module_tierd):
    out = ok(psql(module_tierd, "-A", "-t", "-c", "SELECT 'ab'::blob AS b, NULL::bytea AS n"))
    assert lines(out) == ["\\x6162|"]


def test_bytea_hex_literal_is_postgres_hex_format(module_tierd):
    out = ok(psql(module_tierd, "-A", "-t",
                  "-c", "CREATE TABLE public.psql_bytea (id BIGINT PRIMARY KEY, b BYTEA)",
                  "-c", "INSERT INTO public.psql_bytea VALUES (1, '\\x0001ff')",
                  "-c", "SELECT b, octet_length(b) FROM public.psql_bytea"))
    assert lines(out)[-1] == "\\x0001ff|3"
