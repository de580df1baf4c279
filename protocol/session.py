"""Per-connection state of the extended query protocol.

Prepared statements and portals live here; a portal executes its statement at most once
(at Describe or at the first Execute) and then serves rows from the kept result.
"""
from __future__ import annotations

import copy
import re
import secrets
from dataclasses import dataclass, field

import pyarrow as pa

from buenavista.postgres import TransactionStatus

from engine.sql.copy import is_copy
from engine.sql.split import max_placeholder

from engine.errors import DuplicateCursor, DuplicatePreparedStatement, InvalidCursorName, \
    InvalidSqlStatementName
from .rows import Column
from .types.datetime import valid_timezone

_PARSED_KEPT = 256   # texts per connection whose analysis a new Parse reuses

# Command tags after which the session's settings may differ (ParameterStatus is sent again).
SETTINGS_TAGS = ("SET", "RESET", "DISCARD ALL")
# Prepared statements are protocol state, so the SQL that drops them is answered here.
DEALLOCATE = re.compile(r'^\s*DEALLOCATE\s+(?:PREPARE\s+)?(ALL|"[^"]+"|\w+)\s*;?\s*$', re.I)


@dataclass
class PreparedStatement:
    """A parsed statement and what is worked out about it once, not at every Bind/Execute (a
    pipelined executemany binds 100k times; pgbench -M prepared binds the same five)."""
    sql: str
    param_oids: list[int]           # as declared at Parse; Describe fills in the inferred ones
    batchable: bool | None = None   # its Executes may be batched (asked of the engine once)
    result_schema: object = None    # a batchable statement's row schema (NO_ROWS: none), once asked
    inferred: tuple[int, ...] | None = None  # per parameter, the number OID Postgres infers for an undeclared one
    bind_oids: tuple[int, ...] | None = None  # the OID each Bind value is decoded by (from param_oids, inferred)
    batch_columns: dict = field(default_factory=dict)  # (formats, zone) -> wire columns of its RETURNING rows
    description: tuple | None = None   # (parameter types, result schema) Describe of the statement found
    planned: tuple | None = None   # (schema, (formats, zone, style), columns, RowDescription) of its last result
    decoders: tuple | None = None  # ((bind OIDs, formats, zone), per parameter its decoder) of its last Bind
    declared: tuple[int, ...] = field(init=False)   # param_oids as the Parse message sent them
    placeholders: int = field(init=False)   # highest $n in the SQL
    is_copy: bool = field(init=False)
    is_deallocate: bool = field(init=False)

    def __post_init__(self) -> None:
        self.declared = tuple(self.param_oids)
        self.placeholders = max_placeholder(self.sql)
        self.is_copy = is_copy(self.sql)
        self.is_deallocate = DEALLOCATE.match(self.sql) is not None

    def described(self, param_oids: list[int]) -> None:
        """Describe settled the undeclared parameters' types: later Binds decode by them."""
        self.param_oids, self.bind_oids = param_oids, None

    def again(self) -> "PreparedStatement":
        """The same text parsed again with the same declared types (a driver's unnamed
        statement, re-sent with every execution): a fresh statement that keeps this one's
        analysis (placeholders, inferred types, batchability, result columns)."""
        twin = copy.copy(self)
        twin.param_oids, twin.bind_oids = list(self.declared), None
        return twin


@dataclass
class Portal:
    statement: PreparedStatement
    params: list
    result_formats: list[int]
    executed: bool = False
    tag: str = ""
    table: pa.Table | None = None
    columns: list[Column] | None = None
    notices: tuple[str, ...] = ()
    position: int = 0          # rows already sent (Execute with a row limit)
    empty_query: bool = False
    frame: tuple[bytes, bytes] | None = None   # its Bind's frame (messages.Bind): an executemany's next Binds repeat it
    decoders: tuple | None = None   # ((bind OIDs, formats, zone), decoders) its Bind's values were read by

    @property
    def remaining(self) -> int:
        return 0 if self.table is None else self.table.num_rows - self.position


@dataclass
class ConnectionState:
    """What one client connection holds: its engine session and its named objects."""

    session: object                     # the engine session (engine.connect(...))
    params: dict[str, str]
    process_id: int = field(default_factory=lambda: secrets.randbits(31))
    secret_key: int = field(default_factory=lambda: secrets.randbits(31))
    statements: dict[str, PreparedStatement] = field(default_factory=dict)
    portals: dict[str, Portal] = field(default_factory=dict)
    skip_until_sync: bool = False       # an extended-protocol message failed
    reported: dict[str, str] = field(default_factory=dict)   # ParameterStatus values sent
    # (text, declared OIDs) -> (analysis version, statement): the analysis a re-sent Parse reuses
    parsed: dict[tuple, tuple] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The engine names the session's backend pid (pg_backend_pid(), pg_stat_activity).
        self.process_id = getattr(self.session, "pid", self.process_id)

    def add_statement(self, name: str, statement: PreparedStatement) -> None:
        if name and name in self.statements:
            raise DuplicatePreparedStatement(f'prepared statement "{name}" already exists')
        self.statements[name] = statement

    def parsed_before(self, sql: str, param_oids: list[int], version: tuple) -> PreparedStatement | None:
        """A statement for a Parse of a text this connection parsed before, with the same
        declared types and while what its analysis depends on (the catalog, the search path)
        is unchanged; None: analyse it afresh (then `remember_parsed`)."""
        key = (sql, tuple(param_oids))
        hit = self.parsed.get(key)
        if hit is None or hit[0] != version:
            return None
        twin = hit[1].again()
        self.parsed[key] = (version, twin)   # what is worked out on the twin serves the next Parse
        return twin

    def remember_parsed(self, statement: PreparedStatement, version: tuple) -> None:
        if len(self.parsed) >= _PARSED_KEPT:
            self.parsed.clear()
        self.parsed[(statement.sql, statement.declared)] = (version, statement)

    def statement(self, name: str) -> PreparedStatement:
        try:
            return self.statements[name]
        except KeyError:
            raise InvalidSqlStatementName(f'prepared statement "{name}" does not exist') from None

    def add_portal(self, name: str, portal: Portal) -> None:
        if name and name in self.portals:
            raise DuplicateCursor(f'cursor "{name}" already exists')
        self.portals[name] = portal

    def portal(self, name: str) -> Portal:
        try:
            return self.portals[name]
        except KeyError:
            raise InvalidCursorName(f'portal "{name}" does not exist') from None

    def deallocate(self, sql: str) -> str | None:
        """Run `DEALLOCATE name|ALL` (psycopg sends it on rollback) against protocol state;
        returns its command tag, or None when `sql` is something else."""
        match = DEALLOCATE.match(sql)
        if not match:
            return None
        name = match.group(1)
        if name.upper() == "ALL":
            self.statements.clear()
            return "DEALLOCATE ALL"
        name = name[1:-1] if name.startswith('"') else name.lower()
        if self.statements.pop(name, None) is None:
            raise InvalidSqlStatementName(f'prepared statement "{name}" does not exist')
        return "DEALLOCATE"

    def after_settings_change(self, tag: str) -> None:
        """DISCARD ALL is DEALLOCATE ALL too: the connection's prepared statements go."""
        if tag == "DISCARD ALL":
            self.statements.clear()
            self.parsed.clear()

    @property
    def settings(self) -> dict:
        """The engine session's settings dict (SET changes it in place), looked up once."""
        settings = self.__dict__.get("_settings")
        if settings is None:
            settings = self.__dict__["_settings"] = getattr(self.session, "settings", {})
        return settings

    @property
    def timezone(self) -> str:
        """The session TimeZone for timestamptz text (UTC if the setting names no zone)."""
        zone = self.settings.get("timezone", "UTC")
        return zone if valid_timezone(zone) else "UTC"

    @property
    def interval_style(self) -> str:
        """The session IntervalStyle for interval text."""
        return self.settings.get("intervalstyle", "postgres")

    def end_of_transaction(self) -> None:
        """Sync outside a transaction block ends the implicit transaction: drop unnamed portals
        and all named ones (Postgres portals don't outlive their transaction)."""
        if not getattr(self.session, "in_transaction", False):
            self.portals.clear()

    def transaction_status(self) -> bytes:
        if getattr(self.session, "failed", False):
            return TransactionStatus.IN_FAILED_TRANSACTION
        if getattr(self.session, "in_transaction", False):
            return TransactionStatus.IN_TRANSACTION
        return TransactionStatus.IDLE
