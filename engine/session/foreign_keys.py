"""FOREIGN KEY constraints as PostgreSQL has them: resolved against the catalog when they are
declared (CREATE TABLE, ALTER TABLE ... ADD), recorded on the referencing table's catalog
record, and checked at the end of every write statement that touches a table on either side.

A child's new row versions must find their key live in the parent (hot ∪ cold, this
transaction's writes first: `keys.live_keys`, a key-index lookup per distinct key and one
semi join over the cold tier for the rest); a NULL in any referencing column skips the check
(MATCH SIMPLE). A parent key a statement deleted (or changed) is looked up among the
children's rows (one semi join over the child's hot ∪ cold view) and its ON DELETE / ON UPDATE
action runs in the same transaction: NO ACTION (checked after every other action) and
RESTRICT refuse with 23503, CASCADE deletes or re-keys the children, SET NULL / SET DEFAULT
write new versions of them, which are checked in turn. Tables outside any foreign key pay
one set lookup per statement (`Catalog.foreign_key_tids`).

Constraints are checked at the end of each statement: DEFERRABLE INITIALLY IMMEDIATE is
accepted, INITIALLY DEFERRED answers 0A000 (engine/sql/foreign_key_ddl.py).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa

from engine.catalog.tables import ROWID, TableDef
from engine.errors import (DatatypeMismatch, DependentObjectsStillExist, DuplicateObject, FeatureNotSupported,
                           ForeignKeyViolation, InvalidForeignKey, NotNullViolation, UndefinedColumn, UndefinedTable)
from engine.catalog.pg_types import pg_type_name
from engine.session import transaction_ddl
from engine.session.keys import current_version, live_keys, refuse_repeats, unique_violation
from engine.session.state import SessionState
from engine.session.transactions import own_writes_visible
from engine.sql.foreign_key_ddl import ForeignKeyClause
from engine.tiers import views
from engine.tiers.hot import key_list

NAME_MAX = 63  # Postgres's NAMEDATALEN - 1
_NUMBERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "REAL")


# ---------------------------------------------------------------------- DDL
def constraint_names(s: SessionState, namespace: str) -> set[str]:
    """Constraint names taken in a namespace: primary keys and foreign keys."""
    names = set()
    for t in s.engine.catalog.tables_in(namespace):
        if t.primary_key:
            names.add(f"{t.name}_pkey")
        names.update(fk["name"] for fk in t.foreign_keys)
    return names


def _default_name(table: str, columns: list[str], taken: set[str]) -> str:
    """Postgres's name for an unnamed foreign key: <table>_<col>[_<col>...]_fkey, made unique."""
    base = f"{table}_{'_'.join(columns)}"[:NAME_MAX - len("_fkey")] + "_fkey"
    candidate, n = base, 0
    while candidate in taken:
        n += 1
        candidate = f"{base[:NAME_MAX - len(str(n))]}{n}"
    return candidate


def _family(duck_type: str) -> str:
    upper = duck_type.upper()
    if upper in _NUMBERS or upper.startswith("DECIMAL") or upper.startswith("U"):
        return "number"
    if upper == "VARCHAR":
        return "text"
    return upper


def declare(s: SessionState, child: TableDef, clause: ForeignKeyClause, taken: set[str]) -> dict:
    """The catalog record of `clause` on `child` (which may be the table being created, and
    its own parent): names, columns and types checked as Postgres checks them."""
    if child.is_user or child.is_stream:
        raise FeatureNotSupported(f"FOREIGN KEY on a {child.table_type} table is not supported by tierd")
    ns, name = s.split_name(clause.parent)
    parent = child if (ns, name) == (child.namespace, child.name) or (
        "." not in clause.parent and name == child.name and s.engine.catalog.find(ns, name) is None) \
        else s.engine.catalog.find(ns, name)
    if parent is None:
        raise UndefinedTable(f'relation "{clause.parent.strip()}" does not exist')
    if parent.is_user or parent.is_stream:
        raise FeatureNotSupported(f"a FOREIGN KEY referencing a {parent.table_type} table is not supported by tierd")
    for c in clause.columns:
        if child.column(c) is None:
            raise UndefinedColumn(f'column "{c}" referenced in foreign key constraint does not exist')
    if clause.parent_columns is None:
        if not parent.primary_key:
            raise InvalidForeignKey(f'there is no primary key for referenced table "{parent.name}"')
        ref = list(parent.primary_key)
    else:
        for c in clause.parent_columns:
            if parent.column(c) is None:
                raise UndefinedColumn(f'column "{c}" referenced in foreign key constraint does not exist')
        ref = list(clause.parent_columns)
    if len(ref) != len(clause.columns):
        raise InvalidForeignKey("number of referencing and referenced columns for foreign key disagree")
    if sorted(ref) != sorted(parent.primary_key) or len(set(ref)) != len(ref):
        raise InvalidForeignKey(f'there is no unique constraint matching given keys for referenced table "{parent.name}"')
    if clause.name is not None and any(fk["name"] == clause.name for fk in child.foreign_keys):
        raise DuplicateObject(f'constraint "{clause.name}" for relation "{child.name}" already exists')
    fk_name = clause.name or _default_name(child.name, list(clause.columns), taken)
    for c, p in zip(clause.columns, ref):
        ct, pt = child.column(c), parent.column(p)
        if _family(ct.type) != _family(pt.type):
            raise DatatypeMismatch(
                f'foreign key constraint "{fk_name}" cannot be implemented',
                detail=f'Key columns "{c}" and "{p}" are of incompatible types: '
                       f"{ct.declared or pg_type_name(ct.type)} and {pt.declared or pg_type_name(pt.type)}.")
    ordinal = max((fk.get("ordinal", 0) for fk in child.foreign_keys), default=0) + 1
    return {"name": fk_name, "columns": [child.column(c).id for c in clause.columns], "ref_tid": parent.tid,
            "ref_columns": [parent.column(p).id for p in ref], "on_delete": clause.on_delete,
            "on_update": clause.on_update, "match": clause.match, "deferrable": clause.deferrable,
            "ordinal": ordinal}


def parent_of(s: SessionState, child: TableDef, fk: dict) -> TableDef:
    return child if fk["ref_tid"] == child.tid else s.engine.catalog.by_tid(fk["ref_tid"])


def check_existing(s: SessionState, child: TableDef, fk: dict) -> None:
    """ALTER TABLE ... ADD FOREIGN KEY: every row the child has now must satisfy it."""
    parent = parent_of(s, child, fk)
    cols, ref = child.names_of(fk["columns"]), parent.names_of(fk["ref_columns"])
    s.engine.hot.settle()
    on = " AND ".join(f"c.{views.q(a)} = p.{views.q(b)}" for a, b in zip(cols, ref))
    not_null = " AND ".join(f"c.{views.q(a)} IS NOT NULL" for a in cols)
    row = s.check_cur.execute(
        f"SELECT {', '.join('c.' + views.q(a) for a in cols)} FROM {views.full_view(child)} c "
        f"WHERE {not_null} AND NOT EXISTS (SELECT 1 FROM {views.full_view(parent)} p WHERE {on}) LIMIT 1").fetchone()
    if row is not None:
        raise _child_violation(child, parent, fk, cols, tuple(row))


def drop_dependents(s: SessionState, dropped: list[TableDef], cascade: bool, in_tx: bool) -> list[str]:
    """DROP TABLE of referenced tables: 2BP01 unless CASCADE, which drops the foreign keys of
    the tables not dropped with them; the notices to send."""
    gone = {t.tid for t in dropped}
    catalog = s.engine.catalog
    notices = []
    for t in dropped:
        deps = [(c, fk) for c, fk in catalog.referencing(t.tid) if c.tid not in gone]
        if not deps:
            continue
        if not cascade:
            child, fk = deps[0]
            raise DependentObjectsStillExist(
                f"cannot drop table {t.name} because other objects depend on it",
                detail="\n".join(f"constraint {fk['name']} on table {c.name} depends on table {t.name}"
                                 for c, fk in deps),
                hint="Use DROP ... CASCADE to drop the dependent objects too.")
        for child in {c.tid: c for c, _ in deps}.values():
            child = catalog.by_tid(child.tid)
            names = [fk["name"] for fk in child.foreign_keys if fk["ref_tid"] == t.tid]
            notices += [f"drop cascades to constraint {n} on table {child.name}" for n in names]
            _replace(s, child, [fk for fk in child.foreign_keys if fk["ref_tid"] != t.tid], in_tx)
    return notices


def _replace(s: SessionState, t: TableDef, foreign_keys: list[dict], in_tx: bool) -> None:
    new = copy.deepcopy(t)
    new.foreign_keys = foreign_keys
    if in_tx:
        transaction_ddl.changing(s, t)
    s.engine.catalog.replace_table(t, new, durable=not in_tx)


def truncated_with(s: SessionState, tables: list[TableDef], cascade: bool) -> tuple[list[TableDef], list[str]]:
    """TRUNCATE: the tables that reference a truncated one must be truncated too (CASCADE adds
    them, with a notice each), else 0A000 as in Postgres."""
    catalog = s.engine.catalog
    out, notices = list(tables), []
    i = 0
    while i < len(out):
        t = out[i]
        i += 1
        for child, _fk in catalog.referencing(t.tid):
            if any(o.tid == child.tid for o in out):
                continue
            if not cascade:
                raise FeatureNotSupported("cannot truncate a table referenced in a foreign key constraint",
                                          detail=f'Table "{child.name}" references "{t.name}".',
                                          hint=f'Truncate table "{child.name}" at the same time, '
                                               "or use TRUNCATE ... CASCADE.")
            out.append(child)
            notices.append(f'truncate cascades to table "{child.name}"')
    return out, notices


# ---------------------------------------------------------------------- enforcement
@dataclass(frozen=True)
class RowWrites:
    """The write path's row-version functions (engine/session/writes.py, which calls this
    module at the end of each statement, hands them in): the actions write as it writes."""
    append: Callable  # (s, t, rows, deleted, keys=None)
    tombstones: Callable  # (s, t, rows) -> tombstone rows
    shadow_cold: Callable  # (s, t): cold rows may be superseded


def note_key_update(s: SessionState, t: TableDef, old_keys: list, new_keys: list) -> None:
    """After an UPDATE that changed keys appended the old keys' tombstones: which new key each
    old one became (ON UPDATE actions tell an update from a delete by it)."""
    if t.tid not in s.engine.catalog.foreign_key_tids():
        return
    new_set = set(new_keys)
    moves = {o: n for o, n in zip(old_keys, new_keys) if o not in new_set}
    s.tx.key_updates[s.tx.pending[-1][1]] = moves


def check_foreign_keys(s: SessionState, t: TableDef, mark: int, w: RowWrites) -> None:
    """At the end of a write statement on `t` whose batches start at `s.tx.pending[mark]`:
    every foreign key on either side of what it wrote holds, its actions done."""
    if t.tid not in s.engine.catalog.foreign_key_tids():
        return
    catalog = s.engine.catalog
    no_action: list[tuple[TableDef, TableDef, dict, list]] = []
    children: list[tuple[TableDef, int]] = []
    i = mark
    while i < len(s.tx.pending):  # actions append batches of their own: they are checked too
        tid, first, batch = s.tx.pending[i]
        i += 1
        table = catalog.by_tid(tid)
        if table is None or not batch.num_rows:
            continue
        if batch.column("_deleted")[0].as_py():
            moves = s.tx.key_updates.get(first)
            keys = key_list(table, batch)
            for child, fk in catalog.referencing(tid):
                action = fk["on_update"] if moves is not None else fk["on_delete"]
                if action == "a":
                    no_action.append((table, child, fk, keys))
                    continue
                refs = _referencing_rows(s, table, child, fk, keys, w)
                if refs.num_rows:
                    _act(s, table, child, fk, action, refs, moves, w)
        elif table.foreign_keys:
            children.append((table, i - 1))
    for table, at in children:  # once every action is written: the versions still current
        batch = s.tx.pending[at][2]
        if any(tid == table.tid for tid, _, _ in s.tx.pending[at + 1:]):
            batch = _current(s, table, batch)
        for fk in table.foreign_keys:
            _check_child(s, table, fk, batch)
    for parent, child, fk, keys in no_action:
        still = live_keys(s, parent, keys)
        gone = [k for k in keys if k not in still]
        if gone:
            refs = _referencing_rows(s, parent, child, fk, gone, w)
            if refs.num_rows:
                _parent_violation(parent, child, fk, refs)


def _current(s: SessionState, t: TableDef, batch: pa.Table) -> pa.Table:
    """The rows of `batch` that are still their key's newest version (a later action of the
    same statement may have superseded them)."""
    index = s.tx.pending_index.get(t.tid, {})
    seqs = batch.column("_seq").to_pylist()
    keep = [index[k].seq == q for k, q in zip(key_list(t, batch), seqs)]
    return batch.filter(pa.array(keep, pa.bool_()))


def _check_child(s: SessionState, child: TableDef, fk: dict, batch: pa.Table) -> None:
    parent = parent_of(s, child, fk)
    if parent is None:
        return
    cols = child.names_of(fk["columns"])
    ref = parent.names_of(fk["ref_columns"])
    values = [batch.column(c).to_pylist() for c in cols]
    rows = values[0] if len(cols) == 1 else list(zip(*values))
    if len(cols) == 1:
        wanted = {v for v in rows if v is not None}
    else:
        wanted = set()
        for r in rows:
            if None not in r:
                wanted.add(r)
            elif fk["match"] == "f" and any(v is not None for v in r):
                raise ForeignKeyViolation(
                    f'insert or update on table "{child.name}" violates foreign key constraint "{fk["name"]}"',
                    detail="MATCH FULL does not allow mixing of null and nonnull key values.")
    if not wanted:
        return
    order = [ref.index(k) for k in parent.primary_key]  # the parent's key order
    keys = list(wanted) if len(cols) == 1 else [tuple(r[j] for j in order) for r in wanted]
    live = _live(s, parent, keys)
    if len(live) < len(keys):
        missing = next(r for r, k in zip(wanted, keys) if k not in live)
        raise _child_violation(child, parent, fk, cols, missing if len(cols) > 1 else (missing,))


def _live(s: SessionState, parent: TableDef, keys: list) -> set:
    """Which parent `keys` are live: one key is a point lookup (this transaction's writes, the
    hot key index, the cold tier's point read, no DuckDB query where it can), many are the
    key index plus one semi join over the cold tier."""
    if len(keys) == 1 and len(parent.primary_key) == 1:
        found, row = current_version(s, parent, keys[0])
        if found:
            return set(keys) if row is not None else set()
    return live_keys(s, parent, keys)


def _child_violation(child: TableDef, parent: TableDef, fk: dict, cols: list[str], values: tuple):
    return ForeignKeyViolation(
        f'insert or update on table "{child.name}" violates foreign key constraint "{fk["name"]}"',
        detail=f"Key ({', '.join(cols)})=({', '.join(_text(v) for v in values)}) "
               f'is not present in table "{parent.name}".')


def _text(v) -> str:
    if isinstance(v, bool):
        return "t" if v else "f"
    return str(v)


def _parent_violation(parent: TableDef, child: TableDef, fk: dict, refs: pa.Table):
    cols = child.names_of(fk["columns"])
    ref = parent.names_of(fk["ref_columns"])
    values = [refs.column(c)[0].as_py() for c in cols]
    raise ForeignKeyViolation(
        f'update or delete on table "{parent.name}" violates foreign key constraint "{fk["name"]}" '
        f'on table "{child.name}"',
        detail=f"Key ({', '.join(ref)})=({', '.join(_text(v) for v in values)}) "
               f'is still referenced from table "{child.name}".')


def _referencing_rows(s: SessionState, parent: TableDef, child: TableDef, fk: dict, keys: list,
                      w: RowWrites) -> pa.Table:
    """The child's live rows (its columns and row id) whose foreign key is one of the parent
    `keys`: one semi join over the child's hot ∪ cold view, this transaction's writes included."""
    cols, ref = child.names_of(fk["columns"]), parent.names_of(fk["ref_columns"])
    pk = parent.primary_key
    if len(pk) == 1:
        probe = pa.table({"__k0": keys})
    else:
        probe = pa.table({f"__k{j}": [k[pk.index(r)] for k in keys] for j, r in enumerate(ref)})
    own_writes_visible(s)
    s.engine.hot.settle()
    wanted = child.column_names + ([ROWID] if child.rowid else [])
    on = " AND ".join(f"c.{views.q(c)} = p.__k{j}" for j, c in enumerate(cols))
    s.cur.register("__fk_probe", probe)
    try:
        return s.cur.execute(f"SELECT {', '.join('c.' + views.q(c) for c in wanted)} FROM {views.full_view(child)} c "
                             f"SEMI JOIN __fk_probe p ON {on}").to_arrow_table()
    finally:
        s.cur.unregister("__fk_probe")


def _act(s: SessionState, parent: TableDef, child: TableDef, fk: dict, action: str, refs: pa.Table,
         moves: dict | None, w: RowWrites) -> None:
    """RESTRICT, CASCADE, SET NULL or SET DEFAULT on the child rows `refs` of removed keys."""
    if action == "r":
        _parent_violation(parent, child, fk, refs)
    w.shadow_cold(s, child)  # the versions superseded may be cold
    if action == "c" and moves is None:
        w.append(s, child, w.tombstones(s, child, refs), deleted=True)
        return
    cols = child.names_of(fk["columns"])
    schema = s.engine.visible_schema(child)
    if action == "c":  # ON UPDATE CASCADE: the new key's values
        ref = parent.names_of(fk["ref_columns"])
        pk = parent.primary_key
        olds = [tuple(r) for r in zip(*(refs.column(c).to_pylist() for c in cols))]
        by_ref = {}
        for old, new in moves.items():
            old_t, new_t = (old, new) if len(pk) > 1 else ((old,), (new,))
            by_ref[tuple(old_t[pk.index(r)] for r in ref)] = tuple(new_t[pk.index(r)] for r in ref)
        news = [by_ref[o] for o in olds]
        replaced = {c: pa.array([n[j] for n in news], schema.field(c).type) for j, c in enumerate(cols)}
    elif action == "n":
        for c in cols:
            if not child.column(c).nullable:
                raise NotNullViolation(f'null value in column "{c}" of relation "{child.name}" '
                                       "violates not-null constraint")
        replaced = {c: pa.nulls(refs.num_rows, schema.field(c).type) for c in cols}
    else:
        replaced = {c: pa.array([_default(s, child, c)] * refs.num_rows, schema.field(c).type) for c in cols}
    new = pa.table([replaced.get(f.name, refs.column(f.name)) for f in schema], schema=schema)
    if child.rowid:
        new = new.append_column(ROWID, refs.column(ROWID))
    old_keys, new_keys = key_list(child, refs), key_list(child, new)
    if old_keys != new_keys:  # the foreign key is part of the child's primary key
        refuse_repeats(child, new_keys)
        old_set = set(old_keys)
        live = live_keys(s, child, [k for k in new_keys if k not in old_set])
        if live:
            raise unique_violation(child, next(iter(live)))
        new_set = set(new_keys)
        gone = refs.filter(pa.array([k not in new_set for k in old_keys], pa.bool_()))
        w.append(s, child, w.tombstones(s, child, gone), deleted=True)
        note_key_update(s, child, old_keys, new_keys)
    w.append(s, child, new, deleted=False, keys=new_keys)


def _default(s: SessionState, t: TableDef, column: str):
    c = t.column(column)
    if c.default is None:
        if not c.nullable:
            raise NotNullViolation(f'null value in column "{column}" of relation "{t.name}" '
                                   "violates not-null constraint")
        return None
    return s.check_cur.execute(f"SELECT CAST({c.default} AS {c.type})").fetchone()[0]
