"""The catalog queries Grafana, Metabase and DBeaver send, run verbatim against a daemon with a
few tables (issue 14): each must run without error and give sensible rows.

Each query is a file in tests/tools/<tool>/*.sql, copied from the tool's source (the header
names repository, path and commit), with header lines:

    -- params: [json values]      parameters bound as the tool binds them ($1, $2, ...)
    -- params-sql: SELECT ...      parameters taken from the first row of a query (OIDs)
    -- expect: text                a value some row must hold (repeatable); `no rows` for none
    -- pending: f() (who)          the query needs functions another part of issue 14 adds: an
                                   error naming one of them is an expected failure until then

A `?` in the SQL is a JDBC placeholder: it goes over the wire as $n, as pgJDBC sends it.
"""
from __future__ import annotations

import glob
import json
import os
import re

import psycopg
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# Quoted text ('...' or "...") or a JDBC placeholder outside it.
_QUOTED_OR_MARK = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?")
FILES = sorted(glob.glob(os.path.join(HERE, "tools", "*", "*.sql")))


def _parse(path: str) -> dict:
    meta: dict = {"params": None, "params_sql": None, "expect": [], "pending": None, "source": False}
    body = []
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            if line.startswith("-- ") and not body and key[3:] in ("params", "params-sql", "expect", "pending",
                                                                     "source"):
                name = key[3:].replace("-", "_")
                if name == "expect":
                    meta["expect"].append(value.strip())
                elif name == "source":
                    meta["source"] = True
                else:
                    meta[name] = value.strip()
            elif body or not line.startswith("--"):
                body.append(line)
    meta["sql"] = "".join(body).strip()
    return meta


@pytest.fixture(scope="module")
def tool_db(module_tierd):
    with module_tierd.connect(connect_timeout=10) as c:
        c.execute("CREATE TABLE public.metrics (id BIGINT PRIMARY KEY, ts TIMESTAMPTZ NOT NULL, host TEXT, "
                  "value DOUBLE PRECISION DEFAULT 0)")
        c.execute("CREATE NAMESPACE shop")
        c.execute("CREATE TABLE shop.orders (region TEXT, num INTEGER, customer TEXT NOT NULL, "
                  "amount NUMERIC(10,2), placed TIMESTAMP, PRIMARY KEY (region, num))")
        c.execute("INSERT INTO public.metrics VALUES (1, now(), 'a', 0.5), (2, now(), 'b', 1.5)")
        c.execute("STORAGE FLUSH TABLE public.metrics WAIT")
        c.execute("INSERT INTO public.metrics VALUES (3, now(), 'c', 2.5)")
        c.execute("INSERT INTO shop.orders VALUES ('eu', 1, 'x', 9.99, now())")
        c.execute("CREATE TABLE shop.lines (id BIGINT PRIMARY KEY, region TEXT, num INTEGER, "
                  "metric_id BIGINT REFERENCES public.metrics ON DELETE SET NULL, "
                  "FOREIGN KEY (region, num) REFERENCES shop.orders)")
        yield c


def test_every_file_names_its_source():
    assert FILES, "no tool queries found"
    for path in FILES:
        assert _parse(path)["source"], f"{path}: no '-- source:' line"


@pytest.mark.parametrize("path", FILES, ids=[os.path.relpath(p, os.path.join(HERE, "tools")) for p in FILES])
def test_tool_query(tool_db, path):
    q = _parse(path)
    params = None
    if q["params"]:
        params = json.loads(q["params"])
    elif q["params_sql"]:
        params = list(tool_db.execute(q["params_sql"]).fetchone())
    sql = q["sql"]
    if params is not None:  # psycopg's %s placeholders, sent as $1, $2, ... like pgJDBC's ?
        sql = _QUOTED_OR_MARK.sub(lambda m: "%s" if m.group() == "?" else m.group(), sql.replace("%", "%%"))
    try:
        rows = tool_db.execute(sql, params).fetchall()
    except psycopg.Error as e:
        names = re.findall(r"(\w+)\(\)", q["pending"] or "")  # the functions it waits for
        if any(n.lower() in str(e).lower() for n in names):
            pytest.xfail(f"pending {q['pending']}: {e.sqlstate} {str(e).splitlines()[0]}")
        raise AssertionError(f"{path}: {e.sqlstate} {e}") from None
    assert tool_db.execute("SELECT 1").fetchone() == (1,)
    shown = [[("" if v is None else str(v)) for v in row] for row in rows]
    if q["expect"] == ["no rows"]:
        assert rows == [], f"{path}: expected no rows, got {shown[:5]}"
        return
    assert rows, f"{path}: no rows"
    for want in q["expect"]:
        if not any(want == v for row in shown for v in row):
            if q["pending"]:  # a function of the pending list answers wrongly until it exists
                pytest.xfail(f"pending {q['pending']}: no row holds {want!r}")
            raise AssertionError(f"{path}: no row holds {want!r}; rows: {shown[:20]}")
