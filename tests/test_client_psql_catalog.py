"""psql's catalog commands (\\dt, \\d t, \\dn, \\l, \\du, \\df, \\dt ns.*) against a real tierd:
each runs psql's own catalog queries through tierd's pg_catalog, and the output must show
what tierd holds."""
from __future__ import annotations

import pytest

from tests.test_wire_psql import PSQL, lines, ok, psql  # noqa: F401  (PSQL: the skip condition)
from tests.test_wire_psql import pytestmark  # noqa: F401


@pytest.fixture(scope="module")
def catalog_tierd(module_tierd):
    """The module's daemon holding the tables the catalog commands show."""
    d = module_tierd
    ok(psql(d, "-c", "CREATE TABLE public.items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, "
                     "price NUMERIC(10,2), qty INTEGER DEFAULT 1, seen TIMESTAMPTZ DEFAULT now(), "
                     "tags INTEGER[], flag BOOLEAN, ratio DOUBLE PRECISION, day DATE)",
            "-c", "CREATE NAMESPACE shop",
            "-c", "CREATE TABLE shop.orders (region TEXT, num INTEGER, note TEXT, PRIMARY KEY (region, num))"))
    return d


def test_dt_lists_the_tables_on_the_search_path(catalog_tierd):
    out = lines(ok(psql(catalog_tierd, "-c", r"\dt")))
    assert out[0].strip() == "List of relations"
    assert [c.strip() for c in out[1].split("|")] == ["Schema", "Name", "Type", "Owner"]
    rows = [[c.strip() for c in line.split("|")] for line in out[3:-1]]
    assert ["public", "items", "table", "tierd"] in rows
    assert not any(r[0] == "shop" for r in rows)  # not on the search path, as in Postgres
    assert out[-1] == f"({len(rows)} row{'s' if len(rows) != 1 else ''})"


def test_dt_follows_search_path(catalog_tierd):
    """After SET search_path, plain \\dt lists what is on the new path (and nothing else)."""
    out = lines(ok(psql(catalog_tierd, "-c", "SET search_path = shop", "-c", r"\dt")))
    rows = [[c.strip() for c in line.split("|")] for line in out[4:-1]]
    assert rows == [["shop", "orders", "table", "tierd"]]
    out = lines(ok(psql(catalog_tierd, "-c", "SET search_path = shop, public", "-c", r"\dt")))
    rows = [[c.strip() for c in line.split("|")] for line in out[4:-1]]
    assert ["shop", "orders", "table", "tierd"] in rows and ["public", "items", "table", "tierd"] in rows


def test_dt_with_a_namespace_pattern(catalog_tierd):
    out = lines(ok(psql(catalog_tierd, "-c", r"\dt shop.*")))
    rows = [[c.strip() for c in line.split("|")] for line in out[3:-1]]
    assert rows == [["shop", "orders", "table", "tierd"]]


def test_d_table_shows_postgres_types_nullability_defaults_and_the_primary_key(catalog_tierd):
    out = ok(psql(catalog_tierd, "-c", r"\d items"))
    assert 'Table "public.items"' in out
    cols = {}
    for line in lines(out):
        parts = [c.strip() for c in line.split("|")]
        if len(parts) == 5:
            cols[parts[0]] = parts[1:]
    assert cols["id"] == ["bigint", "", "not null", ""]
    assert cols["name"] == ["text", "", "not null", ""]
    assert cols["price"][0] == "numeric(10,2)"
    assert cols["qty"][0] == "integer" and cols["qty"][3] == "1"
    assert cols["seen"][0] == "timestamp with time zone" and "now()" in cols["seen"][3].lower() or \
        "current_timestamp" in cols["seen"][3].lower()
    assert cols["tags"][0] == "integer[]"
    assert cols["flag"][0] == "boolean"
    assert cols["ratio"][0] == "double precision"
    assert cols["day"][0] == "date"
    assert "_seq" not in cols and "_deleted" not in cols  # system columns stay hidden
    assert "Indexes:" in out
    assert '"items_pkey" PRIMARY KEY, btree (id)' in out


def test_d_composite_key_in_another_namespace(catalog_tierd):
    out = ok(psql(catalog_tierd, "-c", r"\d shop.orders"))
    assert 'Table "shop.orders"' in out
    assert '"orders_pkey" PRIMARY KEY, btree (region, num)' in out


def test_d_system_table_is_a_view(catalog_tierd):
    out = ok(psql(catalog_tierd, "-c", r"\d system.tables"))
    assert 'View "system.tables"' in out
    assert "table_name" in out and "flush_policy" in out


def test_d_missing_relation_says_so(catalog_tierd):
    result = psql(catalog_tierd, "-c", r"\d no_such_table")
    assert "Did not find any relation named" in result.stderr


def test_dn_lists_namespaces_without_pg_schemas(catalog_tierd):
    out = lines(ok(psql(catalog_tierd, "-c", r"\dn")))
    names = [line.split("|")[0].strip() for line in out[3:-1]]
    assert "public" in names and "shop" in names and "system" in names
    assert not any(n.startswith("pg_") or n == "information_schema" for n in names)


def test_l_lists_the_database(catalog_tierd):
    out = lines(ok(psql(catalog_tierd, "-c", r"\l")))
    rows = [[c.strip() for c in line.split("|")] for line in out[3:-1]]
    assert rows[0][:3] == ["tierd", "tierd", "UTF8"]


def test_du_lists_roles_with_their_attributes(catalog_tierd):
    ok(psql(catalog_tierd, "-c", "CREATE USER psql_alice WITH PASSWORD 'pw'"))
    out = lines(ok(psql(catalog_tierd, "-c", r"\du")))
    rows = {r[0]: r for r in ([c.strip() for c in line.split("|")] for line in out[3:]) if len(r) == 3}
    assert "Superuser" in rows["tierd"][1]
    assert "Superuser" not in rows["psql_alice"][1]


def test_dt_shows_a_changed_owner(catalog_tierd):
    ok(psql(catalog_tierd, "-c", "CREATE USER psql_owner WITH PASSWORD 'pw'",
            "-c", "CREATE TABLE public.owned (id INT PRIMARY KEY)",
            "-c", "ALTER TABLE public.owned OWNER TO psql_owner"))
    rows = [[c.strip() for c in line.split("|")] for line in lines(ok(psql(catalog_tierd, "-c", r"\dt")))[3:-1]]
    assert ["public", "owned", "table", "psql_owner"] in rows


def test_df_runs_and_lists_no_user_functions(catalog_tierd):
    out = lines(ok(psql(catalog_tierd, "-c", r"\df")))
    assert out[0].strip() == "List of functions"
    assert out[-1] == "(0 rows)"


def test_dt_sees_a_new_table_and_forgets_a_dropped_one(catalog_tierd):
    ok(psql(catalog_tierd, "-c", "CREATE TABLE public.later (id INT PRIMARY KEY)"))
    assert "later" in ok(psql(catalog_tierd, "-c", r"\dt"))
    ok(psql(catalog_tierd, "-c", "DROP TABLE public.later"))
    assert "later" not in ok(psql(catalog_tierd, "-c", r"\dt"))


def test_ds_and_d_show_sequences_serial_and_identity_as_postgres(catalog_tierd):
    ok(psql(catalog_tierd, "-c", "CREATE TABLE public.autos (id SERIAL PRIMARY KEY, "
                                 "g BIGINT GENERATED ALWAYS AS IDENTITY, v TEXT)",
            "-c", "CREATE SEQUENCE public.standalone", "-c", "CREATE TABLE public.keyless (a INT, b TEXT)"))
    out = lines(ok(psql(catalog_tierd, "-c", r"\ds")))
    rows = [[c.strip() for c in line.split("|")] for line in out[3:-1]]
    for name in ("autos_id_seq", "autos_g_seq", "standalone"):
        assert ["public", name, "sequence", "tierd"] in rows
    out = lines(ok(psql(catalog_tierd, "-c", r"\d public.autos")))
    cells = {line.split("|")[0].strip(): [c.strip() for c in line.split("|")] for line in out if "|" in line}
    assert cells["id"][3:] == ["not null", "nextval('autos_id_seq'::regclass)"]
    assert cells["g"][3:] == ["not null", "generated always as identity"]
    out = lines(ok(psql(catalog_tierd, "-c", r"\d public.keyless")))
    names = [line.split("|")[0].strip() for line in out[3:] if "|" in line]
    assert names == ["a", "b"]  # the hidden row id is not a column
    assert not any("Indexes" in line for line in out)
    ok(psql(catalog_tierd, "-c", "DROP TABLE public.autos, public.keyless", "-c", "DROP SEQUENCE public.standalone"))


def test_d_plus_shows_column_comments_and_dt_plus_the_table_comment(catalog_tierd):
    ok(psql(catalog_tierd, "-c", "CREATE TABLE public.described (id INT PRIMARY KEY, v TEXT)",
            "-c", "COMMENT ON TABLE public.described IS 'rows with notes'",
            "-c", "COMMENT ON COLUMN public.described.v IS 'the note'"))
    out = ok(psql(catalog_tierd, "-c", r"\d+ described"))
    header = [c.strip() for c in lines(out)[1].split("|")]
    assert header[-1] == "Description", out
    cols = {p[0]: p for p in ([c.strip() for c in line.split("|")] for line in lines(out)) if len(p) == len(header)}
    assert cols["v"][-1] == "the note" and cols["id"][-1] == "", out
    out = ok(psql(catalog_tierd, "-c", r"\dt+ described"))
    assert "rows with notes" in out, out
    # after ALTER TABLE, \d shows the new shape
    ok(psql(catalog_tierd, "-c", "ALTER TABLE public.described ADD COLUMN n BIGINT DEFAULT 3, "
                                 "ALTER COLUMN v SET NOT NULL"))
    cols = {p[0]: p for p in ([c.strip() for c in line.split("|")] for line in lines(ok(psql(catalog_tierd, "-c", r"\d described"))))
            if len(p) == 5}
    assert cols["n"] == ["n", "bigint", "", "", "3"] and cols["v"][3] == "not null", cols


def test_d_and_di_show_created_indexes(catalog_tierd):
    """CREATE INDEX records are shown by \\d t (under Indexes:, after the primary key) and \\di."""
    ok(psql(catalog_tierd, "-c", "CREATE TABLE public.indexed (id BIGINT PRIMARY KEY, email TEXT, org INT)",
            "-c", "CREATE INDEX ix_indexed_email ON public.indexed (email)",
            "-c", "CREATE UNIQUE INDEX ix_indexed_id ON public.indexed (id)",
            "-c", "CREATE INDEX ON public.indexed (org, email)"))
    try:
        out = ok(psql(catalog_tierd, "-c", r"\d indexed"))
        indexes = [line.strip() for line in lines(out.split("Indexes:", 1)[1])]
        assert indexes[:4] == ['"indexed_pkey" PRIMARY KEY, btree (id)', '"indexed_org_email_idx" btree (org, email)',
                               '"ix_indexed_email" btree (email)', '"ix_indexed_id" UNIQUE, btree (id)'], out
        rows = [[c.strip() for c in line.split("|")] for line in lines(ok(psql(catalog_tierd, "-c", r"\di")))]
        assert ["public", "ix_indexed_email", "index", "tierd", "indexed"] in rows, rows
    finally:
        ok(psql(catalog_tierd, "-c", "DROP TABLE public.indexed"))
    assert "ix_indexed_email" not in ok(psql(catalog_tierd, "-c", r"\di"))


def test_d_shows_foreign_keys_on_the_child_and_referenced_by_on_the_parent(catalog_tierd):
    ok(psql(catalog_tierd, "-c", "CREATE TABLE public.fk_parent (id BIGINT PRIMARY KEY)",
            "-c", "CREATE TABLE public.fk_child (id BIGINT PRIMARY KEY, "
                  "parent_id BIGINT REFERENCES public.fk_parent ON DELETE CASCADE, "
                  "region TEXT, num INTEGER, CONSTRAINT child_order FOREIGN KEY (region, num) REFERENCES shop.orders)"))
    child = lines(ok(psql(catalog_tierd, "-c", r"\d fk_child")))
    at = child.index("Foreign-key constraints:")
    assert child[at + 1:at + 3] == [
        '    "child_order" FOREIGN KEY (region, num) REFERENCES shop.orders(region, num)',
        '    "fk_child_parent_id_fkey" FOREIGN KEY (parent_id) REFERENCES fk_parent(id) ON DELETE CASCADE']
    parent = lines(ok(psql(catalog_tierd, "-c", r"\d fk_parent")))
    at = parent.index("Referenced by:")
    assert parent[at + 1] == ('    TABLE "fk_child" CONSTRAINT "fk_child_parent_id_fkey" FOREIGN KEY (parent_id) '
                              "REFERENCES fk_parent(id) ON DELETE CASCADE")
    orders = lines(ok(psql(catalog_tierd, "-c", r"\d shop.orders")))
    assert '    TABLE "fk_child" CONSTRAINT "child_order" FOREIGN KEY (region, num) REFERENCES shop.orders(region, num)' \
        in orders
