"""UPDATE and DELETE whose WHERE pins the primary key (engine/sql/keyed.py), written without a
DuckDB query: the current version of the key comes from this transaction's own writes, the hot
key index plus its LevelDB batch, or the cold tier's point read (engine/tiers/point_lookup.py);
the new version is computed in Python and appended like any other write.

The general path (engine/session/writes.py) scans the hot ∪ cold view in DuckDB and types the
new row in a staging table: about 10 ms a statement, where this path takes a fraction of one.
Whatever this path cannot do exactly as the general path would — a USER or STREAM table, a
composite or non-integer cold key, a non-filesystem storage, a value only DuckDB's casts can
type, a NOT NULL violation that needs Postgres's message, rows older than the transaction's
own ALTER TABLE — it hands over before writing anything, and the general path answers (metric `tierd_fast_path_total{path=…, outcome="fallback"}`).

A text without parameters (the simple protocol) has its literals lifted out (engine/sql/keyed.py
`analysed`), so pgbench -M simple's ever-new texts share one shape; the table, schema, key
operand and privilege verdict of a shape are kept per session until the catalog or the roles
change (engine/session/analyses.py).
"""
from __future__ import annotations

import pyarrow as pa

from engine import metrics
from engine.catalog import privileges
from engine.catalog.tables import TableDef
from engine.results import StatementResult
from engine.session import writes
from engine.session.analyses import analysis
from engine.session.keys import current_version
from engine.session.state import SessionState
from engine.session.transactions import begin_keyed, end_implicit
from engine.sql import keyed
from engine.sql.parse import Write


def write(s: SessionState, stmt: Write, params: list) -> StatementResult:
    """A write statement: key-addressed if it can be, else the general path."""
    shape, literals = keyed.analysed(stmt.sql)
    if shape is not None:
        result = _keyed(s, shape, list(literals) if literals else params)
        path = f"keyed_{shape.kind.lower()}"
        metrics.inc("tierd_fast_path_total", path=path, outcome="fallback" if result is None else "used")
        if result is not None:
            return result
    return writes.write(s, stmt, params)


def _keyed(s: SessionState, shape: keyed.KeyedShape, params: list) -> StatementResult | None:
    target = analysis(s, ("keyed", shape), lambda: _target(s, shape))
    if target is None or target[0].tid in s.tx.ddl_before:  # its own rows may predate the transaction's ALTER TABLE
        return None
    t, schema, operand = target
    try:
        key = _typed(keyed.evaluate(operand, params), schema.field(t.primary_key[0]).type)
    except keyed.NotKeyed:
        return None
    begin_keyed(s, t.tid, [key])  # waits for a transaction writing this key, then reads what it committed
    mark = len(s.tx.pending)
    with s.running:
        found, row = current_version(s, t, key)
        if not found:
            return None
        if row is None:
            returned = _returned(t, shape, schema, schema.empty_table())
            if returned is False:
                return None
            result = StatementResult(f"{shape.kind} 0", returned)
        else:
            new = writes.tombstones(s, t, row) if shape.kind == "DELETE" else \
                writes.new_version(t, schema, shape.sets, row, params)
            if new is None:
                return None
            returned = _returned(t, shape, schema, row if shape.kind == "DELETE" else new)
            if returned is False:
                return None
            writes.shadow_cold(s, t)
            writes.append(s, t, new, deleted=shape.kind == "DELETE", keys=[key])
            writes.check_foreign_keys(s, t, mark)
            result = StatementResult(f"{shape.kind} 1", returned)
    end_implicit(s)
    return result


def _returned(t: TableDef, shape: keyed.KeyedShape, schema: pa.Schema, rows: pa.Table):
    """RETURNING of plain columns over the deleted or new version, None without RETURNING,
    False when its expressions need DuckDB (the general path then runs the statement)."""
    if shape.returning is None:
        return None
    rows = rows.select(t.column_names)
    try:
        rows = rows if rows.schema.equals(schema) else rows.cast(schema)  # a cold version's types
    except (pa.ArrowException, ValueError):
        return False
    out = writes.plain_returning(t, shape.alias, shape.returning, rows)
    return False if out is None else out


def _target(s: SessionState, shape: keyed.KeyedShape) -> tuple[TableDef, pa.Schema, keyed.Expr] | None:
    """The shape's table, its schema and the operand pinning its key, once the role's
    privileges are checked; None when the general path must answer."""
    eng = s.engine
    t = eng.catalog.find(shape.namespace, shape.table) if shape.namespace else s.find_table(shape.table)
    if t is None or not writes.keyed_table(t):
        return None  # an unknown table's error, and these tables' rules, are the general path's
    schema = eng.visible_schema(t)
    try:
        (operand,) = shape.key_of(t.primary_key)
    except keyed.NotKeyed:
        return None
    names = set(schema.names)
    if any(c not in names or c == t.primary_key[0] for c, _ in shape.sets):
        return None  # 42703, or a key change (uniqueness of the new key): the general path
    privileges.check_table(eng.roles, s.user, t, shape.kind, "SELECT")
    return t, schema, operand


_INT_RANGE = {8: 1 << 7, 16: 1 << 15, 32: 1 << 31, 64: 1 << 63}


def _typed(value, typ: pa.DataType):
    """`value` as the key column holds it (the key index's Python value), or NotKeyed."""
    if value is None:
        raise keyed.NotKeyed
    if type(value) is int and pa.types.is_signed_integer(typ):  # the common case, without Arrow
        if -_INT_RANGE[typ.bit_width] <= value < _INT_RANGE[typ.bit_width]:
            return value
        raise keyed.NotKeyed
    arr = writes.to_arrow([value], typ)
    if arr is None:
        raise keyed.NotKeyed
    return arr[0].as_py()
