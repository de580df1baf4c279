"""nextval, currval, setval, lastval and pg_get_serial_sequence as DuckDB functions.

Macros in the `main` schema of each catalog a session USEs come before DuckDB's built-ins (whose
nextval knows only DuckDB's own sequences); they call one Python function with the session id
each session's cursor carries in a DuckDB variable, so currval and lastval stay per session.
A column default `nextval('ns.t_id_seq')` is the same call, evaluated by DuckDB when a row is
typed on the slow path; the fast INSERT path allocates from `Sequences` directly.
"""
from __future__ import annotations

import duckdb

from engine.catalog import pg_catalog
from engine.catalog.sequences import SequenceDef, Sequences
from engine.catalog.tables import DEFAULT_NAMESPACE
from engine.errors import EngineError, UndefinedColumn, UndefinedTable, udf_error

SESSION_VARIABLE = "tierd_session"
_UDF = "__tierd_sequence"
_SERIAL_UDF = "__tierd_serial_sequence"


def split_name(text: str) -> tuple[str, str]:
    """A sequence name as written in a string ('s', 'ns.s', '"S"'): (namespace, name)."""
    parts, cur, quoted, i = [], "", False, 0
    while i < len(text):
        c = text[i]
        if c == '"':
            if quoted and i + 1 < len(text) and text[i + 1] == '"':
                cur += '"'
                i += 1
            else:
                quoted = not quoted
        elif c == "." and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += c if quoted else c.lower()
        i += 1
    parts.append(cur)
    parts = [p.strip() for p in parts]
    return (DEFAULT_NAMESPACE, parts[0]) if len(parts) == 1 else (parts[-2], parts[-1])


def resolve(sequences: Sequences, text: str) -> SequenceDef:
    """The sequence a function argument names: its name, or its OID (a `::regclass` cast)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        oid = int(text)
        d = sequences.by_sid((oid - pg_catalog.FIRST_TABLE_OID) // 3) if oid >= pg_catalog.FIRST_TABLE_OID else None
        if d is None or pg_catalog.relation_oids(d.sid)[0] != oid:
            raise UndefinedTable(f"could not open relation with OID {oid}")
        return d
    ns, name = split_name(text)
    d = sequences.find(ns, name)
    if d is None:
        raise UndefinedTable(f'relation "{text}" does not exist')
    return d


def install(con: duckdb.DuckDBPyConnection, sequences: Sequences, catalog, catalogs: tuple[str, ...]) -> None:
    """Register the functions on the engine's database and their macros in `catalogs`."""

    def call(op: str, name: str | None, session: int | None, value: int | None, called: bool | None) -> int | None:
        try:
            if op == "lastval":
                return sequences.lastval(session)
            if name is None:
                return None
            d = resolve(sequences, name)
            if op == "nextval":
                return sequences.nextval(d, session)[0]
            if op == "currval":
                return sequences.currval(d, session)
            if value is None:
                return None
            return sequences.setval(d, value, True if called is None else called, session)
        except EngineError as err:
            raise udf_error(err) from None

    def serial(table: str | None, column: str | None) -> str | None:
        if table is None or column is None:
            return None
        try:
            ns, name = split_name(table)
            if catalog.find(ns, name) is None:
                raise UndefinedTable(f'relation "{table}" does not exist')
            col = column.strip('"') if column.startswith('"') else column.lower()
            if col not in catalog.get(ns, name).column_names:
                raise UndefinedColumn(f'column "{col}" of relation "{name}" does not exist')
        except EngineError as err:
            raise udf_error(err) from None
        d = sequences.for_column(ns, name, col)
        return None if d is None else f"{d.namespace}.{d.name}"

    con.create_function(_UDF, call, ["VARCHAR", "VARCHAR", "BIGINT", "BIGINT", "BOOLEAN"], "BIGINT",
                        side_effects=True, null_handling="special")
    con.create_function(_SERIAL_UDF, serial, ["VARCHAR", "VARCHAR"], "VARCHAR",
                        side_effects=True, null_handling="special")
    session = f"getvariable('{SESSION_VARIABLE}')"
    macros = {
        "nextval": f"(s) AS {_UDF}('nextval', s::VARCHAR, {session}, NULL, NULL)",
        "currval": f"(s) AS {_UDF}('currval', s::VARCHAR, {session}, NULL, NULL)",
        "setval": (f"(s, v) AS {_UDF}('setval', s::VARCHAR, {session}, v, NULL), "
                   f"(s, v, c) AS {_UDF}('setval', s::VARCHAR, {session}, v, c)"),
        "lastval": f"() AS {_UDF}('lastval', NULL, {session}, NULL, NULL)",
        "pg_get_serial_sequence": f"(t, c) AS {_SERIAL_UDF}(t::VARCHAR, c::VARCHAR)",
    }
    for cat in catalogs:
        for fn, body in macros.items():
            con.execute(f"CREATE OR REPLACE MACRO {cat}.main.{fn}{body}")


def set_session(cur: duckdb.DuckDBPyConnection, session: int) -> None:
    """Which session this cursor's sequence calls are for (currval, lastval)."""
    cur.execute(f"SET VARIABLE {SESSION_VARIABLE} = {int(session)}")
