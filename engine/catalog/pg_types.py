"""Facts about Postgres's built-in types that tierd's pg_catalog shows (pg_type rows).

Which Postgres type a column *is* comes from the wire's Arrow -> OID map (protocol.types,
injected as `EngineConfig.type_oid`), so a column's catalog type is the type a SELECT of it
reports; this module only says what each of those OIDs is called and how it is shaped.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuiltinType:
    oid: int
    typname: str  # pg_type.typname
    sql_name: str  # format_type()'s spelling, also information_schema.columns.data_type
    typlen: int
    category: str  # pg_type.typcategory
    array_oid: int  # 0: no array type


BUILTIN_TYPES: tuple[BuiltinType, ...] = (
    BuiltinType(16, "bool", "boolean", 1, "B", 1000),
    BuiltinType(17, "bytea", "bytea", -1, "U", 1001),
    BuiltinType(18, "char", '"char"', 1, "Z", 1002),
    BuiltinType(19, "name", "name", 64, "S", 1003),
    BuiltinType(20, "int8", "bigint", 8, "N", 1016),
    BuiltinType(21, "int2", "smallint", 2, "N", 1005),
    BuiltinType(23, "int4", "integer", 4, "N", 1007),
    BuiltinType(24, "regproc", "regproc", 4, "N", 1008),
    BuiltinType(25, "text", "text", -1, "S", 1009),
    BuiltinType(26, "oid", "oid", 4, "N", 1028),
    BuiltinType(114, "json", "json", -1, "U", 199),
    BuiltinType(700, "float4", "real", 4, "N", 1021),
    BuiltinType(701, "float8", "double precision", 8, "N", 1022),
    BuiltinType(705, "unknown", "unknown", -2, "X", 0),
    BuiltinType(1042, "bpchar", "character", -1, "S", 1014),
    BuiltinType(1043, "varchar", "character varying", -1, "S", 1015),
    BuiltinType(1082, "date", "date", 4, "D", 1182),
    BuiltinType(1083, "time", "time without time zone", 8, "D", 1183),
    BuiltinType(1114, "timestamp", "timestamp without time zone", 8, "D", 1115),
    BuiltinType(1184, "timestamptz", "timestamp with time zone", 8, "D", 1185),
    BuiltinType(1186, "interval", "interval", 16, "T", 1187),
    BuiltinType(1266, "timetz", "time with time zone", 12, "D", 1270),
    BuiltinType(1700, "numeric", "numeric", -1, "N", 1231),
    BuiltinType(2205, "regclass", "regclass", 4, "N", 2210),
    BuiltinType(2206, "regtype", "regtype", 4, "N", 2211),
    BuiltinType(2950, "uuid", "uuid", 16, "U", 2951),
    BuiltinType(3802, "jsonb", "jsonb", -1, "U", 3807),
)

BY_OID: dict[int, BuiltinType] = {t.oid: t for t in BUILTIN_TYPES}
ARRAY_ELEMENT: dict[int, BuiltinType] = {t.array_oid: t for t in BUILTIN_TYPES if t.array_oid}
TEXT_OID = 25
NUMERIC_OID = 1700


_PG_NAMES = {"DOUBLE": "double precision", "FLOAT": "real", "VARCHAR": "text", "TINYINT": "smallint",
             "TIMESTAMP WITH TIME ZONE": "timestamp with time zone", "BLOB": "bytea"}


def pg_type_name(duck_type: str) -> str:
    """The Postgres name of a DuckDB column type, for messages."""
    return _PG_NAMES.get(duck_type.upper(), duck_type.lower())


def numeric_typmod(precision: int, scale: int) -> int:
    """pg_attribute.atttypmod of numeric(p, s), as Postgres encodes it."""
    return ((precision << 16) | scale) + 4


_DECLARED_OIDS = {"jsonb": 3802, "json": 114, "time with time zone": 1266,
                  "character varying": 1043, "character": 1042}


def declared_oid(spelling: str) -> tuple[int, int]:
    """(atttypid, atttypmod) of a declared type spelled as format_type() does
    (engine/sql/declared_types.py): `character varying(20)` is (1043, 24)."""
    base, _, length = spelling.partition("(")
    return _DECLARED_OIDS[base.strip()], (int(length.rstrip(")")) + 4 if length else -1)


def pg_type_rows(namespace_oid: int) -> list[tuple]:
    """pg_type rows for every built-in type and its array type:
    (oid, typname, typnamespace, typlen, typtype, typcategory, typelem, typarray, sql_name)."""
    rows = []
    for t in BUILTIN_TYPES:
        rows.append((t.oid, t.typname, namespace_oid, t.typlen, "b", t.category, 0, t.array_oid, t.sql_name))
        if t.array_oid:
            rows.append((t.array_oid, "_" + t.typname, namespace_oid, -1, "b", "A", t.oid, 0, t.sql_name + "[]"))
    return rows
