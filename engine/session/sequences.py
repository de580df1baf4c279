"""CREATE / ALTER / DROP SEQUENCE, and the sequences serial and identity columns own.

Sequence DDL is not transactional (as every tierd DDL): it ends an implicit transaction.
"""
from __future__ import annotations

import copy
import re

from engine.catalog.sequences import SequenceDef, apply_options
from engine.catalog.tables import TableDef, check_identifier
from engine.errors import (DependentObjectsStillExist, DuplicateTable, InvalidParameterValue, UndefinedColumn,
                           UndefinedTable)
from engine.results import StatementResult
from engine.session.transactions import begin_ddl
from engine.session.state import SessionState
from engine.sql.sequence_ddl import AlterSequence, AutoColumn, CreateSequence, DropSequence, sequence_name


def _check_owner(s: SessionState, ns: str, owned_by: list[str] | bool | None) -> None:
    if not owned_by:
        return
    parts = list(owned_by)
    if len(parts) == 3:
        if parts[0] != ns:
            raise DuplicateTable("sequence must be in same schema as table it is linked to")
        parts = parts[1:]
    t = s.engine.catalog.find(ns, parts[0])
    if t is None:
        raise UndefinedTable(f'relation "{parts[0]}" does not exist')
    if parts[1] not in t.column_names:
        raise UndefinedColumn(f'column "{parts[1]}" of relation "{parts[0]}" does not exist')
    owned_by[:] = parts


def _name_taken(s: SessionState, ns: str, name: str) -> bool:
    return s.engine.catalog.find(ns, name) is not None or s.engine.sequences.find(ns, name) is not None


def create_sequence(s: SessionState, stmt: CreateSequence, params: list) -> StatementResult:
    begin_ddl(s, stmt.action, at_once_in_transaction=True)
    eng = s.engine
    ns, name = sequence_name(stmt.name, s.split_name("x")[0])
    check_identifier(name, "sequence")
    with eng.ddl_lock:
        eng.catalog.require_namespace(ns)
        if _name_taken(s, ns, name):
            if stmt.if_not_exists:
                return StatementResult("CREATE SEQUENCE")
            raise DuplicateTable(f'relation "{name}" already exists')
        options = copy.deepcopy(stmt.options)
        _check_owner(s, ns, options.owned_by)
        d = SequenceDef(sid=0, namespace=ns, name=name)
        apply_options(d, options, creating=True)
        d.sid = eng.catalog.allocate_tid()
        eng.sequences.add(d)
    return StatementResult("CREATE SEQUENCE")


def alter_sequence(s: SessionState, stmt: AlterSequence, params: list) -> StatementResult:
    begin_ddl(s, stmt.action, at_once_in_transaction=True)
    eng = s.engine
    ns, name = sequence_name(stmt.name, s.split_name("x")[0])
    with eng.ddl_lock:
        d = eng.sequences.find(ns, name)
        if d is None:
            if stmt.if_exists:
                return StatementResult("ALTER SEQUENCE")
            raise UndefinedTable(f'relation "{name}" does not exist')
        options = copy.deepcopy(stmt.options)
        _check_owner(s, ns, options.owned_by)
        changed = copy.deepcopy(d)
        apply_options(changed, options, creating=False)
        restart = None
        if options.restart is not None:
            restart = changed.start if options.restart is True else options.restart
            if restart < changed.min_value:
                raise InvalidParameterValue(
                    f"RESTART value ({restart}) cannot be less than MINVALUE ({changed.min_value})")
            if restart > changed.max_value:
                raise InvalidParameterValue(
                    f"RESTART value ({restart}) cannot be greater than MAXVALUE ({changed.max_value})")
        for k, v in vars(changed).items():
            setattr(d, k, v)
        eng.sequences.save(d, restart)
    return StatementResult("ALTER SEQUENCE")


def _default_uses(t: TableDef, d: SequenceDef) -> bool:
    pattern = re.compile(r"nextval\('(?:" + re.escape(d.namespace) + r"\.)?" + re.escape(d.name) + r"'", re.I)
    return any(c.default and pattern.search(c.default) for c in t.columns)


def drop_sequence(s: SessionState, stmt: DropSequence, params: list) -> StatementResult:
    begin_ddl(s, stmt.action, at_once_in_transaction=True)
    eng = s.engine
    with eng.ddl_lock:
        found = []
        for written in stmt.names:
            ns, name = sequence_name(written, s.split_name("x")[0])
            d = eng.sequences.find(ns, name)
            if d is None:
                if stmt.if_exists:
                    continue
                raise UndefinedTable(f'sequence "{name}" does not exist')
            users = [t for t in eng.catalog.tables_in(ns) if _default_uses(t, d)]
            if users:
                t = users[0]
                col = next(c.name for c in t.columns if c.default and d.name in c.default)
                raise DependentObjectsStillExist(
                    f"cannot drop sequence {d.name} because other objects depend on it",
                    detail=f"default value for column {col} of table {t.name} depends on sequence {d.name}",
                    hint="DROP TABLE drops the sequences its columns own; tierd cannot drop a "
                         "column default with CASCADE yet.")
            found.append(d)
        for d in found:
            eng.sequences.drop(d)
    return StatementResult("DROP SEQUENCE")


def create_owned(s: SessionState, ns: str, auto: list[AutoColumn]) -> list[SequenceDef]:
    """The sequences of a new table's serial and identity columns (before the table itself:
    a crash in between leaves an unused sequence, never a default naming a missing one)."""
    made = []
    for a in auto:
        if _name_taken(s, ns, a.sequence):
            raise DuplicateTable(f'relation "{a.sequence}" already exists')
        d = SequenceDef(sid=0, namespace=ns, name=a.sequence, identity=a.identity)
        apply_options(d, a.options, creating=True)
        made.append(d)
    for d in made:
        d.sid = s.engine.catalog.allocate_tid()
        s.engine.sequences.add(d)
    return made


def drop_owned(s: SessionState, t: TableDef) -> None:
    """DROP TABLE drops the sequences its columns own."""
    for d in s.engine.sequences.owned_by(t.namespace, t.name):
        s.engine.sequences.drop(d)
