"""The write path of a session: INSERT, UPDATE and DELETE become new row versions (or
tombstones) appended to the hot tier under the write lock.

DuckDB computes what a statement writes (its plan from engine/sql/dml.py: defaults, casts,
SET expressions, WHERE, RETURNING) unless a VALUES list can be typed in Python (the fast
path); the session decides the versions: `_seq` numbers, owners of USER-table rows, STREAM
write times, and the key checks of engine/session/keys.py.
"""
from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import datetime, timezone

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from engine.catalog import privileges
from engine.catalog.tables import OWNER, WRITTEN_AT, TableDef
from engine.core import NO_FAST_DEFAULT, NOW
from engine.errors import EngineError, NotNullViolation, UndefinedColumn, UndefinedParameter
from engine.tiers.hot import KeyState, Tombstone, key_list
from engine.tiers import views
from engine.results import StatementResult, with_sql_types
from engine.session.keys import first_per_key, live_keys, refuse_repeats, unique_violation
from engine.session.reads import check_select
from engine.session.state import SessionState
from engine.session.transactions import begin_write, end_implicit, own_writes_visible
from engine.sql import dml, param_casts, sandbox
from engine.sql.bytea import bytea_from_text
from engine.sql.parse import Write
from engine.sql.split import leading_words
from engine.sql.statements import unquote

_SIMPLE_TYPES = (pa.types.is_integer, pa.types.is_floating, pa.types.is_string, pa.types.is_large_string,
                 pa.types.is_boolean, pa.types.is_date32, pa.types.is_timestamp, pa.types.is_decimal)


def write(s: SessionState, stmt: Write, params: list) -> StatementResult:
    p, t = _plan(s, stmt.sql)
    if p.param_count > len(params):
        raise UndefinedParameter(f"there is no parameter ${len(params) + 1}")
    params = params[: p.param_count]
    s.check_user_scope()
    begin_write(s)
    with s.running:
        if isinstance(p, dml.InsertPlan):
            result = _insert(s, t, p, params)
        elif isinstance(p, dml.UpdatePlan):
            result = _update(s, t, p, params)
        else:
            result = _delete(s, t, p, params)
    end_implicit(s)
    return result


def _plan(s: SessionState, sql: str) -> tuple[dml.InsertPlan | dml.UpdatePlan | dml.DeletePlan, TableDef]:
    """The statement's plan and target, after the sandbox and privilege checks: INSERT/UPDATE/
    DELETE on the target, SELECT on it too when it reads the target's rows (a WHERE clause,
    RETURNING), and SELECT on every other table it reads (INSERT ... SELECT, FROM, USING)."""
    p = dml.plan(sql)
    sandbox.check_write(p)  # its source, FROM, WHERE and RETURNING run in DuckDB too
    t = s.resolve(p.target)
    needed = ["INSERT" if isinstance(p, dml.InsertPlan) else
              "UPDATE" if isinstance(p, dml.UpdatePlan) else "DELETE"]
    if p.returning is not None or (not isinstance(p, dml.InsertPlan) and re.search(r"\bWHERE\b", p.select_sql)):
        needed.append("SELECT")
    privileges.check_table(s.engine.roles, s.user, t, *needed)
    check_select(s, p.reads)
    return p, t


def batchable(sql: str) -> bool:
    """Whether `insert_batch` can append many parameter rows of `sql` at once: a one-row
    INSERT ... VALUES typed in Python, without ON CONFLICT, returning nothing or columns."""
    if (leading_words(sql, 1) or [""])[0] != "INSERT":
        return False
    try:
        p = dml.plan(sql)
    except EngineError:
        return False
    return (isinstance(p, dml.InsertPlan) and not p.on_conflict_nothing
            and (p.returning is None or _plain_names(p.target.alias, p.returning) is not None)
            and p.fast_values is not None and len(p.fast_values) == 1)


def insert_batch(s: SessionState, sql: str, param_rows: list[list]) -> list[StatementResult] | None:
    """The rows of a `batchable` INSERT as one multi-row VALUES typed in Python and one
    append; None, before any write, when a row needs the one-by-one path."""
    sandbox.check_command(sql)
    p, t = _plan(s, sql)
    k = p.param_count
    if any(len(params) < k for params in param_rows):
        return None
    row = p.fast_values[0]
    values = tuple(tuple(("p", j * k + v) if kind == "p" else ("pc", (j * k + v[0], v[1])) if kind == "pc"
                         else (kind, v) for kind, v in row)
                   for j in range(len(param_rows)))
    flat = [v for params in param_rows for v in params[:k]]
    try:
        rows = fast_rows(s, t, dataclasses.replace(p, fast_values=values), flat)
    except NotNullViolation:
        return None
    if rows is None:
        return None
    returned = None
    if p.returning is not None:
        returned = _plain_returning(t, p.target.alias, p.returning, rows.select(t.column_names))
        if returned is None:
            return None
    rows = owned(s, t, rows)   # as _insert_rows: a USER table's rows get their owner
    keys = key_list(t, rows)
    if len(set(keys)) != len(keys):
        return None
    s.check_user_scope()
    begin_write(s)
    with s.running:
        if live_keys(s, t, keys):
            return None
        append(s, t, rows, deleted=False, keys=keys)
    end_implicit(s)
    if returned is None:
        return [StatementResult("INSERT 0 1") for _ in param_rows]
    return [StatementResult("INSERT 0 1", returned.slice(i, 1)) for i in range(len(param_rows))]


# ---------------------------------------------------------------------- INSERT
def _insert(s: SessionState, t: TableDef, p: dml.InsertPlan, params: list) -> StatementResult:
    rows = fast_rows(s, t, p, params) if p.fast_values is not None else None
    if rows is None:
        rows = _slow_rows(s, t, p, params)
    rows = owned(s, t, rows)
    keys = key_list(t, rows)
    if p.on_conflict_nothing and len(set(keys)) != len(keys):  # the first of each key wins
        rows, keys = first_per_key(rows, keys)
    refuse_repeats(t, keys)
    live = live_keys(s, t, keys)
    if live:
        if not p.on_conflict_nothing:
            raise unique_violation(t, next(k for k in keys if k in live))
        rows = rows.filter(pa.array([k not in live for k in keys], pa.bool_()))
    append(s, t, rows, deleted=False)
    ret = _returning(s, p.target.alias, p.returning, rows.select(t.column_names), params, t)
    return StatementResult(f"INSERT 0 {rows.num_rows}", ret)


def to_arrow(values: list, typ: pa.DataType) -> pa.Array | None:
    """Python values as an Arrow array of `typ`, or None if that needs DuckDB's casts."""
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        # Postgres reads a string as bytea text (hex or escape format), DuckDB as escapes
        values = [bytea_from_text(v) if isinstance(v, str) else v for v in values]
    elif not any(check(typ) for check in _SIMPLE_TYPES):
        return None
    try:
        return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        return None


_UUID_TEXT = re.compile(r"^\{?(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                        r"|[0-9a-fA-F]{32})\}?$")


def canonical_uuids(values: list) -> list | None:
    """uuid values as DuckDB's cast prints them (lower-case, hyphenated), for the forms
    Postgres and DuckDB both read; None when one needs DuckDB's cast (or its error)."""
    out = []
    for v in values:
        if isinstance(v, uuid.UUID):
            out.append(str(v))
        elif isinstance(v, str) and _UUID_TEXT.match(v) and (v[0] == "{") == (v[-1] == "}"):
            out.append(str(uuid.UUID(v)))
        elif v is None:
            out.append(None)
        else:
            return None
    return out


def fast_rows(s: SessionState, t: TableDef, p: dml.InsertPlan, params: list) -> pa.Table | None:
    """Type a VALUES list in Python, without DuckDB; None when only DuckDB can (or must
    produce the error)."""
    eng = s.engine
    width = len(p.fast_values[0])
    names = list(p.columns) if p.columns is not None else t.column_names[:width]
    if len(names) != width or len(set(names)) != width or not set(names) <= set(t.column_names):
        return None
    position = {n: i for i, n in enumerate(names)}
    schema = eng.visible_schema(t)
    arrays = []
    n = len(p.fast_values)
    for c, f in zip(t.columns, schema):
        i = position.get(c.name)
        if i is not None:
            values = [params[v] if kind == "p" else params[v[0]] if kind == "pc" else v
                      for kind, v in (row[i] for row in p.fast_values)]
            casts = {v[1] for kind, v in (row[i] for row in p.fast_values) if kind == "pc"}
            if casts and not all(param_casts.value_fits(x, cast, f.type, c.type) for cast in casts for x in values):
                return None  # a conversion (or its error) only DuckDB's cast gives
        elif c.default is None:
            values = [None] * n
        else:
            d = eng.default_value(t, c)
            if d is NO_FAST_DEFAULT:
                return None
            values = [datetime.now(timezone.utc) if d is NOW else d] * n
        if pa.types.is_string(f.type) and c.type.upper() != "VARCHAR":
            if c.type.upper() != "UUID":
                return None  # JSON, ENUM...: DuckDB's cast canonicalises the text
            values = canonical_uuids(values)
            if values is None:
                return None
        arr = to_arrow(values, f.type)
        if arr is None:
            return None
        if not c.nullable and arr.null_count:
            raise NotNullViolation(
                f'null value in column "{c.name}" of relation "{t.name}" violates not-null constraint')
        arrays.append(arr)
    return pa.table(arrays, schema=schema)


def _slow_rows(s: SessionState, t: TableDef, p: dml.InsertPlan, params: list) -> pa.Table:
    own_writes_visible(s)
    s.engine.hot.settle()  # INSERT ... SELECT may read any table
    sql = p.stage_sql
    if dml.COLUMNS_PREFIX in sql:
        sql = re.sub(re.escape(dml.COLUMNS_PREFIX) + r"(\d+)",
                     lambda m: "(" + ", ".join(views.q(c) for c in t.column_names[: int(m.group(1))]) + ")",
                     sql, count=1)
    return _typed(s, t, sql, params)


# ---------------------------------------------------------------------- UPDATE, DELETE
def _affected(s: SessionState, t: TableDef, select_sql: str, params: list) -> tuple[pa.Table, list]:
    """The rows an UPDATE/DELETE touches, once per key (a join may match a row twice:
    the first match wins), and their keys."""
    own_writes_visible(s)
    shadow_cold(s, t)
    s.engine.hot.settle()
    with s.system_columns(t.is_user):  # the owner of each row comes along: the full view has it
        sel = s.cur.execute(select_sql, params).to_arrow_table()
    keys = key_list(t, sel)
    if len(set(keys)) != len(keys):
        sel, keys = first_per_key(sel, keys)
    return sel, keys


def _update(s: SessionState, t: TableDef, p: dml.UpdatePlan, params: list) -> StatementResult:
    sel, old_keys = _affected(s, t, p.select_sql, params)
    unknown = [c for c in p.set_columns if c not in t.column_names]
    if unknown:
        raise UndefinedColumn(f'column "{unknown[0]}" of relation "{t.name}" does not exist')
    cols = []
    for c in t.column_names:
        if c in p.set_columns:
            idx = len(p.set_columns) - 1 - list(reversed(p.set_columns)).index(c)
            cols.append(sel.column(f"__new_{idx}"))
        else:
            cols.append(sel.column(c))
    new = pa.table(cols, names=t.column_names)
    typed = _typed(s, t, f"INSERT INTO {dml.STAGE} SELECT * FROM __source RETURNING *", [], new)
    typed = owned(s, t, typed, sel.column(OWNER) if t.is_user else None)
    new_keys = key_list(t, typed)
    if new_keys != old_keys:
        refuse_repeats(t, new_keys)
        old_set = set(old_keys)
        live = live_keys(s, t, [k for k in new_keys if k not in old_set])
        if live:
            raise unique_violation(t, next(iter(live)))
        new_set = set(new_keys)
        gone = sel.filter(pa.array([k not in new_set for k in old_keys], pa.bool_()))
        append(s, t, tombstones(s, t, gone), deleted=True)
    append(s, t, typed, deleted=False)
    ret = _returning(s, p.target.alias, p.returning, typed.select(t.column_names), params, t)
    return StatementResult(f"UPDATE {typed.num_rows}", ret)


def _delete(s: SessionState, t: TableDef, p: dml.DeletePlan, params: list) -> StatementResult:
    sel, _ = _affected(s, t, p.select_sql, params)
    append(s, t, tombstones(s, t, sel), deleted=True)
    ret = _returning(s, p.target.alias, p.returning, sel.select(t.column_names), params, t)
    return StatementResult(f"DELETE {sel.num_rows}", ret)


def shadow_cold(s: SessionState, t: TableDef) -> None:
    """UPDATE/DELETE may supersede cold rows: switch the view before writing."""
    cold = s.engine.cold
    if not s.tx.in_duck_txn:
        cold.ensure_shadowing(t)
    elif t.tid not in cold.shadowing and t.tid not in s.tx.pending_shadow and cold.has_cold(t):
        # Inside this transaction's snapshot; takes effect for others at COMMIT.
        s.cur.execute(views.full_view_sql(t, shadowing=True))
        s.tx.pending_shadow.add(t.tid)


def tombstones(s: SessionState, t: TableDef, rows: pa.Table) -> pa.Table:
    schema = s.engine.visible_schema(t)
    cols = [rows.column(f.name) if f.name in t.primary_key else pa.nulls(rows.num_rows, f.type)
            for f in schema]
    return owned(s, t, pa.table(cols, schema=schema), rows.column(OWNER) if t.is_user else None)


def _returning(s: SessionState, alias: str, expr: str | None, rows: pa.Table, params: list,
               t: TableDef) -> pa.Table | None:
    if expr is None:
        return None
    plain = _plain_returning(t, alias, expr, rows)
    if plain is not None:
        return plain
    used = max((int(n) for n in re.findall(r"\$(\d+)", expr)), default=0)
    s.cur.register("__ret", rows)
    try:
        s.cur.execute(f"SELECT {expr} FROM __ret AS {views.q(alias)}", params[:used])
        return with_sql_types(s.cur.to_arrow_table(), [d[1] for d in s.cur.description])
    finally:
        s.cur.unregister("__ret")


_RETURNED_COLUMN = re.compile(r'^\s*(?:("[^"]+"|[A-Za-z_]\w*)\s*\.\s*)?("[^"]+"|[A-Za-z_]\w*|\*)\s*$')


def _plain_names(alias: str, expr: str) -> list[str] | None:
    """The column names of a RETURNING list of plain columns (`*` as "*"), or None."""
    if '"' in expr and "," in expr:
        return None  # a quoted name may hold a comma: leave the splitting to DuckDB
    names = []
    for item in expr.split(","):
        m = _RETURNED_COLUMN.match(item)
        if m is None:
            return None
        qualifier, name = (unquote(g) if g and g != "*" else g for g in m.groups())
        if qualifier is not None and qualifier != alias:
            return None
        names.append(name)
    return names


def _plain_returning(t: TableDef, alias: str, expr: str, rows: pa.Table) -> pa.Table | None:
    """`RETURNING id`, `RETURNING *`, `RETURNING t.a, b`: the written rows' columns, without a
    DuckDB query (what ORMs send to learn ids). None: the expression needs DuckDB."""
    plain = _plain_names(alias, expr)
    if plain is None:
        return None
    names: list[str] = []
    for name in plain:
        if name == "*":
            names += rows.column_names
        elif name in rows.column_names:
            names.append(name)
        else:
            return None  # 42703 and its wording come from DuckDB
    types = {c.name: c.type.upper() for c in t.columns}
    out = rows.select(names)
    if any(pa.types.is_string(f.type) and types[f.name] not in ("VARCHAR", "UUID", "JSON") for f in out.schema):
        return None  # jsonb, enums ...: the type DuckDB reports decides the wire type
    return with_sql_types(out, [types[n] for n in names])


# ---------------------------------------------------------------------- row versions
def _stage(s: SessionState, t: TableDef) -> str:
    """A per-session temp table with the table's defaults and NOT NULLs, to type rows."""
    name = f"temp.main.__stage_{t.tid}"
    if t.tid not in s.stages:
        cols = []
        for c in t.columns:
            spec = f"{views.q(c.name)} {c.type}"
            if c.default is not None:
                spec += f" DEFAULT {c.default}"
            if not c.nullable:
                spec += " NOT NULL"
            cols.append(spec)
        s.cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS __stage_{t.tid} ({', '.join(cols)})")
        s.stages.add(t.tid)
    return name


def _typed(s: SessionState, t: TableDef, sql: str, params: list, source: pa.Table | None = None) -> pa.Table:
    stage = _stage(s, t)
    if source is not None:
        s.cur.register("__source", source)
    try:
        return s.cur.execute(sql.replace(dml.STAGE, stage), params).to_arrow_table()
    finally:
        if source is not None:
            s.cur.unregister("__source")
        try:
            s.cur.execute(f"DELETE FROM {stage}")
        except duckdb.Error:
            pass  # an aborted transaction: its rollback empties the stage


def owned(s: SessionState, t: TableDef, rows: pa.Table, owners: pa.ChunkedArray | None = None) -> pa.Table:
    """A USER table's rows with their owner: given (an UPDATE keeps each row's), else the
    writer. A superuser's INSERT goes to the superuser's own scope, as in Postgres RLS."""
    if not t.is_user:
        return rows
    if owners is None:
        owners = pa.array([s.user] * rows.num_rows, pa.string())
    return rows.append_column(OWNER, owners)


def append(s: SessionState, t: TableDef, rows: pa.Table, deleted: bool, keys: list | None = None) -> None:
    """Write new versions of `rows` (visible columns plus a USER table's owner, table
    types) into the hot tier; `keys`: their key_list, if the caller has it."""
    n = rows.num_rows
    if n == 0:
        return
    hot, tx = s.engine.hot, s.tx
    first = hot.allocate(n)
    seqs = pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), n), start=first - 1)
    batch = rows.append_column("_seq", seqs)
    batch = batch.append_column("_deleted", pa.repeat(pa.scalar(deleted, pa.bool_()), n))
    if t.is_stream:  # never behind an earlier write: versions expire in _seq order
        written = hot.stream_write_time()
        stamp = pa.scalar(datetime.fromtimestamp(written, timezone.utc), pa.timestamp("us", tz="UTC"))
        batch = batch.append_column(WRITTEN_AT, pa.repeat(stamp, n))
        hot.note_stream_write(t, written, first + n - 1)
    if tx.in_duck_txn:  # visible to this transaction at once, to others at COMMIT
        s.cur.register("__batch", batch)
        try:
            s.cur.execute(f"INSERT INTO {views.hot_table(t)} SELECT * FROM __batch")
        finally:
            s.cur.unregister("__batch")
    tx.pending.append((t.tid, first, batch))
    index = tx.pending_index.setdefault(t.tid, {})
    index.update(zip(keys if keys is not None else key_list(t, rows),
                     map(Tombstone if deleted else KeyState, range(first, first + n))))
