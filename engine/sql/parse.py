"""The one entry point from a statement's text to what it is: `parse(sql)` returns a typed
statement, and the session's dispatch table (engine/session/dispatch.py) runs the handler of
its type.

Statements tierd runs itself (transactions, SET/SHOW, DDL, roles, storages, jobs) are parsed
here in full; statements DuckDB evaluates (queries, the bodies of INSERT/UPDATE/DELETE) stay
text, planned later by their handler (engine/sql/dml.py plans are cached per text).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from engine.catalog.tables import DEFAULT_NAMESPACE
from engine.errors import FeatureNotSupported, SyntaxError_
from engine.sql.split import leading_words
from engine.sql.statements import (AlterRole, AlterStorage, CheckStorage, CreateNamespace, CreateRole, CreateStorage, CreateTable,
                                   DropNamespace, DropRole, DropStorage, DropTable, Grant, JobCommand, ShowStorages,
                                   StorageJob, parse_create_table, parse_grant, parse_job_command,
                                   parse_namespace_or_drop, parse_role_command, parse_storage_definition,
                                   parse_storage_job, unquote)

READ_STATEMENTS = {"SELECT", "WITH", "VALUES", "TABLE", "EXPLAIN", "SHOW", "DESCRIBE", "SUMMARIZE", "FROM"}
WRITE_STATEMENTS = {"INSERT", "UPDATE", "DELETE"}

# Postgres commands tierd does not run (yet): 0A000 rather than a syntax error.
KNOWN_COMMANDS = {
    "ALTER", "ANALYZE", "CALL", "CHECKPOINT", "CLOSE", "CLUSTER", "COMMENT", "COPY", "DEALLOCATE",
    "DECLARE", "DISCARD", "DO", "EXECUTE", "FETCH", "GRANT", "IMPORT", "LISTEN", "LOAD", "LOCK",
    "MERGE", "MOVE", "NOTIFY", "PREPARE", "REASSIGN", "REFRESH", "REINDEX", "REVOKE",
    "SECURITY", "TRUNCATE", "UNLISTEN", "VACUUM", "ATTACH", "DETACH", "INSTALL",
    "PRAGMA", "EXPORT", "USE", "RETRY", "KILL",
}


@dataclass(frozen=True)
class Empty:
    pass


@dataclass(frozen=True)
class Begin:
    pass


@dataclass(frozen=True)
class Commit:
    pass


@dataclass(frozen=True)
class Rollback:
    pass


@dataclass(frozen=True)
class Savepoint:
    """SAVEPOINT name, RELEASE [SAVEPOINT] name, ROLLBACK TO [SAVEPOINT] name."""
    verb: str  # "SAVEPOINT" | "RELEASE" | "ROLLBACK"
    name: str


@dataclass(frozen=True)
class Query:
    """A read DuckDB answers (SELECT, WITH, VALUES, SHOW of a name that is no setting ...)."""
    sql: str


@dataclass(frozen=True)
class Write:
    """INSERT, UPDATE or DELETE: planned by engine/sql/dml.py."""
    sql: str


@dataclass(frozen=True)
class Show:
    """SHOW name: a session setting, else DuckDB's SHOW (`sql`)."""
    name: str
    sql: str


@dataclass(frozen=True)
class SetSetting:
    name: str
    value: str


@dataclass(frozen=True)
class ResetSetting:
    name: str  # "all": every setting


@dataclass(frozen=True)
class AlterTableOwner:
    table: str  # as written
    role: str


@dataclass(frozen=True)
class CreateTableStatement:
    table: CreateTable
    action: str = "CREATE TABLE"  # as written, for messages


Statement = (Empty | Begin | Commit | Rollback | Savepoint | Query | Write | Show | SetSetting | ResetSetting
             | CreateTableStatement | CreateNamespace | DropNamespace | DropTable | AlterTableOwner
             | CreateRole | AlterRole | DropRole | Grant | CreateStorage | AlterStorage | DropStorage
             | ShowStorages | CheckStorage | StorageJob | JobCommand)

_SAVEPOINT = re.compile(r"^\s*(SAVEPOINT|RELEASE(?:\s+SAVEPOINT)?|ROLLBACK\s+TO(?:\s+SAVEPOINT)?)\s+"
                        r"(\"[^\"]+\"|\w+)\s*;?\s*$", re.I)
_SET = re.compile(r"^\s*SET\s+(?:SESSION\s+|LOCAL\s+)?([A-Za-z_.]+)\s*(?:=|\s+TO\s+)\s*(.+?)\s*;?\s*$", re.I | re.S)
_SET_TIME_ZONE = re.compile(r"^\s*SET\s+(?:SESSION\s+)?TIME\s+ZONE\s+(.+?)\s*;?\s*$", re.I | re.S)
_ALTER_OWNER = re.compile(r"^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(.+?)\s+OWNER\s+TO\s+(\S+?)\s*;?\s*$", re.I | re.S)
# SHOW's multi-word spellings.
_SHOW_ALIASES = {"transaction isolation level": "transaction_isolation", "time zone": "timezone"}


def parse(sql: str, words: list[str] | None = None) -> Statement:
    """What `sql` (one statement) is; `words`: its first three words upper-cased, if known."""
    words = words or leading_words(sql, 3) or [""]
    first, second = words[0], (words[1] if len(words) > 1 else "")
    if first == "":
        return Empty()
    if first in ("BEGIN", "START"):
        return Begin()
    if first in ("COMMIT", "END"):
        return Commit()
    if first in ("SAVEPOINT", "RELEASE") or (first == "ROLLBACK" and second == "TO"):
        return _savepoint(sql)
    if first in ("ROLLBACK", "ABORT"):
        return Rollback()
    if first in WRITE_STATEMENTS:
        return Write(sql)
    if first in ("CREATE", "DROP", "ALTER") and second in ("USER", "ROLE") and words[2:3] != ["TABLE"]:
        return parse_role_command(sql)  # CREATE USER TABLE is a table
    if first in ("GRANT", "REVOKE"):
        return parse_grant(sql)
    if first == "ALTER" and second == "TABLE":
        return _alter_table(sql)
    if (first in ("CREATE", "DROP", "ALTER") and second == "STORAGE") or (first == "SHOW" and second == "STORAGES") \
            or (first == "STORAGE" and second == "CHECK"):
        stmt = parse_storage_definition(sql)
        if stmt is None:
            raise SyntaxError_("syntax error in storage command")
        return stmt
    if first in ("SET", "RESET"):
        return _set(sql, words)
    if first == "SHOW":
        name = re.sub(r"\s+", " ", re.sub(r"^\s*SHOW\s+|\s*;?\s*$", "", sql, flags=re.I)).strip('"').lower()
        return Show(_SHOW_ALIASES.get(name, name), sql)
    if first in READ_STATEMENTS:
        return Query(sql)
    if first == "STORAGE":
        stmt = parse_storage_job(sql)
        if stmt is None:
            raise SyntaxError_(
                "unknown STORAGE command; expected STORAGE FLUSH|COMPACT|PUBLISH TABLE ns.t [WAIT] "
                "or STORAGE FLUSH|COMPACT|PUBLISH ALL [IN ns] [WAIT]")
        return stmt
    if first in ("RETRY", "KILL") and second == "JOB":
        stmt = parse_job_command(sql)
        if stmt is None:
            raise SyntaxError_("syntax error: expected RETRY JOB 'id' or KILL JOB 'id'")
        return stmt
    if first == "CREATE" and "TABLE" in words[1:3]:
        return CreateTableStatement(parse_create_table(sql, DEFAULT_NAMESPACE), " ".join(words[:2]))
    if first in ("CREATE", "DROP"):
        stmt = parse_namespace_or_drop(sql)
        if stmt is None:
            raise FeatureNotSupported(f'statement "{" ".join(words[:2])}" is not supported by tierd')
        return dataclasses.replace(stmt, action=" ".join(words[:2]))
    if first in KNOWN_COMMANDS:
        raise FeatureNotSupported(f'statement "{first}" is not supported by tierd')
    raise SyntaxError_(f'syntax error at or near "{sql.split()[0]}"')


def _savepoint(sql: str) -> Savepoint:
    m = _SAVEPOINT.match(sql)
    if not m:
        raise SyntaxError_("syntax error in savepoint statement")
    name = unquote(m.group(2)) if m.group(2).startswith('"') else m.group(2).lower()
    return Savepoint(m.group(1).split()[0].upper(), name)


def _set(sql: str, words: list[str]) -> SetSetting | ResetSetting:
    if words[0] == "RESET":
        return ResetSetting(words[1].lower() if len(words) > 1 else "")
    tz = _SET_TIME_ZONE.match(sql)
    if tz:
        return SetSetting("timezone", tz.group(1).strip("'\""))
    m = _SET.match(sql)
    if not m:
        raise FeatureNotSupported("unsupported SET statement")
    value = m.group(2).strip()
    if value.startswith("'") and value.endswith("'"):
        value = value[1:-1]
    return SetSetting(m.group(1).lower(), value)


def _alter_table(sql: str) -> AlterTableOwner:
    m = _ALTER_OWNER.match(sql)
    if not m:
        raise FeatureNotSupported("ALTER TABLE is not supported by tierd except ALTER TABLE t OWNER TO role")
    return AlterTableOwner(m.group(1), unquote(m.group(2)))
