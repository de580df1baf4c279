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
from engine.errors import FeatureNotSupported, ObjectNotInPrerequisiteState, SyntaxError_
from engine.sql.alter import AlterTable, CommentOn, parse_alter_table, parse_comment
from engine.sql.index_ddl import parse_create_index, parse_drop_index
from engine.sql.sequence_ddl import AlterSequence, CreateSequence, DropSequence, parse_sequence_command
from engine.sql.split import leading_words
from engine.sql.table_commands import (AddPrimaryKey, Maintenance, Truncate, is_add_primary_key,
                                       parse_add_primary_key, parse_maintenance, parse_truncate)
from engine.sql.statements import (AlterRole, AlterStorage, CheckStorage, CreateNamespace, CreateRole, CreateStorage, CreateTable,
                                   DropNamespace, DropRole, DropStorage, DropTable, Grant, JobCommand, ShowStorages,
                                   StorageJob, parse_create_table, parse_grant, parse_job_command,
                                   parse_namespace_or_drop, parse_role_command, parse_storage_definition,
                                   parse_storage_job, unquote)

READ_STATEMENTS = {"SELECT", "WITH", "VALUES", "TABLE", "EXPLAIN", "SHOW", "DESCRIBE", "SUMMARIZE", "FROM"}
WRITE_STATEMENTS = {"INSERT", "UPDATE", "DELETE", "MERGE"}

# Postgres commands tierd does not run (yet): 0A000 rather than a syntax error.
KNOWN_COMMANDS = {
    "ALTER", "ANALYZE", "CALL", "CHECKPOINT", "CLUSTER", "COMMENT", "COPY", "DEALLOCATE",
    "DO", "EXECUTE", "GRANT", "IMPORT", "LOAD", "LOCK",
    "PREPARE", "REASSIGN", "REFRESH", "REINDEX", "REVOKE",
    "SECURITY", "TRUNCATE", "VACUUM", "ATTACH", "DETACH", "INSTALL",
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
    """INSERT, UPDATE, DELETE or MERGE: planned by engine/sql/dml.py."""
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
    local: bool = False  # SET LOCAL: until the end of the transaction


@dataclass(frozen=True)
class ResetSetting:
    name: str  # "all": every setting


@dataclass(frozen=True)
class Listen:
    channel: str


@dataclass(frozen=True)
class Unlisten:
    channel: str | None  # None: UNLISTEN *


@dataclass(frozen=True)
class Notify:
    channel: str
    payload: str


@dataclass(frozen=True)
class DeclareCursor:
    name: str
    query: str
    hold: bool
    binary: bool
    text: str = ""  # the DECLARE statement as sent (pg_cursors.statement)


@dataclass(frozen=True)
class FetchCursor:
    """FETCH or MOVE (`move`): `count` rows forward (None: ALL)."""
    name: str
    count: int | None
    move: bool


@dataclass(frozen=True)
class CloseCursor:
    name: str | None  # None: CLOSE ALL


@dataclass(frozen=True)
class Discard:
    what: str  # ALL, PLANS, SEQUENCES or TEMP (TEMPORARY)


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
             | ShowStorages | CheckStorage | StorageJob | JobCommand | Listen | Unlisten | Notify | DeclareCursor
             | FetchCursor | CloseCursor | CreateSequence | AlterSequence | DropSequence | Truncate | AddPrimaryKey
             | Maintenance | AlterTable | CommentOn)

_SAVEPOINT = re.compile(r"^\s*(SAVEPOINT|RELEASE(?:\s+SAVEPOINT)?|ROLLBACK\s+TO(?:\s+SAVEPOINT)?)\s+"
                        r"(\"[^\"]+\"|\w+)\s*;?\s*$", re.I)
_SET = re.compile(r"^\s*SET\s+(SESSION\s+|LOCAL\s+)?([A-Za-z_.]+)\s*(?:=|\s+TO\s+)\s*(.+?)\s*;?\s*$", re.I | re.S)
_SET_TIME_ZONE = re.compile(r"^\s*SET\s+(SESSION\s+|LOCAL\s+)?TIME\s+ZONE\s+(.+?)\s*;?\s*$", re.I | re.S)
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
    if first in ("CREATE", "DROP", "ALTER") and "SEQUENCE" in words[1:3]:
        return dataclasses.replace(parse_sequence_command(sql), action=" ".join(words[:2]))
    if first == "ALTER" and second == "TABLE" and is_add_primary_key(sql):
        return parse_add_primary_key(sql)
    if first == "ALTER" and second == "TABLE":
        return _alter_table(sql)
    if first == "TRUNCATE":
        return parse_truncate(sql)
    if first in ("VACUUM", "ANALYZE", "ANALYSE", "CHECKPOINT"):
        return parse_maintenance(sql)
    if first == "COMMENT":
        return parse_comment(sql)
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
    if first == "CREATE" and (second == "INDEX" or words[1:3] == ["UNIQUE", "INDEX"]):
        return parse_create_index(sql)
    if first == "DROP" and second == "INDEX":
        return parse_drop_index(sql)
    if first == "CREATE" and "TABLE" in words[1:3]:
        # unqualified: namespace "", the session's creation namespace (its search path)
        return CreateTableStatement(parse_create_table(sql, ""), " ".join(words[:2]))
    if first in ("CREATE", "DROP"):
        stmt = parse_namespace_or_drop(sql)
        if stmt is None:
            raise FeatureNotSupported(f'statement "{" ".join(words[:2])}" is not supported by tierd')
        return dataclasses.replace(stmt, action=" ".join(words[:2]))
    if first in ("LISTEN", "UNLISTEN", "NOTIFY"):
        return _notification_command(sql, first)
    if first == "DECLARE":
        return _declare(sql)
    if first in ("FETCH", "MOVE"):
        return _fetch(sql, first == "MOVE")
    if first == "CLOSE":
        return _close(sql)
    if first == "DISCARD":
        return _discard(sql)
    if first in KNOWN_COMMANDS:
        raise FeatureNotSupported(f'statement "{first}" is not supported by tierd')
    err = SyntaxError_(f'syntax error at or near "{sql.split()[0]}"')
    err.position = len(sql) - len(sql.lstrip()) + 1
    raise err


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
        return SetSetting("timezone", tz.group(2).strip("'\""), _is_local(tz.group(1)))
    m = _SET.match(sql)
    if not m:
        raise FeatureNotSupported("unsupported SET statement")
    value = m.group(3).strip()
    if value.startswith("'") and value.endswith("'"):
        value = value[1:-1]
    return SetSetting(m.group(2).lower(), value, _is_local(m.group(1)))


def _is_local(scope: str | None) -> bool:
    return bool(scope) and scope.strip().upper() == "LOCAL"


def _alter_table(sql: str) -> AlterTableOwner | AlterTable:
    m = _ALTER_OWNER.match(sql)
    if m:
        return AlterTableOwner(m.group(1), unquote(m.group(2)))
    return parse_alter_table(sql)


_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_LISTEN = re.compile(rf"^\s*(LISTEN|UNLISTEN)\s+(\*|{_IDENT})\s*;?\s*$", re.I | re.S)
_NOTIFY = re.compile(rf"^\s*NOTIFY\s+({_IDENT})\s*(?:,\s*(E?)'((?:[^']|'')*)')?\s*;?\s*$", re.I | re.S)
_DECLARE = re.compile(rf"^\s*DECLARE\s+({_IDENT})\s+((?:\w+\s+)*?)CURSOR\s+((?:WITH|WITHOUT)\s+HOLD\s+)?FOR\s+(.+?)\s*;?\s*$",
                      re.I | re.S)
_FETCH = re.compile(rf"^\s*(?:FETCH|MOVE)\s+(?:(.*?)\s+)??(?:(?:FROM|IN)\s+)?({_IDENT})\s*;?\s*$", re.I | re.S)
_CLOSE = re.compile(rf"^\s*CLOSE\s+(ALL|{_IDENT})\s*;?\s*$", re.I | re.S)


def identifier(text: str) -> str:
    """A name as written: quoted keeps its case, unquoted folds to lower case."""
    return unquote(text) if text.startswith('"') else text.lower()


def _notification_command(sql: str, first: str) -> Listen | Unlisten | Notify:
    if first == "NOTIFY":
        m = _NOTIFY.match(sql)
        if not m:
            raise SyntaxError_("syntax error in NOTIFY: expected NOTIFY channel [, 'payload']")
        payload = (m.group(3) or "").replace("''", "'")
        if m.group(2):
            payload = payload.encode("latin-1", "backslashreplace").decode("unicode_escape")
        return Notify(identifier(m.group(1)), payload)
    m = _LISTEN.match(sql)
    if not m or (first == "LISTEN" and m.group(2) == "*"):
        raise SyntaxError_(f"syntax error in {first}: expected {first} channel")
    if first == "LISTEN":
        return Listen(identifier(m.group(2)))
    return Unlisten(None if m.group(2) == "*" else identifier(m.group(2)))


def _declare(sql: str) -> DeclareCursor:
    m = _DECLARE.match(sql)
    if not m:
        raise SyntaxError_("syntax error in DECLARE: expected DECLARE name [BINARY] [INSENSITIVE] [NO SCROLL] "
                           "CURSOR [WITH HOLD | WITHOUT HOLD] FOR query")
    options = [w.upper() for w in m.group(2).split()]
    binary = "BINARY" in options
    if "SCROLL" in options and "NO" not in options:
        raise FeatureNotSupported("SCROLL cursors are not supported by tierd: cursors scan forward only",
                                  hint="Declare the cursor with NO SCROLL.")
    if any(w not in ("BINARY", "INSENSITIVE", "ASENSITIVE", "NO", "SCROLL") for w in options):
        raise SyntaxError_(f'syntax error at or near "{m.group(2).split()[0]}"')
    hold = bool(m.group(3)) and m.group(3).upper().startswith("WITH ")
    query = m.group(4)
    if leading_words(query, 1)[:1] not in (["SELECT"], ["WITH"], ["VALUES"], ["TABLE"], ["FROM"]):
        raise SyntaxError_("DECLARE CURSOR needs a SELECT or VALUES query")
    return DeclareCursor(identifier(m.group(1)), query, hold, binary, re.sub(r"\s*;?\s*$", "", sql.strip()))


def _fetch(sql: str, move: bool) -> FetchCursor:
    m = _FETCH.match(sql)
    verb = "MOVE" if move else "FETCH"
    if not m:
        raise SyntaxError_(f"syntax error in {verb}")
    words = (m.group(1) or "").upper().split()
    if words[:1] == ["FORWARD"]:
        words = words[1:]
        count: int | None = 1 if not words else None
    else:
        count = 1
    if words in ([], ["NEXT"]):
        pass
    elif words == ["ALL"]:
        count = None
    elif len(words) == 1 and re.fullmatch(r"\+?\d+", words[0]):
        count = int(words[0])
    elif words and (words[0] in ("PRIOR", "FIRST", "LAST", "ABSOLUTE", "RELATIVE", "BACKWARD")
                    or words[0].startswith("-")):
        raise ObjectNotInPrerequisiteState("cursor can only scan forward",
                                           hint="Declare it with SCROLL option to enable backward scan.")
    else:
        raise SyntaxError_(f'syntax error at or near "{words[0]}"')
    return FetchCursor(identifier(m.group(2)), count, move)


_DISCARD = re.compile(r"^\s*DISCARD\s+(ALL|PLANS|SEQUENCES|TEMP|TEMPORARY)\s*;?\s*$", re.I | re.S)


def _discard(sql: str) -> Discard:
    m = _DISCARD.match(sql)
    if not m:
        rest = sql.split(None, 2)[1:2]
        err = SyntaxError_(f'syntax error at or near "{rest[0].rstrip(";")}"' if rest and rest[0].rstrip(";")
                           else "syntax error at end of input")
        if rest and rest[0].rstrip(";"):
            err.position = sql.index(rest[0], sql.upper().index("DISCARD") + len("DISCARD")) + 1
        raise err
    what = m.group(1).upper()
    return Discard("TEMP" if what == "TEMPORARY" else what)


def _close(sql: str) -> CloseCursor:
    m = _CLOSE.match(sql)
    if not m:
        raise SyntaxError_("syntax error in CLOSE: expected CLOSE name | ALL")
    return CloseCursor(None if m.group(1).upper() == "ALL" else identifier(m.group(1)))
