"""The write path of a session: INSERT, UPDATE and DELETE become new row versions (or
tombstones) appended to the hot tier under the write lock.

DuckDB computes what a statement writes (its plan from engine/sql/dml.py: defaults, casts,
SET expressions, WHERE, RETURNING) unless a VALUES list can be typed in Python (the fast
path); the session decides the versions: `_seq` numbers, owners of USER-table rows, STREAM
write times, and the key checks of engine/session/keys.py.
"""
from __future__ import annotations

import re
import time
import uuid
import zoneinfo
from datetime import datetime, timezone
from decimal import Decimal
from typing import NamedTuple

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine import metrics

from engine.catalog import privileges
from engine.catalog import sequence_functions
from engine.catalog.tables import OWNER, ROWID, WRITTEN_AT, Column, TableDef
from engine.core import NO_FAST_DEFAULT, NOW, SequenceDefault
from engine.errors import (CardinalityViolation, EngineError, FeatureNotSupported, GeneratedAlways,
                           InvalidColumnReference, NotNullViolation, SyntaxError_, UndefinedColumn, UndefinedObject,
                           UndefinedParameter)
from engine.tiers.hot import KeyState, Tombstone, key_list
from engine.tiers import views
from engine.results import StatementResult, with_sql_types
from engine.schema_memo import SchemaMemo
from engine.small_arrays import MAX_VALUES, small_array
from engine.session.analyses import analysis
from engine.session.keys import (current_version, first_per_key, live_keys, live_rows, refuse_repeats,
                                 refuse_second_touch, unique_violation)
from engine.session import foreign_keys, reads
from engine.session.reads import check_select
from engine.session.state import SessionState
from engine.session.transactions import allocate, begin_keyed, begin_write, end_implicit, own_writes_visible
from engine.sql import arrays, dml, keyed, param_casts, sandbox
from engine.sql.bytea import bytea_from_text
from engine.sql.param_types import integer_text
from engine.sql.parse import Write
from engine.sql.sequence_ddl import without_regclass_casts
from engine.sql.split import leading_words
from engine.sql.statements import unquote

_SIMPLE_TYPES = (pa.types.is_integer, pa.types.is_floating, pa.types.is_string, pa.types.is_large_string,
                 pa.types.is_boolean, pa.types.is_date32, pa.types.is_timestamp, pa.types.is_decimal)


_OVERRIDING = re.compile(r"\)\s*OVERRIDING\s+(SYSTEM|USER)\s+VALUE\b", re.I)




def _analyse(s: SessionState, text: str) -> tuple[str, dml.InsertPlan | dml.UpdatePlan | dml.DeletePlan
                                                    | dml.MergePlan, TableDef]:
    """(the SQL DuckDB runs, the plan, its target) of a write statement, checked."""
    sql, overriding = without_regclass_casts(text), None
    m = _OVERRIDING.search(sql) if "OVERRIDING" in sql.upper() else None
    if m:  # INSERT INTO t (cols) OVERRIDING SYSTEM VALUE ...: the clause is tierd's, not DuckDB's
        sql, overriding = sql[:m.start() + 1] + sql[m.end():], m.group(1).upper()
    p, t = _plan(s, sql)
    if isinstance(p, dml.InsertPlan) and p.columns is not None:
        _table_columns(t, p.columns)  # 42703 in Postgres's words, before DuckDB's staging table words it
    if isinstance(p, dml.InsertPlan) and overriding != "SYSTEM":
        _refuse_generated_always(t, p)
    return sql, p, t


def write(s: SessionState, stmt: Write, params: list) -> StatementResult:
    _, p, t = analysis(s, ("write", stmt.sql), lambda: _analyse(s, stmt.sql))
    if p.param_count > len(params):
        raise UndefinedParameter(f"there is no parameter ${len(params) + 1}")
    params = reads.array_params(s, stmt.sql, params[: p.param_count])
    s.check_user_scope()
    rows = None
    if isinstance(p, dml.InsertPlan) and p.fast_values is not None:
        rows = fast_rows(s, t, p, params)  # typed in Python, before any lock
        metrics.inc("tierd_fast_path_total", path="insert_values", outcome="fallback" if rows is None else "used")
        if rows is not None and _row_locking(t, p):
            return _insert_keyed(s, t, p, rows, params)
    begin_write(s)
    mark = len(s.tx.pending)
    with s.running:
        if isinstance(p, dml.InsertPlan):
            result = _insert(s, t, p, params, rows)
        elif isinstance(p, dml.UpdatePlan):
            result = _update(s, t, p, params)
        elif isinstance(p, dml.MergePlan):
            result = _merge(s, t, p, params)
        else:
            result = _delete(s, t, p, params)
        check_foreign_keys(s, t, mark)
    end_implicit(s)
    return result


def _plan(s: SessionState, sql: str) -> tuple[dml.InsertPlan | dml.UpdatePlan | dml.DeletePlan | dml.MergePlan,
                                              TableDef]:
    """The statement's plan and target, after the sandbox and privilege checks: INSERT/UPDATE/
    DELETE on the target, SELECT on it too when it reads the target's rows (a WHERE clause,
    RETURNING), and SELECT on every other table it reads (INSERT ... SELECT, FROM, USING)."""
    p = dml.plan(sql)
    sandbox.check_write(p)  # its source, FROM, WHERE and RETURNING run in DuckDB too
    t = s.resolve(p.target)
    if isinstance(p, dml.MergePlan):  # SELECT: ON reads the target; each action its privilege
        needed = ["SELECT"] + sorted({w.action for w in p.whens if w.action != "NOTHING"})
    else:
        needed = ["INSERT" if isinstance(p, dml.InsertPlan) else
                  "UPDATE" if isinstance(p, dml.UpdatePlan) else "DELETE"]
    reads_target = isinstance(p, (dml.UpdatePlan, dml.DeletePlan)) and re.search(r"\bWHERE\b", p.select_sql)
    if p.returning is not None or reads_target:
        needed.append("SELECT")
    if isinstance(p, dml.InsertPlan) and p.conflict is not None:
        _check_arbiter(t, p.conflict)
        # PostgreSQL: DO UPDATE needs UPDATE, and every ON CONFLICT SELECT on the columns it
        # reads (the arbiter's key, DO UPDATE's expressions)
        needed += ["UPDATE", "SELECT"] if p.conflict.update else \
            ["SELECT"] if p.conflict.columns or p.conflict.constraint else []
    privileges.check_table(s.engine.roles, s.user, t, *needed)
    check_select(s, p.reads)
    return p, t


def batchable(sql: str) -> bool:
    """Whether `insert_batch` can append many parameter rows of `sql` at once: a one-row
    INSERT ... VALUES typed in Python, returning nothing or columns, whose ON CONFLICT (if
    any, then without RETURNING) treats each row on its own."""
    if (leading_words(sql, 1) or [""])[0] != "INSERT":
        return False
    try:
        p = dml.plan(sql)
    except EngineError:
        return False
    return (isinstance(p, dml.InsertPlan) and _row_independent(p.conflict)
            and (p.returning is None or (p.conflict is None and _plain_names(p.target.alias, p.returning) is not None))
            and p.fast_values is not None and len(p.fast_values) == 1)


def _row_independent(c: dml.OnConflict | None) -> bool:
    """Whether ON CONFLICT gives each row of an executemany the outcome of its own statement
    when all run as one (given distinct keys): DO UPDATE without parameters or subqueries."""
    return c is None or not c.update or not re.search(r"\$\d|\bSELECT\b", c.set_exprs or "", re.I)


def insert_batch(s: SessionState, sql: str, param_rows: list[list]) -> list[StatementResult] | None:
    """The rows of a `batchable` INSERT as one multi-row VALUES typed in Python and one
    append; None, before any write, when a row needs the one-by-one path."""
    sandbox.check_command(sql)
    _, p, t = analysis(s, ("write", sql), lambda: _analyse(s, sql))
    k = p.param_count
    if any(len(params) < k for params in param_rows):
        return None
    try:
        rows = fast_rows(s, t, p, [], param_rows)
    except NotNullViolation:
        return None
    if rows is None:
        return None
    returned = None
    if p.returning is not None:
        returned = plain_returning(t, p.target.alias, p.returning, rows.select(t.column_names))
        if returned is None:
            return None
    rows = owned(s, t, rows)   # as _insert_rows: a USER table's rows get their owner
    keys = key_list(t, rows) if t.primary_key else None
    if keys is not None and len(set(keys)) != len(keys):
        return None
    s.check_user_scope()
    begin_write(s)
    mark = len(s.tx.pending)
    with s.running:
        if p.conflict is None or keys is None:
            if keys is not None and live_keys(s, t, keys):
                return None
            rows = with_rowids(s, t, rows)
            append(s, t, rows, deleted=False, keys=keys)
            written = set(range(len(param_rows)))
        else:  # each row's own outcome: inserted, updated or skipped
            written = set(_insert_rows(s, t, p, rows, keys, [])[1])
        check_foreign_keys(s, t, mark)
    end_implicit(s)
    if returned is None:
        return [StatementResult(f"INSERT 0 {int(i in written)}") for i in range(len(param_rows))]
    return [StatementResult("INSERT 0 1", returned.slice(i, 1)) for i in range(len(param_rows))]


# ---------------------------------------------------------------------- INSERT
def _refuse_generated_always(t: TableDef, p: dml.InsertPlan) -> None:
    """Postgres's 428C9: an INSERT naming a GENERATED ALWAYS identity column."""
    names = p.columns if p.columns is not None else None
    for c in t.columns:
        if c.identity != "ALWAYS":
            continue
        if names is None:
            width = len(p.fast_values[0]) if p.fast_values else None
            named = width is not None and c.name in t.column_names[:width]
        else:
            named = c.name in names
        if named:
            raise GeneratedAlways(f'cannot insert a non-DEFAULT value into column "{c.name}"',
                                  detail=f'Column "{c.name}" is an identity column defined as GENERATED ALWAYS.',
                                  hint="Use OVERRIDING SYSTEM VALUE to override.")


def _row_locking(t: TableDef, p: dml.InsertPlan) -> bool:
    """Whether an INSERT whose rows typed in Python can run under row locks: its only reads
    are the key checks of its own keys (no DO UPDATE reading rows), on a table without
    USER scopes, STREAM write times or TTL."""
    return not (t.is_user or t.is_stream or t.ttl_seconds) and (p.conflict is None or not p.conflict.update)


def _insert_keyed(s: SessionState, t: TableDef, p: dml.InsertPlan, rows: pa.Table, params: list) -> StatementResult:
    """INSERT of Python-typed rows under row locks on their keys (the write lock shared,
    engine/session/transactions.py `begin_keyed`): a concurrent insert of the same key waits
    for this transaction's end, then finds the key taken (23505) or free."""
    keys = key_list(t, rows) if t.primary_key else None
    begin_keyed(s, t.tid, keys or [])
    mark = len(s.tx.pending)
    with s.running:
        rows = with_rowids(s, t, rows)
        written, _ = _insert_rows(s, t, p, rows, keys, params)
        ret = _returning(s, p.target.alias, p.returning, written, params, t)
        check_foreign_keys(s, t, mark)
    end_implicit(s)
    return StatementResult(f"INSERT 0 {written.num_rows}", ret)


def _insert(s: SessionState, t: TableDef, p: dml.InsertPlan, params: list,
            rows: pa.Table | None = None) -> StatementResult:
    """`rows`: the VALUES already typed in Python, if they could be."""
    if rows is None:
        rows = _slow_rows(s, t, p, params)
    rows = with_rowids(s, t, owned(s, t, rows))
    written, _ = _insert_rows(s, t, p, rows, key_list(t, rows) if t.primary_key else None, params)
    ret = _returning(s, p.target.alias, p.returning, written, params, t)
    return StatementResult(f"INSERT 0 {written.num_rows}", ret)


def _insert_rows(s: SessionState, t: TableDef, p: dml.InsertPlan, rows: pa.Table, keys: list | None,
                 params: list) -> tuple[pa.Table, list[int]]:
    """Write the proposed `rows` (typed, owned; `keys` theirs, None for a table without a
    primary key: every row is new) as INSERT and its ON CONFLICT say; returns the rows written
    (the table's columns, in the order proposed) and their positions among those proposed."""
    if keys is None:
        append(s, t, rows, deleted=False)
        return rows.select(t.column_names), list(range(rows.num_rows))
    if p.conflict is not None and p.conflict.update:
        return _upsert(s, t, p, rows, keys, params)
    positions = list(range(len(keys)))
    if p.on_conflict_nothing and len(set(keys)) != len(keys):  # the first of each key wins
        seen: set = set()
        positions = [i for i, k in enumerate(keys) if not (k in seen or seen.add(k))]
        rows, keys = rows.take(_indices(positions)), [keys[i] for i in positions]
    refuse_repeats(t, keys)
    live = live_keys(s, t, keys)
    if live:
        if not p.on_conflict_nothing:
            raise unique_violation(t, next(k for k in keys if k in live))
        keep = [j for j, k in enumerate(keys) if k not in live]
        rows, keys, positions = rows.take(_indices(keep)), [keys[j] for j in keep], [positions[j] for j in keep]
    append(s, t, rows, deleted=False, keys=keys)
    return rows.select(t.column_names), positions


def _table_columns(t: TableDef, names: tuple[str, ...]) -> tuple[str, ...]:
    """`names` as the table spells its columns (DuckDB, which evaluates everything else, binds
    names case-insensitively); 42703 for one the table does not have."""
    by_fold = {c.casefold(): c for c in t.column_names}
    out = []
    for n in names:
        c = n if n in t.column_names else by_fold.get(n.casefold())
        if c is None:
            raise UndefinedColumn(f'column "{n}" of relation "{t.name}" does not exist')
        out.append(c)
    return tuple(out)


def _check_arbiter(t: TableDef, c: dml.OnConflict) -> None:
    """ON CONFLICT's arbiter must be the primary key, tierd's one unique constraint; DO
    UPDATE's SET names the table's columns (checked before any row is looked at)."""
    _table_columns(t, c.set_columns)
    if c.constraint is not None and (not t.primary_key or c.constraint.casefold() != f"{t.name}_pkey".casefold()):
        raise UndefinedObject(f'constraint "{c.constraint}" for table "{t.name}" does not exist')
    columns = None
    if c.columns is not None:
        try:
            columns = _table_columns(t, c.columns)
        except UndefinedColumn:  # PostgreSQL's wording for an inference column
            missing = next(n for n in c.columns if n.casefold() not in {x.casefold() for x in t.column_names})
            raise UndefinedColumn(f'column "{missing}" does not exist') from None
    if columns is not None and (set(columns) != set(t.primary_key) or len(columns) != len(t.primary_key)):
        raise InvalidColumnReference(
            "there is no unique or exclusion constraint matching the ON CONFLICT specification")


def _upsert(s: SessionState, t: TableDef, p: dml.InsertPlan, rows: pa.Table, keys: list,
            params: list) -> tuple[pa.Table, list[int]]:
    """INSERT ... ON CONFLICT DO UPDATE: rows whose key has no live version are inserted; the
    others update that version (found through the key index and the cold tier, `live_rows`)
    with the SET values where the WHERE holds. Returns inserted and updated rows in the order
    proposed, and their positions (as `_insert_rows`).

    A key proposed again after this statement wrote it is 21000, as in PostgreSQL; after a
    DO UPDATE whose WHERE did not hold, the next proposal of the key meets the same row again
    (rounds: the n-th proposal of every key in round n)."""
    fast = _keyed_upsert(s, t, p.conflict.action, rows, keys, params)
    metrics.inc("tierd_fast_path_total", path="keyed_upsert", outcome="fallback" if fast is None else "used")
    if fast is not None:
        return fast
    existing = live_rows(s, t, list(dict.fromkeys(keys)))
    at = dict(zip(key_list(t, existing), range(existing.num_rows)))
    seen: dict = {}
    rounds: list[list[int]] = []
    for i, k in enumerate(keys):
        n = seen[k] = seen.get(k, -1) + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(i)
    written_keys: set = set()
    parts, positions = [], []
    for batch in rounds:
        if any(keys[i] in written_keys for i in batch):
            raise CardinalityViolation("ON CONFLICT DO UPDATE command cannot affect row a second time",
                                       hint="Ensure that no rows proposed for insertion within the same "
                                            "command have duplicate constrained values.")
        fresh = [i for i in batch if keys[i] not in at]
        hit = [i for i in batch if keys[i] in at]
        inserted = rows.take(_indices(fresh)) if len(fresh) != rows.num_rows else rows
        append(s, t, inserted, deleted=False, keys=[keys[i] for i in fresh])
        parts.append(inserted.select(t.column_names))
        positions += fresh
        if hit:
            shadow_cold(s, t)  # the versions updated may be cold
            old = existing.take(_indices([at[keys[i]] for i in hit]))
            values = _conflict_values(s, t, p.conflict.set_sql, old, rows.take(_indices(hit)), params)
            passed = values.column("__pass")
            done = [i for i, ok in zip(hit, passed.to_pylist()) if ok]
            updated = _supersede(s, t, old.filter(passed), values.filter(passed), p.conflict.set_columns)
            parts.append(updated.select(t.column_names))
            positions += done
        written_keys.update(keys[i] for i in positions)
    written = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    if positions != sorted(positions):
        written = written.take(pc.sort_indices(_indices(positions)))
    return written, sorted(positions)


def keyed_table(t: TableDef) -> bool:
    """Whether key-addressed writes (no DuckDB query) may write `t`: one key column, none of
    the USER, STREAM or TTL rules (and, checked per statement, no rows older than the
    transaction's own ALTER TABLE: `SessionState.tx.ddl_before`)."""
    return not (t.is_user or t.is_stream or t.ttl_seconds or len(t.primary_key) != 1)


def _keyed_upsert(s: SessionState, t: TableDef, action: keyed.ConflictAction | None, rows: pa.Table,
                  keys: list, params: list) -> tuple[pa.Table, list[int]] | None:
    """ON CONFLICT DO UPDATE computed in Python (engine/sql/keyed.py `conflict_action`): each
    key's current version through `current_version`, the SET values and WHERE evaluated per
    conflicting row. None, before anything is written, when the general path must answer
    (a repeated key, a key only DuckDB can find, a value only DuckDB can compute)."""
    if action is None or not keyed_table(t) or t.tid in s.tx.ddl_before or len(set(keys)) != len(keys):
        return None
    currents = []
    for k in keys:
        found, row = current_version(s, t, k)
        if not found:
            return None
        currents.append(row)
    schema = s.engine.visible_schema(t)
    wanted = {name for kind, name in (n for e in [x for _, x in action.sets] + [action.where] if e is not None
                                      for n in keyed.references(e)) if kind == "ex"}
    if not wanted <= set(t.column_names):
        return None
    excluded_cols = {c: rows.column(c).to_pylist() for c in wanted}
    bits = {f.name: f.type.bit_width for f in schema if pa.types.is_integer(f.type)}
    fresh, done, updates = [], [], []
    for i, current in enumerate(currents):
        if current is None:
            fresh.append(i)
            continue
        excluded = {c: v[i] for c, v in excluded_cols.items()}
        if action.where is not None:
            values = {n: current.column(n)[0].as_py() for kind, n in keyed.references(action.where) if kind == "col"}
            try:
                if keyed.holds(action.where, params, values, bits, excluded) is not True:
                    continue
            except (keyed.NotKeyed, KeyError, TypeError):
                return None
        new = new_version(t, schema, action.sets, current, params, excluded)
        if new is None:
            return None
        done.append(i)
        updates.append(new)
    parts = []  # a single-row upsert writes one part: no take, select or concat of empty tables
    if fresh:
        inserted = rows.take(_indices(fresh)) if len(fresh) != rows.num_rows else rows
        append(s, t, inserted, deleted=False, keys=[keys[i] for i in fresh])
        parts.append(_visible(t, inserted))
    if updates:
        shadow_cold(s, t)  # the versions updated may be cold
        updated = pa.concat_tables(updates) if len(updates) > 1 else updates[0]
        append(s, t, updated, deleted=False, keys=[keys[i] for i in done])
        parts.append(_visible(t, updated))
    positions = fresh + done
    written = pa.concat_tables(parts) if len(parts) > 1 else parts[0] if parts else _visible(t, rows.slice(0, 0))
    if positions != sorted(positions):
        written = written.take(pc.sort_indices(_indices(positions)))
    return written, sorted(positions)


def _visible(t: TableDef, rows: pa.Table) -> pa.Table:
    """`rows` without the columns the table keeps beside its own (a row id)."""
    return rows if rows.column_names == t.column_names else rows.select(t.column_names)


class _VersionStep(NamedTuple):
    field: pa.Field
    expr: tuple | None  # the SET expression, or None: the column is copied
    column: Column
    text_cast: bool  # a string column DuckDB's cast canonicalises (uuid, json, enum)


_VERSION_PROGRAMS: dict[tuple, tuple] = {}


def _version_program(t: TableDef, schema: pa.Schema, sets: tuple) -> tuple | None:
    """What new_version does for each column of `t` as `schema` types it, made once per
    table, schema and SET list: (steps, referenced column names, integer widths), or None
    when a SET names an unknown column or the key."""
    key = (id(t), id(schema), sets)
    hit = _VERSION_PROGRAMS.get(key)
    if hit is not None and hit[0] is t and hit[1] is schema:
        return hit[2]
    names = set(schema.names)
    program = None
    if not any(c not in names or c in t.primary_key for c, _ in sets):
        by_set = dict(sets)
        by_name = {c.name: c for c in t.columns}
        if all(f.name in by_name for f in schema):
            steps = tuple(_VersionStep(f, by_set.get(f.name), by_name[f.name],
                                       pa.types.is_string(f.type) and by_name[f.name].type.upper() != "VARCHAR")
                          for f in schema)
            refs = tuple(dict.fromkeys(n for _, expr in sets for kind, n in keyed.references(expr) if kind == "col"))
            bits = {f.name: f.type.bit_width for f in schema if pa.types.is_integer(f.type)}
            program = (steps, refs, bits)
    if len(_VERSION_PROGRAMS) > 512:
        _VERSION_PROGRAMS.clear()
    _VERSION_PROGRAMS[key] = (t, schema, program)
    return program


def new_version(t: TableDef, schema: pa.Schema, sets: tuple[tuple[str, tuple], ...], row: pa.Table,
                params: list, excluded: dict | None = None) -> pa.Table | None:
    """The new version of `row` (a current version: one row, the table's types) with the SET
    expressions (engine/sql/keyed.py) computed in Python and typed like a fast INSERT's values,
    the other columns copied. None: only the general path can (a key change, an unknown
    column, a value only DuckDB's casts type, a NOT NULL violation Postgres words)."""
    program = _version_program(t, schema, sets)
    if program is None:
        return None
    steps, refs, bits = program
    arrays = []
    try:
        values = {n: row.column(n)[0].as_py() for n in refs}
        for f, expr, col, text_cast in steps:
            if expr is None:
                copied = row.column(f.name)
                arrays.append(copied if copied.type == f.type else copied.cast(f.type))
                continue
            value = keyed.evaluate(expr, params, values, bits, excluded)
            if value is None and not col.nullable:
                return None  # the general path words the 23502
            if text_cast:
                return None  # uuid, json, enum: DuckDB's cast canonicalises the text
            arr = to_arrow([value], f.type)
            if arr is None:
                return None
            arrays.append(arr)
    except (keyed.NotKeyed, KeyError, pa.ArrowException, OverflowError):  # OverflowError: an
        return None  # 'infinity' date or timestamp, which has no Python value
    if t.rowid:  # a table keyed after it was created: each row keeps its row id
        rowid = row.column(ROWID)
        arrays.append(rowid if rowid.type == pa.int64() else rowid.cast(pa.int64()))
        schema = appended_schema(schema, _ROWID_FIELD)
    return pa.Table.from_arrays(arrays, schema=schema)


def _indices(positions: list[int]) -> pa.Array:
    return pa.array(positions, pa.int64())


def _conflict_values(s: SessionState, t: TableDef, set_sql: str, old: pa.Table, proposed: pa.Table,
                     params: list) -> pa.Table:
    """DO UPDATE's SET values (`__new_i`) and WHERE (`__pass`) per conflicting row: the
    existing version as the target, the proposed row as `excluded`, joined by position."""
    sql, bound = _bind(set_sql, params)
    s.cur.register(dml.EXISTING, old.select(t.column_names))
    s.cur.register(dml.EXCLUDED, proposed.select(t.column_names))
    try:
        return s.cur.execute(sql, bound).to_arrow_table()
    finally:
        s.cur.unregister(dml.EXISTING)
        s.cur.unregister(dml.EXCLUDED)


_TYPE_KINDS: dict[pa.DataType, str] = {}


def _type_kind(typ: pa.DataType) -> str:
    """"binary", "list", "simple" (pa.array types it as Postgres would) or "other"; per type once."""
    kind = _TYPE_KINDS.get(typ)
    if kind is None:
        kind = _TYPE_KINDS[typ] = (
            "binary" if pa.types.is_binary(typ) or pa.types.is_large_binary(typ) else
            "list" if pa.types.is_list(typ) else
            "simple" if any(check(typ) for check in _SIMPLE_TYPES) else "other")
    return kind


def to_arrow(values: list, typ: pa.DataType) -> pa.Array | None:
    """Python values as an Arrow array of `typ`, or None if that needs DuckDB's casts."""
    kind = _type_kind(typ)
    if kind == "binary":
        # Postgres reads a string as bytea text (hex or escape format), DuckDB as escapes
        values = [bytea_from_text(v) if isinstance(v, str) else v for v in values]
    elif kind == "list":  # array text ('{1,2}'); lists of Python values need DuckDB's cast
        return _array_text_to_arrow(values, typ) if any(isinstance(v, str) for v in values) else None
    elif kind == "other":
        return None
    else:
        arr = small_array(values, typ)
        if arr is not None:
            return arr
    try:
        return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        pass
    numbers = _numbers_from_text(values, typ)
    if numbers is None:
        return None
    try:
        return pa.array(numbers, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        return None


_DECIMAL_TEXT = re.compile(r"^\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*$")


def _numbers_from_text(values: list, typ: pa.DataType) -> list | None:
    """Text values of a number column as numbers, as the cast of an untyped parameter reads
    them (pgbench -M prepared sends every parameter as text without a type); None when a text
    is not a plain number (DuckDB's cast converts it or words the error)."""
    if pa.types.is_integer(typ):
        out = [integer_text(v) if isinstance(v, str) else v for v in values]
        return None if any(o is None and isinstance(v, str) for o, v in zip(out, values)) else out
    if pa.types.is_floating(typ):
        pattern, convert = _DECIMAL_TEXT, float
    elif pa.types.is_decimal(typ):
        pattern, convert = _DECIMAL_TEXT, Decimal
    else:
        return None
    out = []
    for v in values:
        if isinstance(v, str):
            if not pattern.match(v):
                return None
            v = convert(v.strip())
        out.append(v)
    return out


def _array_text_to_arrow(values: list, typ: pa.DataType) -> pa.Array | None:
    """Postgres array text (`'{1,2}'` into an INT[] column) as lists of `typ`'s elements."""
    def text_type(t: pa.DataType) -> pa.DataType:
        return pa.list_(text_type(t.value_type)) if pa.types.is_list(t) else pa.string()

    def as_text(v):
        return [as_text(x) for x in v] if isinstance(v, list) else None if v is None else str(v)
    lists = [as_text(arrays.parse(v) if isinstance(v, str) else v) for v in values]
    leaf = typ
    while pa.types.is_list(leaf):
        leaf = leaf.value_type
    if pa.types.is_boolean(leaf):
        lists = _map_leaves(lists, lambda x: x.lower() in ("t", "true", "1", "on", "yes", "y"))
    try:
        return pa.array(lists, type=text_type(typ) if not pa.types.is_boolean(leaf) else None).cast(typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError, ValueError):
        return None


def _map_leaves(value, f):
    if isinstance(value, list):
        return [_map_leaves(x, f) for x in value]
    return None if value is None else f(value)


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


class _Column(NamedTuple):
    """How fast_rows fills one table column: from the VALUES cells of position `at` (None:
    the column's default, or NULL when it has none)."""
    column: Column
    field: pa.Field
    at: int | None
    cells: tuple  # the column's cell of each VALUES row
    casts: frozenset  # the casts its parameters carry ($1::BIGINT)
    text_kind: str | None  # a string column DuckDB's cast canonicalises: "uuid" or "other"


def _fast_columns(eng, t: TableDef, p: dml.InsertPlan, schema: pa.Schema) -> tuple[_Column, ...] | None:
    """The column program of a fast VALUES list for `t` as it is now, or None when the named
    columns rule the fast path out; made once per plan and table shape (kept on the plan)."""
    cached = p.__dict__.get("_fast_columns")
    if cached is not None and cached[0] is t and cached[1] is schema:
        return cached[2]
    width = len(p.fast_values[0])
    names = list(p.columns) if p.columns is not None else t.column_names[:width]
    program = None
    if len(names) == width and len(set(names)) == width and set(names) <= set(t.column_names):
        position = {n: i for i, n in enumerate(names)}
        cols = []
        for c, f in zip(t.columns, schema):
            at = position.get(c.name)
            cells = tuple(row[at] for row in p.fast_values) if at is not None else ()
            casts = frozenset(v[1] for kind, v in cells if kind == "pc")
            text_kind = None
            if pa.types.is_string(f.type) and c.type.upper() != "VARCHAR":
                text_kind = "uuid" if c.type.upper() == "UUID" else "other"
            cols.append(_Column(c, f, at, cells, casts, text_kind))
        program = tuple(cols)
    object.__setattr__(p, "_fast_columns", (t, schema, program))  # a frozen dataclass: a cache slot
    return program


def fast_rows(s: SessionState, t: TableDef, p: dml.InsertPlan, params: list,
              param_rows: list[list] | None = None) -> pa.Table | None:
    """Type a VALUES list in Python, without DuckDB; None when only DuckDB can (or must
    produce the error). `param_rows`: the one-row VALUES list of `p` once per parameter row
    (an executemany's batch), its columns taken straight from the rows."""
    eng = s.engine
    schema = eng.visible_schema(t)
    program = _fast_columns(eng, t, p, schema)
    if program is None:
        return None
    arrays = []
    n = len(p.fast_values) if param_rows is None else len(param_rows)
    for c, f, at, cells, casts, text_kind in program:
        if at is not None:
            try:
                if param_rows is None:
                    values = [params[v] if kind == "p" else params[v[0]] if kind == "pc" else v if kind == "c"
                              else _transaction_time(s, f.type) for kind, v in cells]
                else:
                    values = _batch_column(s, f, cells[0], param_rows)
            except _NoTime:
                return None
            if casts and not all(param_casts.value_fits(x, cast, f.type, c.type) for cast in casts for x in values):
                return None  # a conversion (or its error) only DuckDB's cast gives
        elif c.default is None:
            values = [None] * n
        else:
            d = eng.default_value(t, c)
            if d is NO_FAST_DEFAULT:
                return None
            if isinstance(d, SequenceDefault):  # a serial / identity column: from the in-memory block
                values = eng.sequences.nextval(sequence_functions.resolve(eng.sequences, d.name), s.session_id, n)
            else:
                values = [_transaction_start(s) if d is NOW else d] * n
        if text_kind is not None and any(v is not None for v in values):
            if text_kind != "uuid":
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


def _batch_column(s: SessionState, f: pa.Field, cell: tuple, param_rows: list[list]) -> list:
    """One column of a batch: its VALUES cell read from every parameter row."""
    kind, v = cell
    if kind == "p":
        return [row[v] for row in param_rows]
    if kind == "pc":
        return [row[v[0]] for row in param_rows]
    return [v if kind == "c" else _transaction_time(s, f.type)] * len(param_rows)


class _NoTime(Exception):
    """The transaction's timestamp as a column type only DuckDB's cast gives."""


def _transaction_start(s: SessionState) -> datetime:
    """now() as PostgreSQL gives it: the transaction's start, the same for all its rows."""
    return datetime.fromtimestamp(s.activity.xact_start or time.time(), timezone.utc)


def _transaction_time(s: SessionState, typ: pa.DataType):
    """CURRENT_TIMESTAMP (the transaction's start, as in Postgres) as a column of `typ` holds
    it: the instant for timestamptz, the wall-clock time in the session's TimeZone for
    timestamp; _NoTime for other types or a zone Python does not know."""
    if not pa.types.is_timestamp(typ):
        raise _NoTime
    at = _transaction_start(s)
    if typ.tz is not None:
        return at
    try:
        return at.astimezone(zoneinfo.ZoneInfo(s.settings["timezone"])).replace(tzinfo=None)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, KeyError):
        raise _NoTime from None


def _slow_rows(s: SessionState, t: TableDef, p: dml.InsertPlan, params: list) -> pa.Table:
    if p.reads:  # INSERT ... SELECT (or a subquery) reads tables: this transaction's rows too
        own_writes_visible(s)
        s.engine.hot.settle()
    # else a VALUES list DuckDB types (nextval in an expression, casts) reads no table, so it
    # needs no DuckDB snapshot of the transaction's writes; `append` types its rows as the table
    sql = p.stage_sql
    if dml.COLUMNS_PREFIX in sql:
        sql = re.sub(re.escape(dml.COLUMNS_PREFIX) + r"(\d+)",
                     lambda m: "(" + ", ".join(views.q(c) for c in t.column_names[: int(m.group(1))]) + ")",
                     sql, count=1)
    return _typed(s, t, *_bind(sql, params))


# ---------------------------------------------------------------------- UPDATE, DELETE
def _affected(s: SessionState, t: TableDef, select_sql: str, params: list) -> tuple[pa.Table, list]:
    """The rows an UPDATE/DELETE touches, once per key (a join may match a row twice:
    the first match wins), and their keys."""
    own_writes_visible(s)
    shadow_cold(s, t)
    s.engine.hot.settle()
    with s.system_columns(t.is_user or t.rowid):  # the owner and row id come along: the full view has them
        sel = s.cur.execute(select_sql, params).to_arrow_table()
    keys = key_list(t, sel)
    if len(set(keys)) != len(keys):
        sel, keys = first_per_key(sel, keys)
    return sel, keys


def _update(s: SessionState, t: TableDef, p: dml.UpdatePlan, params: list) -> StatementResult:
    sel, _ = _affected(s, t, p.select_sql, params)
    typed = _supersede(s, t, sel, sel, p.set_columns)
    ret = _returning(s, p.target.alias, p.returning, typed.select(t.column_names), params, t)
    return StatementResult(f"UPDATE {typed.num_rows}", ret)


def _supersede(s: SessionState, t: TableDef, old: pa.Table, values: pa.Table, set_columns: tuple[str, ...]) -> pa.Table:
    """New versions of the `old` rows (with a USER table's owner, which they keep): each SET
    column from `values`' `__new_i` (the last SET of a column wins), typed by the table; a
    changed key must be free and leaves a tombstone behind. Appended; returned."""
    set_columns = _table_columns(t, set_columns)
    cols = []
    for c in t.column_names:
        if c in set_columns:
            idx = len(set_columns) - 1 - list(reversed(set_columns)).index(c)
            cols.append(values.column(f"__new_{idx}"))
        else:
            cols.append(old.column(c))
    new = pa.table(cols, names=t.column_names)
    typed = _typed(s, t, f"INSERT INTO {dml.STAGE} SELECT * FROM __source RETURNING *", [], new)
    typed = owned(s, t, typed, old.column(OWNER) if t.is_user else None)
    if t.rowid:  # a row keeps its row id
        typed = typed.append_column(ROWID, old.column(ROWID))
    old_keys, new_keys = key_list(t, old), key_list(t, typed)
    if new_keys != old_keys:
        refuse_repeats(t, new_keys)
        old_set = set(old_keys)
        live = live_keys(s, t, [k for k in new_keys if k not in old_set])
        if live:
            raise unique_violation(t, next(iter(live)))
        new_set = set(new_keys)
        gone = old.filter(pa.array([k not in new_set for k in old_keys], pa.bool_()))
        append(s, t, tombstones(s, t, gone), deleted=True)
        foreign_keys.note_key_update(s, t, old_keys, new_keys)
    append(s, t, typed, deleted=False, keys=new_keys)
    return typed


def _delete(s: SessionState, t: TableDef, p: dml.DeletePlan, params: list) -> StatementResult:
    sel, _ = _affected(s, t, p.select_sql, params)
    append(s, t, tombstones(s, t, sel), deleted=True)
    ret = _returning(s, p.target.alias, p.returning, sel.select(t.column_names), params, t)
    return StatementResult(f"DELETE {sel.num_rows}", ret)


# ---------------------------------------------------------------------- MERGE
def _merge(s: SessionState, t: TableDef, p: dml.MergePlan, params: list) -> StatementResult:
    """MERGE as PostgreSQL 15 runs it: each source row takes the first WHEN clause whose
    conditions hold (one query: the source LEFT JOIN the target's rows); a target row updated
    or deleted twice is 21000; deletes, then updates, then inserts are written (inserts are
    key-checked like INSERT). The tag counts the rows each action touched."""
    own_writes_visible(s)
    shadow_cold(s, t)
    s.engine.hot.settle()
    if not t.primary_key:
        raise FeatureNotSupported("MERGE into a table without a primary key is not supported",
                                  hint="use UPDATE, DELETE and INSERT ... SELECT, or ALTER TABLE ... ADD PRIMARY KEY")
    own = t.column_names + ([OWNER] if t.is_user else [])
    target = (f"(SELECT {', '.join(views.q(c) for c in own)}, true AS {dml.MERGE_HIT} "
              f"FROM {views.q(t.namespace)}.{views.q(t.name)})")
    alias = views.q(p.target.alias)
    sql = p.select_sql.replace(dml.MERGE_COLUMNS, ", ".join(f"{alias}.{views.q(c)} AS {views.q('__t_' + c)}"
                                                             for c in own)).replace(dml.MERGE_TARGET, target)
    with s.system_columns(t.is_user):  # the owner of each row comes along: the full view has it
        rows = s.cur.execute(*_bind(sql, params)).to_arrow_table()
    chosen = rows.column("__clause").to_pylist()
    old_all = pa.table([rows.column("__t_" + c) for c in own], names=own)
    acting = [i for i, c in enumerate(chosen) if c is not None and p.whens[c].action in ("UPDATE", "DELETE")]
    refuse_second_touch(key_list(t, old_all.take(_indices(acting))), "MERGE command cannot affect row a second time",
                        "Ensure that not more than one source row matches any one target row.")
    count = 0
    for action in ("DELETE", "UPDATE", "INSERT"):
        for i, w in enumerate(p.whens):
            if w.action != action:
                continue
            at = _indices([r for r, c in enumerate(chosen) if c == i])
            if not len(at):
                continue
            count += len(at)
            if action == "DELETE":
                append(s, t, tombstones(s, t, old_all.take(at)), deleted=True)
            elif action == "UPDATE":
                values = pa.table([rows.column(f"__w{i}_{j}").take(at) for j in range(len(w.columns))],
                                  names=[f"__new_{j}" for j in range(len(w.columns))])
                _supersede(s, t, old_all.take(at), values, w.columns)
            else:
                _merge_insert(s, t, w, pa.table([rows.column(f"__w{i}_{j}").take(at) for j in range(w.width)],
                                                names=[f"c{j}" for j in range(w.width)]))
    return StatementResult(f"MERGE {count}")


def _merge_insert(s: SessionState, t: TableDef, w: dml.MergeAction, values: pa.Table) -> None:
    """A WHEN NOT MATCHED THEN INSERT clause's rows: typed by the table (defaults for the
    columns it does not name), key-checked, appended."""
    names = list(w.columns) or t.column_names[:w.width]
    if len(names) != w.width:
        raise SyntaxError_("INSERT has more expressions than target columns" if w.width > len(names)
                           else "INSERT has more target columns than expressions")
    names = _table_columns(t, tuple(names))
    cols = ", ".join(views.q(c) for c in names)
    typed = _typed(s, t, f"INSERT INTO {dml.STAGE} ({cols}) SELECT * FROM __source RETURNING *", [], values)
    typed = with_rowids(s, t, owned(s, t, typed))
    keys = key_list(t, typed)
    if t.primary_key:  # without one, every row is new
        refuse_repeats(t, keys)
        live = live_keys(s, t, keys)
        if live:
            raise unique_violation(t, next(k for k in keys if k in live))
    append(s, t, typed, deleted=False, keys=keys)


def shadow_cold(s: SessionState, t: TableDef) -> None:
    """UPDATE/DELETE/upsert/MERGE supersede versions (hot or cold): switch the view to the
    one that hides older versions before writing (views.full_view_sql). Called under the
    write lock, so no other writer switches it meanwhile; a transaction's DuckDB snapshot is
    taken under the exclusive lock, so the view it holds is the one `cold.shadowing` says."""
    cold = s.engine.cold
    cold.superseding(t)
    if not s.tx.in_duck_txn:  # autocommit, or applied writes: the view changes for everyone now
        cold.ensure_shadowing(t)
    elif t.tid not in cold.shadowing and t.tid not in s.tx.pending_shadow:
        # Inside this transaction's snapshot; takes effect for others at COMMIT.
        s.cur.execute(views.full_view_sql(t, shadowing=True))
        s.tx.pending_shadow.add(t.tid)


def tombstones(s: SessionState, t: TableDef, rows: pa.Table) -> pa.Table:
    schema = s.engine.visible_schema(t)
    cols = [rows.column(f.name) if f.name in t.primary_key else pa.nulls(rows.num_rows, f.type)
            for f in schema]
    dead = owned(s, t, pa.table(cols, schema=schema), rows.column(OWNER) if t.is_user else None)
    return dead.append_column(ROWID, rows.column(ROWID)) if t.rowid else dead


_PARAM_OUTSIDE_QUOTES = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$(\d+)")


def _bind(sql: str, params: list) -> tuple[str, list]:
    """`sql` with the statement's parameters it uses renumbered $1..$k, and their values:
    a clause (RETURNING, DO UPDATE SET) often uses only some, and DuckDB wants exactly those."""
    used = sorted({int(m.group(1)) for m in _PARAM_OUTSIDE_QUOTES.finditer(sql) if m.group(1)})
    if used == list(range(1, len(used) + 1)):
        return sql, params[:len(used)]
    number = {n: i + 1 for i, n in enumerate(used)}
    sql = _PARAM_OUTSIDE_QUOTES.sub(lambda m: f"${number[int(m.group(1))]}" if m.group(1) else m.group(0), sql)
    return sql, [params[n - 1] for n in used]


def _returning(s: SessionState, alias: str, expr: str | None, rows: pa.Table, params: list,
               t: TableDef) -> pa.Table | None:
    if expr is None:
        return None
    plain = plain_returning(t, alias, expr, rows)
    if plain is not None:
        return plain
    sql, bound = _bind(f"SELECT {expr} FROM __ret AS {views.q(alias)}", params)
    s.cur.register("__ret", rows)
    try:
        s.cur.execute(sql, bound)
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


def plain_returning(t: TableDef, alias: str, expr: str, rows: pa.Table) -> pa.Table | None:
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
    name = f"temp.main.__stage_{t.tid}_{t.revision}"  # an ALTER TABLE makes a new one
    if s.stages.get(t.tid) != t.revision:
        cols = []
        for c in t.columns:
            spec = f"{views.q(c.name)} {c.type}"
            if c.default is not None:
                spec += f" DEFAULT {c.default}"
            if not c.nullable:
                spec += " NOT NULL"
            cols.append(spec)
        s.cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS __stage_{t.tid}_{t.revision} ({', '.join(cols)})")
        s.stages[t.tid] = t.revision
    return name


_NOT_NULL = re.compile(r"NOT NULL constraint failed: __stage_\d+(?:_\d+)?\.(.+)$")


def _typed(s: SessionState, t: TableDef, sql: str, params: list, source: pa.Table | None = None) -> pa.Table:
    stage = _stage(s, t)
    if source is not None:
        s.cur.register("__source", source)
    try:
        return s.cur.execute(sql.replace(dml.STAGE, stage), params).to_arrow_table()
    except duckdb.ConstraintException as exc:
        m = _NOT_NULL.search(str(exc))
        if m is None:
            raise
        raise NotNullViolation(f'null value in column "{m.group(1)}" of relation "{t.name}" '
                               'violates not-null constraint') from None
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


def with_rowids(s: SessionState, t: TableDef, rows: pa.Table) -> pa.Table:
    """Under the write lock: new rows of a table with row ids get new ones (fresh _seq values,
    so never one a row ever had), after the owner column as the hot table orders them."""
    if not t.rowid:
        return rows
    n = rows.num_rows
    hot = s.engine.hot
    if s.tx.shared:  # beside other writers: numbers of the hot tier, never used again
        with hot.commit_lock:
            first = hot.allocate(n)
    else:
        first = hot.allocate(n)
    ids = small_array(list(range(first, first + n)), pa.int64()) if n <= MAX_VALUES else \
        pa.array(np.arange(first, first + n, dtype=np.int64))
    return pa.Table.from_arrays(rows.columns + [ids], schema=appended_schema(rows.schema, _ROWID_FIELD))


def _as_table_types(s: SessionState, t: TableDef, rows: pa.Table) -> pa.Table:
    """`rows` with the table's own column types: DuckDB types a staged timestamptz in the
    session's TimeZone (timestamp[us, tz=Europe/Berlin]) where the table holds UTC, and batches
    of one table must share one schema (LevelDB, the hot table, concatenation)."""
    schema = s.engine.visible_schema(t)
    have = rows.schema
    if len(have) < len(schema) or have.equals(schema) or all(
            have.field(i).type == f.type for i, f in enumerate(schema)):
        return rows
    cols = [rows.column(i).cast(f.type) if have.field(i).name == f.name else rows.column(i)
            for i, f in enumerate(schema)]
    return pa.table(cols + rows.columns[len(schema):], names=have.names)


_SEQ_FIELD = pa.field("_seq", pa.int64())
_ROWID_FIELD = pa.field(ROWID, pa.int64())
_DELETED_FIELD = pa.field("_deleted", pa.bool_())
_DELETED_ONE = {flag: pa.array([flag], pa.bool_()) for flag in (False, True)}  # immutable: shared


def _appended(schema: pa.Schema, *fields: pa.Field) -> pa.Schema:
    for f in fields:
        schema = schema.append(f)  # keeps the fields' metadata (uuid, json)
    return schema


# each Schema.append lets go of the GIL twice: a write's stored schema is made once per schema
_APPENDED: SchemaMemo[pa.Schema] = SchemaMemo(_appended, 512)


def appended_schema(schema: pa.Schema, *fields: pa.Field) -> pa.Schema:
    """`schema` with `fields` appended."""
    return _APPENDED.get(schema, *fields)


def append(s: SessionState, t: TableDef, rows: pa.Table, deleted: bool, keys: list | None = None) -> None:
    """Write new versions of `rows` (visible columns plus a USER table's owner, table
    types) into the hot tier; `keys`: their key_list, if the caller has it."""
    n = rows.num_rows
    if n == 0:
        return
    rows = _as_table_types(s, t, rows)
    hot, tx = s.engine.hot, s.tx
    first = allocate(s, n)
    # one table built once (numpy ranges: pyarrow's compute kernels cost ~0.2 ms a call on a row)
    stored = appended_schema(rows.schema, _SEQ_FIELD, _DELETED_FIELD)
    if n == 1:
        marks = [small_array([first], pa.int64()), _DELETED_ONE[deleted]]
    else:
        marks = [pa.array(np.arange(first, first + n, dtype=np.int64)), pa.array(np.full(n, deleted))]
    batch = pa.Table.from_arrays(rows.columns + marks, schema=stored)
    if t.is_stream:  # never behind an earlier write: versions expire in _seq order
        written = hot.stream_write_time()
        stamp = pa.scalar(datetime.fromtimestamp(written, timezone.utc), pa.timestamp("us", tz="UTC"))
        batch = batch.append_column(WRITTEN_AT, pa.repeat(stamp, n))
        hot.note_stream_write(t, written, first + n - 1)
    if tx.in_duck_txn or tx.applied:  # visible to this transaction at once (to others at COMMIT,
        # or at once after DDL in the transaction: engine/session/transaction_ddl.py)
        s.cur.register("__batch", batch)
        try:
            s.cur.execute(f"INSERT INTO {views.hot_table(t)} SELECT * FROM __batch")
        finally:
            s.cur.unregister("__batch")
    tx.pending.append((t.tid, first, batch))
    index = tx.pending_index.setdefault(t.tid, {})
    index.update(zip(keys if keys is not None else key_list(t, rows),
                     map(Tombstone if deleted else KeyState, range(first, first + n))))


def check_foreign_keys(s: SessionState, t: TableDef, mark: int) -> None:
    """At the end of a write statement on `t` (its batches from `s.tx.pending[mark]` on): the
    foreign keys on either side hold and their actions are written (engine/session/
    foreign_keys.py); a table outside every foreign key pays one set lookup."""
    if t.tid in s.engine.catalog.foreign_key_tids():
        foreign_keys.check_foreign_keys(s, t, mark, _ROW_WRITES)


_ROW_WRITES = foreign_keys.RowWrites(append=append, tombstones=tombstones, shadow_cold=shadow_cold)
