"""ALTER TABLE and COMMENT ON of a session: the actions applied to a copy of the table's
definition, checked against its rows in both tiers, then swapped in by one catalog commit
(EngineCore.alter_table). Nothing is rewritten: segments and hot batches written under an
older schema are read through the new one by stable column id, and compaction rewrites them.

Only widening type changes run (every stored value converts exactly, so old data is simply
read with a cast); anything else answers 0A000 naming the part.
"""
from __future__ import annotations

import copy
import re

import duckdb

from engine.catalog.tables import SYSTEM_COLUMNS, Column, TableDef, check_identifier
from engine.errors import (DependentObjectsStillExist, DuplicateColumn, DuplicateTable, FeatureNotSupported, InvalidTableDefinition,
                           NotNullViolation, SyntaxError_, UndefinedColumn, UndefinedObject, UndefinedTable, from_duckdb)
from engine.results import StatementResult
from engine.session import foreign_keys, transaction_ddl
from engine.session.ddl import begin_ddl, write_locked
from engine.session.state import SessionState
from engine.sql.alter import (AddColumn, AddForeignKey, AlterAction, AlterTable, CommentOn, DropColumn, DropConstraint,
                              RenameColumn, RenameTable, SetDefault, SetNotNull, SetType)
from engine.sql.statements import split_qualified
from engine.tiers import views

_VOLATILE = re.compile(r"\b(random|uuid|gen_random_uuid|nextval|setseed)\s*\(", re.I)
_INTEGERS = ["TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"]
_INTEGER_DIGITS = {"TINYINT": 3, "SMALLINT": 5, "INTEGER": 10, "BIGINT": 19, "HUGEINT": 39}
_DECIMAL = re.compile(r"^DECIMAL\((\d+),\s*(\d+)\)$")


def alter_table(s: SessionState, stmt: AlterTable, params: list) -> StatementResult:
    in_tx = begin_ddl(s, "ALTER TABLE")
    eng = s.engine
    ns, name = s.split_name(stmt.table)
    with eng.ddl_lock:
        old = eng.catalog.find(ns, name)
        if old is None:
            if stmt.if_exists:
                return StatementResult("ALTER TABLE", notices=(f'relation "{name}" does not exist, skipping',))
            raise UndefinedTable(f'relation "{name}" does not exist')
        eng.tiering.stop_table_job(old)
        with write_locked(s, in_tx):
            eng.hot.settle()
            new, notices = _altered(s, old, stmt.actions)
            if new is not None:
                if in_tx:
                    transaction_ddl.changing(s, old)
                eng.alter_table(old, new, durable=not in_tx)
        eng.tiering.policies.schema_changed(old.tid)
        if new is not None and not in_tx:  # in a transaction: after its COMMIT
            eng.tiering.publish_soon(new)
    return StatementResult("ALTER TABLE", notices=tuple(notices))


def _altered(s: SessionState, old: TableDef, actions: tuple[AlterAction, ...]) -> tuple[TableDef | None, list[str]]:
    """The definition after `actions` (None: nothing changes) and the notices to send."""
    t = copy.deepcopy(old)
    notices: list[str] = []
    layout = False  # whether data stored under the old schema reads differently now
    changed = False
    for a in actions:
        if isinstance(a, AddColumn):
            if t.column(a.name) is not None:
                if a.if_not_exists:
                    notices.append(f'column "{a.name}" of relation "{t.name}" already exists, skipping')
                    continue
                raise DuplicateColumn(f'column "{a.name}" of relation "{t.name}" already exists')
            _add_column(s, old, t, a)
            layout = True
        elif isinstance(a, DropColumn):
            c = t.column(a.name)
            if c is None:
                if a.if_exists:
                    notices.append(f'column "{a.name}" of relation "{t.name}" does not exist, skipping')
                    continue
                raise UndefinedColumn(f'column "{a.name}" of relation "{t.name}" does not exist')
            if c.name in t.primary_key:
                if a.cascade:
                    raise FeatureNotSupported(f'dropping primary-key column "{c.name}" is not supported by tierd: '
                                              "every table keeps its primary key")
                raise DependentObjectsStillExist(
                    f"cannot drop column {c.name} of table {t.name} because other objects depend on it",
                    detail=f"constraint {t.name}_pkey on table {t.name} depends on column {c.name}",
                    hint="Use DROP ... CASCADE to drop the dependent objects too.")
            t.columns.remove(c)
            t.indexes = [i for i in t.indexes if c.name not in i["columns"]]  # as in Postgres: dropped with it
            t.foreign_keys = [fk for fk in t.foreign_keys if c.id not in fk["columns"]]  # so are its foreign keys
            layout = True
        elif isinstance(a, RenameColumn):
            c = _column(t, a.old)
            if t.column(a.new) is not None:
                raise DuplicateColumn(f'column "{a.new}" of relation "{t.name}" already exists')
            _check_column_name(a.new)
            t.primary_key = [a.new if k == c.name else k for k in t.primary_key]
            for i in t.indexes:
                i["columns"] = [a.new if k == c.name else k for k in i["columns"]]
            c.name = a.new
            layout = True
        elif isinstance(a, RenameTable):
            check_identifier(a.new, "table")
            if s.engine.catalog.find(t.namespace, a.new) is not None:
                raise DuplicateTable(f'relation "{a.new}" already exists')
            if t.scope_dir is None and not t.is_stream:  # the data stays where it is
                storage = s.engine.storage_for(t)
                t.scope_dir = storage.scope_dir(t.namespace, t.name, "{userId}") if t.is_user else \
                    storage.scope_dir(t.namespace, t.name)
            t.name = a.new
        elif isinstance(a, SetDefault):
            c = _column(t, a.column)
            c.default = None if a.default is None else _probe(s, f"{views.q(c.name)} {c.type} DEFAULT {a.default}").default
        elif isinstance(a, SetNotNull):
            c = _column(t, a.column)
            if not a.not_null and c.name in t.primary_key:
                raise InvalidTableDefinition(f'column "{c.name}" is in a primary key')
            if a.not_null and c.nullable and _has_null(s, old, t, c):
                raise NotNullViolation(f'column "{c.name}" of relation "{t.name}" contains null values')
            c.nullable = c.name in t.primary_key or not a.not_null
        elif isinstance(a, AddForeignKey):
            fk = foreign_keys.declare(s, t, a.clause, foreign_keys.constraint_names(s, t.namespace))
            added = [c for c in t.columns if c.id in fk["columns"] and old.column(c.name) is None]
            if any(c.missing is not None for c in added):
                raise FeatureNotSupported("ALTER TABLE ... ADD COLUMN with a DEFAULT and REFERENCES is not supported "
                                          "by tierd", hint="Add the column, then the foreign key.")
            if not added:  # a new column is NULL in every row there: nothing to check
                foreign_keys.check_existing(s, t, fk)
            t.foreign_keys.append(fk)
        elif isinstance(a, DropConstraint):
            if not any(fk["name"] == a.name for fk in t.foreign_keys):
                if t.primary_key and a.name == f"{t.name}_pkey":
                    raise FeatureNotSupported(f'ALTER TABLE ... DROP CONSTRAINT "{a.name}" (the primary key) '
                                              "is not supported by tierd: every table keeps its primary key")
                if a.if_exists:
                    notices.append(f'constraint "{a.name}" of relation "{t.name}" does not exist, skipping')
                    continue
                raise UndefinedObject(f'constraint "{a.name}" of relation "{t.name}" does not exist')
            t.foreign_keys = [fk for fk in t.foreign_keys if fk["name"] != a.name]
        elif isinstance(a, SetType):
            c = _column(t, a.column)
            probed = _probe(s, f"{views.q(c.name)} {a.type}")
            target = probed.type
            if target == c.type:
                if probed.declared != c.declared:  # e.g. varchar(20) to varchar(40): the catalog's spelling
                    c.declared = probed.declared
                    changed = True
                continue
            if c.name in t.primary_key:
                raise FeatureNotSupported(f'ALTER COLUMN "{c.name}" TYPE: changing the type of a primary-key '
                                          "column is not supported by tierd")
            if a.using is not None and not _plain_using(a.using, c.name):
                raise FeatureNotSupported(f'ALTER COLUMN "{c.name}" TYPE ... USING an expression is not supported '
                                          "by tierd (only a cast of the column itself)")
            if not widens(c.type, target):
                raise FeatureNotSupported(
                    f'ALTER COLUMN "{c.name}" TYPE {a.type}: only widening type changes are supported by tierd '
                    f"({c.type} to {target} is not one)",
                    hint="Add a new column, copy the values with UPDATE, drop the old one.")
            c.type, c.declared = target, probed.declared
            layout = True
        changed = True
    if not changed:
        return None, notices
    t.revision = old.revision + 1
    if layout:
        t.schema_history = old.schema_history + [{
            "version": old.schema_version, "until_seq": s.engine.hot.seq,
            "names": {c.name: c.id for c in old.columns}}]
        t.schema_version = old.schema_version + 1
    return t, notices


def _column(t: TableDef, name: str) -> Column:
    c = t.column(name)
    if c is None:
        raise UndefinedColumn(f'column "{name}" of relation "{t.name}" does not exist')
    return c


def _check_column_name(name: str) -> None:
    if name.lower() in SYSTEM_COLUMNS:
        raise InvalidTableDefinition(f'column name "{name}" is reserved for a system column')


def _probe(s: SessionState, definition: str) -> Column:
    """DuckDB's reading of one column definition (type name, default text, NOT NULL)."""
    columns, _ = s.engine.probe_columns(definition)
    return columns[0]


def _add_column(s: SessionState, old: TableDef, t: TableDef, a: AddColumn) -> None:
    """`t`: the definition being changed; `old`: the one the DuckDB relations still have."""
    _check_column_name(a.name)
    c = _probe(s, a.definition)
    c.id = t.next_column_id
    if c.default is not None:
        if _VOLATILE.search(c.default):
            raise FeatureNotSupported("ALTER TABLE ... ADD COLUMN with a volatile DEFAULT is not supported by tierd "
                                      "(existing rows would each need their own value)",
                                      hint="Add the column without a default, then UPDATE the rows.")
        cur = s.engine.db.cursor()
        try:  # evaluated once, as Postgres does: existing rows all get this value
            text = cur.execute(f"SELECT CAST(CAST({c.default} AS {c.type}) AS VARCHAR)").fetchone()[0]
        except duckdb.Error as exc:
            raise from_duckdb(exc) from None
        finally:
            cur.close()
        c.missing = None if text is None else f"CAST({views.sql_str(text)} AS {c.type})"
    if not c.nullable and c.missing is None and _has_rows(s, old):
        raise NotNullViolation(f'column "{c.name}" of relation "{t.name}" contains null values')
    t.columns.append(c)


def _has_rows(s: SessionState, t: TableDef) -> bool:
    cur = s.engine.db.cursor()
    try:
        return cur.execute(f"SELECT 1 FROM ({views.live_rows_sql(t)}) LIMIT 1").fetchone() is not None
    finally:
        cur.close()


def _has_null(s: SessionState, old: TableDef, t: TableDef, c: Column) -> bool:
    """Whether any live row (either tier, every user) has NULL in `c`; `old`: the relations as
    they are now, in which the column may still have an earlier name."""
    stored = next((o.name for o in old.columns if o.id == c.id), None)
    if stored is None:  # added by this statement: its missing value
        return c.missing is None and _has_rows(s, old)
    cur = s.engine.db.cursor()
    try:
        return cur.execute(f"SELECT 1 FROM ({views.live_rows_sql(old)}) WHERE {views.q(stored)} IS NULL "
                           "LIMIT 1").fetchone() is not None
    finally:
        cur.close()


def _plain_using(using: str, column: str) -> bool:
    """USING that is the column itself, or a cast of it (what tools emit)."""
    text = re.sub(r"\s+", "", using).lower()
    name = re.escape(column.lower())
    return bool(re.fullmatch(rf'"?{name}"?(::.+)?|cast\("?{name}"?as.+\)', text))


def widens(old: str, new: str) -> bool:
    """Whether every value of DuckDB type `old` converts exactly to `new`."""
    old, new = old.upper().strip(), new.upper().strip()
    if old == new:
        return True
    if old.endswith("[]") and new.endswith("[]"):
        return widens(old[:-2], new[:-2])
    if old in _INTEGERS:
        if new in _INTEGERS:
            return _INTEGERS.index(new) >= _INTEGERS.index(old)
        if new == "DOUBLE":
            return old in ("TINYINT", "SMALLINT", "INTEGER")
        if new == "FLOAT":
            return old in ("TINYINT", "SMALLINT")
        d = _DECIMAL.match(new)
        return bool(d) and int(d.group(1)) - int(d.group(2)) >= _INTEGER_DIGITS[old]
    if old == "FLOAT":
        return new == "DOUBLE"
    d_old, d_new = _DECIMAL.match(old), _DECIMAL.match(new)
    if d_old and d_new:
        p, sc, p2, sc2 = (int(x) for x in (*d_old.groups(), *d_new.groups()))
        return sc2 >= sc and p2 - sc2 >= p - sc
    if old.startswith("VARCHAR") and new.startswith("VARCHAR"):
        return True
    if old == "DATE":
        return new == "TIMESTAMP"
    return False


# ---------------------------------------------------------------------- COMMENT ON
def comment_on(s: SessionState, stmt: CommentOn, params: list) -> StatementResult:
    """COMMENT ON TABLE / COLUMN: kept in the table's catalog record (one durable put)."""
    in_tx = begin_ddl(s, "COMMENT")
    eng = s.engine
    parts = [p for p in re.findall(r'"(?:[^"]|"")+"|[^.\s]+', stmt.target)]
    if stmt.kind == "COLUMN":
        if len(parts) < 2:
            raise SyntaxError_("column name must be qualified")
        table_ref, column = ".".join(parts[:-1]), split_qualified(parts[-1], "")[1]
    else:
        table_ref, column = ".".join(parts), None
    ns, name = s.split_name(table_ref)
    with eng.ddl_lock:
        t = eng.catalog.find(ns, name)
        if t is None:
            raise UndefinedTable(f'relation "{name}" does not exist')
        new = copy.deepcopy(t)
        if column is None:
            new.comment = stmt.text
        else:
            _column(new, column).comment = stmt.text
        if in_tx:
            transaction_ddl.changing(s, t)
        eng.catalog.replace_table(t, new, durable=not in_tx)
    return StatementResult("COMMENT")
