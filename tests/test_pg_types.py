"""engine.catalog.pg_types (what pg_catalog calls each type) agrees with protocol.types.oids (what
the wire sends): every OID the wire can report for a column has a pg_type row, with the
same array OID and length."""
from __future__ import annotations

from engine.catalog import pg_types
from protocol.types import oids


def test_every_wire_type_has_a_pg_type_row_with_the_same_facts():
    for element, array in oids.ARRAY_OF.items():
        t = pg_types.BY_OID[element]
        assert t.array_oid == array, t
        assert t.typlen == oids.typlen(element), t


def test_format_type_spellings():
    assert pg_types.BY_OID[oids.TIMESTAMPTZ].sql_name == "timestamp with time zone"
    assert pg_types.BY_OID[oids.INT8].sql_name == "bigint"
    assert pg_types.BY_OID[oids.VARCHAR].sql_name == "character varying"
    assert pg_types.numeric_typmod(10, 2) == (10 << 16 | 2) + 4
