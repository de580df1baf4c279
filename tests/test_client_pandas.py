"""pandas against a real tierd over SQLAlchemy 2.0 + psycopg: `to_sql` (create, append,
replace), `read_sql`, `read_sql_table`.

pandas runs a whole `to_sql` as one transaction (pandasSQL_builder(need_transaction=True)):
has_table, then for `replace` DROP TABLE and CREATE TABLE (never with a primary key), then the
INSERTs. tierd's transactional DDL makes that all-or-nothing, so a replace that fails midway
leaves the old table and every row (hot and flushed) in place.
"""
from __future__ import annotations

import pytest

pd = pytest.importorskip("pandas", reason="pandas is in the test extra: make install")
sqlalchemy = pytest.importorskip("sqlalchemy", reason="SQLAlchemy is in the test extra: make install")

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402



@pytest.fixture(scope="module")
def engine(module_tierd):
    eng = create_engine(f"postgresql+psycopg://tierd@127.0.0.1:{module_tierd.port}/tierd")
    yield eng
    eng.dispose()


def keyed_table(engine, name: str, rows: int = 3, flush: bool = True) -> pd.DataFrame:
    """A table with a key and rows, some flushed to Parquet and one still hot."""
    with engine.begin() as c:
        c.exec_driver_sql(f"CREATE TABLE public.{name} (id BIGINT PRIMARY KEY, v TEXT, x DOUBLE) "
                          "WITH (FLUSH_POLICY = 'manual')")
        c.exec_driver_sql(f"INSERT INTO public.{name} SELECT i, 'v' || i, i / 2.0 FROM range({rows}) r(i)")
    if flush:
        with engine.connect() as c:
            c.exec_driver_sql(f"STORAGE FLUSH TABLE public.{name} WAIT")
            c.commit()
    with engine.begin() as c:
        c.exec_driver_sql(f"INSERT INTO public.{name} VALUES ({rows}, 'hot', -1.0)")
    return pd.read_sql(f"SELECT * FROM public.{name} ORDER BY id", engine)


def test_append_into_a_keyed_table_and_read_back(engine):
    before = keyed_table(engine, "pd_append")
    new = pd.DataFrame({"id": [10, 11], "v": ["a", None], "x": [1.25, float("nan")]})
    new.to_sql("pd_append", engine, schema="public", if_exists="append", index=False)
    got = pd.read_sql_table("pd_append", engine, schema="public").sort_values("id").reset_index(drop=True)
    want = pd.concat([before, new], ignore_index=True)
    assert got["id"].tolist() == want["id"].tolist()
    assert got["v"].iloc[:5].tolist() == ["v0", "v1", "v2", "hot", "a"] and pd.isna(got["v"].iloc[5])
    assert got["x"].iloc[:5].tolist() == [0.0, 0.5, 1.0, -1.0, 1.25] and pd.isna(got["x"].iloc[5])


def test_read_sql_with_parameters_and_read_sql_table_columns(engine):
    keyed_table(engine, "pd_read", rows=5)
    df = pd.read_sql(text("SELECT id, v FROM public.pd_read WHERE id >= :lo ORDER BY id"), engine, params={"lo": 3})
    assert df.to_dict("list") == {"id": [3, 4, 5], "v": ["v3", "v4", "hot"]}
    df = pd.read_sql_table("pd_read", engine, schema="public", columns=["v"])
    assert sorted(df["v"]) == sorted(["v0", "v1", "v2", "v3", "v4", "hot"])


def test_replace_that_fails_midway_keeps_the_table_and_every_row(engine, module_tierd):
    before = keyed_table(engine, "pd_keep")
    bad = pd.DataFrame({"id": [1, 2], "v": ["only", "these"]})
    # DROP TABLE and CREATE TABLE run in pandas' transaction; the INSERT fails (a string is no
    # integer), so the transaction rolls back, DROP included.
    with pytest.raises((SQLAlchemyError, pd.errors.DatabaseError)):  # pandas may wrap the driver error
        bad.to_sql("pd_keep", engine, schema="public", if_exists="replace", index=False,
                   dtype={"v": sqlalchemy.Integer})
    assert pd.read_sql("SELECT * FROM public.pd_keep ORDER BY id", engine).equals(before)
    module_tierd.restart(kill9=True)
    engine.dispose()
    assert pd.read_sql("SELECT * FROM public.pd_keep ORDER BY id", engine).equals(before)


def test_to_sql_creates_a_table(engine):
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None], "c": [0.5, 1.5, 2.5]})
    df.to_sql("pd_created", engine, schema="public", index=False)
    got = pd.read_sql_table("pd_created", engine, schema="public").sort_values("a").reset_index(drop=True)
    assert got.equals(df)


def test_replace_swaps_the_table_and_its_rows_at_once(engine):
    keyed_table(engine, "pd_replace")
    new = pd.DataFrame({"k": [7, 8], "w": ["seven", "eight"]})
    new.to_sql("pd_replace", engine, schema="public", if_exists="replace", index=False)
    got = pd.read_sql("SELECT * FROM public.pd_replace ORDER BY k", engine)
    assert got.equals(new)
    # and again: replace a replaced table, appending afterwards
    new.to_sql("pd_replace", engine, schema="public", if_exists="replace", index=False)
    new.to_sql("pd_replace", engine, schema="public", if_exists="append", index=False)
    assert len(pd.read_sql_table("pd_replace", engine, schema="public")) == 4


def test_columns_named_at_and_lambda_round_trip(engine):
    """`at` and `lambda` are plain column names to Postgres (SQLAlchemy writes them bare);
    DuckDB reserves both, so tierd quotes them before DuckDB reads the statement."""
    import datetime as dt

    frame = pd.DataFrame({"id": [1, 2, 3],
                          "at": [dt.datetime(2024, 1, day, tzinfo=dt.timezone.utc) for day in (1, 2, 3)],
                          "lambda": [0.5, 1.5, 2.5]})
    frame.to_sql("pd_reserved", engine, schema="public", index=False)
    frame.iloc[:1].assign(id=4).to_sql("pd_reserved", engine, schema="public", index=False, if_exists="append")
    got = pd.read_sql(text("SELECT id, at, lambda FROM public.pd_reserved WHERE at < :t ORDER BY at DESC, id"),
                      engine, params={"t": dt.datetime(2024, 1, 3, tzinfo=dt.timezone.utc)})
    assert got["id"].tolist() == [2, 1, 4]
    assert got["lambda"].tolist() == [1.5, 0.5, 0.5]
    assert [ts.day for ts in got["at"]] == [2, 1, 1]
    assert [c["name"] for c in sqlalchemy.inspect(engine).get_columns("pd_reserved", schema="public")] == \
        ["id", "at", "lambda"]
