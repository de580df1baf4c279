"""Postgres type OIDs (pg_type.dat) and the facts about them the wire needs."""
from __future__ import annotations

BOOL = 16
BYTEA = 17
CHAR = 18
NAME = 19
INT8 = 20
INT2 = 21
INT4 = 23
TEXT = 25
OID = 26
JSON = 114
FLOAT4 = 700
FLOAT8 = 701
UNKNOWN = 705
BPCHAR = 1042
VARCHAR = 1043
DATE = 1082
TIME = 1083
TIMESTAMP = 1114
TIMESTAMPTZ = 1184
INTERVAL = 1186
TIMETZ = 1266
NUMERIC = 1700
UUID = 2950
JSONB = 3802

# Element OID -> array OID, for RowDescription of list columns.
ARRAY_OF: dict[int, int] = {
    BOOL: 1000, BYTEA: 1001, CHAR: 1002, NAME: 1003, INT2: 1005, INT4: 1007, TEXT: 1009,
    BPCHAR: 1014, VARCHAR: 1015, INT8: 1016, FLOAT4: 1021, FLOAT8: 1022, OID: 1028,
    TIMESTAMP: 1115, DATE: 1182, TIME: 1183, TIMESTAMPTZ: 1185, INTERVAL: 1187,
    NUMERIC: 1231, TIMETZ: 1270, UUID: 2951, JSON: 199, JSONB: 3807,
}
# Array OID -> element OID, for decoding array parameters.
ELEMENT_OF: dict[int, int] = {array: element for element, array in ARRAY_OF.items()}

# pg_type.typlen: fixed width in bytes, -1 for variable length.
TYPLEN: dict[int, int] = {
    BOOL: 1, CHAR: 1, NAME: 64, INT2: 2, INT4: 4, INT8: 8, OID: 4, FLOAT4: 4, FLOAT8: 8,
    DATE: 4, TIME: 8, TIMESTAMP: 8, TIMESTAMPTZ: 8, INTERVAL: 16, TIMETZ: 12, UUID: 16,
}


def typlen(oid: int) -> int:
    return TYPLEN.get(oid, -1)
