"""CREATE INDEX / DROP INDEX: what ORMs and migration tools emit, recorded in the catalog.

An index is part of its table's catalog record (one durable put, or the COMMIT of the
transaction it is in), shown in pg_class (relkind 'i'), pg_index and pg_indexes and by psql
`\\d`. It speeds nothing up: DuckDB scans, and the primary key has its own lookup path. A
UNIQUE index is accepted on exactly the primary-key columns (the one uniqueness tierd
enforces); on other columns it is refused (0A000), never accepted without being enforced.
"""
from __future__ import annotations

import copy
import re

from engine.catalog.tables import TableDef
from engine.errors import DependentObjectsStillExist, DuplicateTable, FeatureNotSupported, UndefinedColumn, \
    UndefinedObject, UndefinedTable
from engine.results import StatementResult
from engine.session import transaction_ddl
from engine.session.ddl import begin_ddl
from engine.session.state import SessionState
from engine.sql.index_ddl import CreateIndex, DropIndex, name as ident

NAME_MAX = 63  # Postgres's NAMEDATALEN - 1


def pkey_name(t: TableDef) -> str | None:
    return f"{t.name}_pkey" if t.primary_key else None


def relation_names(s: SessionState, namespace: str) -> set[str]:
    """Names taken in a namespace: tables, their indexes (the primary key's too), sequences."""
    names: set[str] = set()
    for t in s.engine.catalog.tables_in(namespace):
        names.add(t.name)
        names.update(i["name"] for i in t.indexes)
        if t.primary_key:
            names.add(pkey_name(t))
    names.update(d.name for d in s.engine.sequences.defs.values() if d.namespace == namespace)
    return names


def generated_name(table: str, columns: tuple[str, ...], taken: set[str]) -> str:
    """Postgres's name for an unnamed index: <table>_<col>[_<col>...]_idx, made unique."""
    base = f"{table}_{'_'.join(columns)}_idx"[:NAME_MAX]
    candidate, n = base, 0
    while candidate in taken:
        n += 1
        candidate = f"{base[:NAME_MAX - len(str(n))]}{n}"
    return candidate


def create_index(s: SessionState, stmt: CreateIndex, params: list) -> StatementResult:
    in_tx = begin_ddl(s, "CREATE INDEX")
    eng = s.engine
    ns, table = s.split_name(stmt.table)
    with eng.ddl_lock:
        t = eng.catalog.find(ns, table)
        if t is None:
            raise UndefinedTable(f'relation "{stmt.table}" does not exist')
        for c in stmt.columns:
            if t.column(c) is None:
                raise UndefinedColumn(f'column "{c}" does not exist')
        taken = relation_names(s, ns)
        name = stmt.name or generated_name(t.name, stmt.columns, taken)
        if name in taken:
            if stmt.if_not_exists:
                return StatementResult("CREATE INDEX", notices=(f'relation "{name}" already exists, skipping',))
            raise DuplicateTable(f'relation "{name}" already exists')
        if stmt.unique and list(stmt.columns) != list(t.primary_key):
            raise FeatureNotSupported(
                f'CREATE UNIQUE INDEX "{name}" on ({", ".join(stmt.columns)}) is not supported by tierd: '
                f"uniqueness is enforced on the primary key only",
                hint=f"Create it without UNIQUE, or make ({', '.join(stmt.columns)}) the table's primary key.")
        new = copy.deepcopy(t)
        ordinal = max((i.get("ordinal", 0) for i in t.indexes), default=0) + 1
        new.indexes.append({"name": name, "columns": list(stmt.columns), "unique": stmt.unique,
                            "ordinal": ordinal})
        if in_tx:
            transaction_ddl.changing(s, t)
        eng.catalog.replace_table(t, new, durable=not in_tx)
    return StatementResult("CREATE INDEX")


def drop_index(s: SessionState, stmt: DropIndex, params: list) -> StatementResult:
    """DROP INDEX [IF EXISTS] a [, b ...]: every named index must exist (or IF EXISTS skips it)."""
    in_tx = begin_ddl(s, "DROP INDEX")
    eng = s.engine
    notices: list[str] = []
    with eng.ddl_lock:
        for written in stmt.names:
            found = _find_index(s, written)
            if found is None:
                name = ident(re.findall(r'"(?:[^"]|"")+"|[^."\s]+', written)[-1])
                if stmt.if_exists:
                    notices.append(f'index "{name}" does not exist, skipping')
                    continue
                raise UndefinedObject(f'index "{name}" does not exist')
            t, name = found
            if name == pkey_name(t):
                raise DependentObjectsStillExist(
                    f'cannot drop index {name} because constraint {name} on table {t.name} requires it',
                    hint=f"You can drop constraint {name} on table {t.name} instead.")
            new = copy.deepcopy(t)
            new.indexes = [i for i in t.indexes if i["name"] != name]
            if in_tx:
                transaction_ddl.changing(s, t)
            eng.catalog.replace_table(t, new, durable=not in_tx)
    return StatementResult("DROP INDEX", notices=tuple(notices))


def _find_index(s: SessionState, written: str) -> tuple[TableDef, str] | None:
    """(table, index name) of an index named as written: qualified, or found on the search path."""
    parts = [ident(p) for p in re.findall(r'"(?:[^"]|"")+"|[^."\s]+', written)]
    name = parts[-1]
    namespaces = parts[:1] if len(parts) > 1 else list(s.schemas)
    for namespace in namespaces:
        for t in s.engine.catalog.tables_in(namespace):
            if name == pkey_name(t) or any(i["name"] == name for i in t.indexes):
                return t, name
    return None
