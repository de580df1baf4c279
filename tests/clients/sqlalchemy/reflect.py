"""SQLAlchemy reflection against a running tierd, printed as JSON: run by
tests/test_client_sqlalchemy_reflection.py under SQLAlchemy 2.0 (the test extra) and 2.1 (the
separate `--target` install the Makefile makes), so one script covers both.

    python reflect.py postgresql+psycopg://tierd@127.0.0.1:PORT/tierd
"""
from __future__ import annotations

import json
import sys

import sqlalchemy as sa


def main(url: str) -> dict:
    eng = sa.create_engine(url)
    insp = sa.inspect(eng)
    out: dict = {"version": sa.__version__, "module": sa.__file__}
    out["schemas"] = insp.get_schema_names()
    out["tables"] = insp.get_table_names()
    out["shop_tables"] = insp.get_table_names(schema="shop")
    out["has_table"] = [insp.has_table("refl_items"), insp.has_table("nope")]
    out["columns"] = [[c["name"], str(c["type"]), c["nullable"], c.get("default"), getattr(c["type"], "timezone", None)]
                      for c in insp.get_columns("refl_items")]
    out["shop_columns"] = [[c["name"], str(c["type"])] for c in insp.get_columns("orders", schema="shop")]
    out["pk"] = insp.get_pk_constraint("refl_items")
    out["shop_pk"] = insp.get_pk_constraint("orders", schema="shop")
    out["indexes"] = insp.get_indexes("refl_items")
    out["fks"] = insp.get_foreign_keys("refl_items")
    out["unique"] = insp.get_unique_constraints("refl_items")
    out["child_fks"] = sorted(insp.get_foreign_keys("refl_lines"), key=lambda fk: fk["name"])
    lines = sa.Table("refl_lines", sa.MetaData(), autoload_with=eng)
    out["child_targets"] = sorted(fk.target_fullname for fk in lines.foreign_keys)
    md = sa.MetaData()
    t = sa.Table("refl_items", md, autoload_with=eng)
    out["autoload"] = [[c.name, str(c.type), c.primary_key] for c in t.columns]
    md2 = sa.MetaData()
    md2.reflect(eng, schema="shop")
    out["reflected"] = sorted(md2.tables)
    md3 = sa.MetaData()
    md3.reflect(eng)
    out["reflected_public"] = sorted(md3.tables)
    with eng.connect() as c:
        out["rows"] = [[str(v) for v in r] for r in c.execute(sa.select(t).order_by(t.c.id))]
    eng.dispose()
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), default=str))
