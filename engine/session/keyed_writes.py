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
"""
from __future__ import annotations

import pyarrow as pa

from engine import metrics
from engine.catalog import privileges
from engine.catalog.tables import ROWID, TableDef
from engine.results import StatementResult
from engine.session import writes
from engine.session.keys import own_version
from engine.session.state import SessionState
from engine.session.transactions import begin_write, end_implicit
from engine.sql import keyed
from engine.sql.parse import Write


def write(s: SessionState, stmt: Write, params: list) -> StatementResult:
    """A write statement: key-addressed if it can be, else the general path."""
    shape = keyed.shape(stmt.sql)
    if shape is not None:
        result = _keyed(s, shape, params)
        path = f"keyed_{shape.kind.lower()}"
        metrics.inc("tierd_fast_path_total", path=path, outcome="fallback" if result is None else "used")
        if result is not None:
            return result
    return writes.write(s, stmt, params)


def _keyed(s: SessionState, shape: keyed.KeyedShape, params: list) -> StatementResult | None:
    eng = s.engine
    t = eng.catalog.find(shape.namespace, shape.table) if shape.namespace else s.find_table(shape.table)
    if t is None or t.is_user or t.is_stream or t.ttl_seconds or len(t.primary_key) != 1 \
            or t.tid in s.tx.ddl_before:  # its own rows may predate the transaction's ALTER TABLE
        return None  # an unknown table's error, and these tables' rules, are the general path's
    schema = eng.visible_schema(t)
    pk = t.primary_key[0]
    try:
        (operand,) = shape.key_of(t.primary_key)
        key = _typed(keyed.evaluate(operand, params), schema.field(pk).type)
    except keyed.NotKeyed:
        return None
    names = set(schema.names)
    if any(c not in names or c == pk for c, _ in shape.sets):
        return None  # 42703, or a key change (uniqueness of the new key): the general path
    privileges.check_table(eng.roles, s.user, t, shape.kind, "SELECT")
    begin_write(s)
    with s.running:
        found, row = _current(s, t, key)
        if not found:
            return None
        if row is None:
            result = StatementResult(f"{shape.kind} 0")
        else:
            new = writes.tombstones(s, t, row) if shape.kind == "DELETE" else \
                _updated(t, schema, shape, row, params)
            if new is None:
                return None
            writes.shadow_cold(s, t)
            writes.append(s, t, new, deleted=shape.kind == "DELETE", keys=[key])
            result = StatementResult(f"{shape.kind} 1")
    end_implicit(s)
    return result


def _typed(value, typ: pa.DataType):
    """`value` as the key column holds it (the key index's Python value), or NotKeyed."""
    if value is None:
        raise keyed.NotKeyed
    arr = writes.to_arrow([value], typ)
    if arr is None:
        raise keyed.NotKeyed
    return arr[0].as_py()


def _current(s: SessionState, t: TableDef, key) -> tuple[bool, pa.Table | None]:
    """(found out, the key's newest version this session sees, or None if it has none). Not
    found out: the general path must look."""
    mine, row = own_version(s, t, key)
    if mine:
        return True, row
    hot = s.engine.hot
    st = hot.index[t.tid].get(key)
    if st is not None and st.seq > hot.visible_seq:
        # queued by the previous writer and not durable yet (its fsync may still fail): this
        # write must not build on it before it is, as a row lock in Postgres waits for COMMIT
        hot.commits.drain()
        st = hot.index[t.tid].get(key)
    if st is not None:
        if st.deleted:
            return True, None
        row = s.engine.point_lookups.hot_row(t, key, st.seq)
        return row is not None, row
    return s.engine.point_lookups.cold_row(t, key)


def _updated(t: TableDef, schema: pa.Schema, shape: keyed.KeyedShape, row: pa.Table,
             params: list) -> pa.Table | None:
    """The new version: SET columns computed in Python and typed like a fast INSERT's values,
    the others copied from the current version. None: only the general path can."""
    used = {node[1] for _, expr in shape.sets for node in _columns(expr)}
    values = {c: row.column(c)[0].as_py() for c in used}
    sets = dict(shape.sets)
    by_name = {c.name: c for c in t.columns}
    bits = {f.name: f.type.bit_width for f in schema if pa.types.is_integer(f.type)}
    arrays = []
    try:
        for f in schema:
            expr = sets.get(f.name)
            if expr is None:
                arrays.append(row.column(f.name).cast(f.type))
                continue
            value = keyed.evaluate(expr, params, values, bits)
            col = by_name[f.name]
            if value is None and not col.nullable:
                return None  # the general path words the 23502
            if pa.types.is_string(f.type) and col.type.upper() != "VARCHAR":
                return None  # uuid, json, enum: DuckDB's cast canonicalises the text
            arr = writes.to_arrow([value], f.type)
            if arr is None:
                return None
            arrays.append(arr)
    except (keyed.NotKeyed, pa.ArrowException):
        return None
    new = pa.table(arrays, schema=schema)
    if t.rowid:  # a table keyed after it was created: each row keeps its row id
        new = new.append_column(ROWID, row.column(ROWID).cast(pa.int64()))
    return new


def _columns(e: tuple):
    """Every ("col", name) node of a shape expression."""
    if e[0] == "col":
        yield e
    elif e[0] in ("+", "-", "*"):
        yield from _columns(e[1])
        yield from _columns(e[2])
    elif e[0] in ("neg", "cast"):
        yield from _columns(e[1])

