"""The extended query protocol: Parse, Bind, Describe, Execute, Close, Flush and Sync.

Parse keeps a prepared statement and Bind a portal (protocol/session.py); parameters are
decoded by their declared type OID, never guessed from their text. A portal runs its
statement once, at Describe or at its first Execute, and Execute with a row limit then sends
that many rows and PortalSuspended. Describe of a statement binds it in DuckDB without
running it, to report parameter and result types. Executes of a batchable INSERT are held
(protocol/batch.py); COPY runs at Execute, where its data flows (protocol/copy.py). Sync ends
the implicit transaction. `ExtendedQuery` is mixed into TierdHandler (protocol/connection.py),
whose message loop calls one handler per message and skips to Sync after an error.
"""
from __future__ import annotations

import struct
from itertools import zip_longest

from engine import metrics
from engine.errors import (EngineError, InvalidBinaryRepresentation, InvalidTextRepresentation,
                           ProtocolViolation, SyntaxError_)
from engine.sql.split import split_statements

from . import messages
from .column_names import postgres_schema
from .messages import ClientGone, invalid_utf8
from .rows import data_rows, plan_columns, row_description
from .session import SETTINGS_TAGS, ConnectionState, Portal, PreparedStatement
from .types import decode_param, oid_for_sql_type, oids, param_decoder

_NUMBER_OIDS = {oids.INT2, oids.INT4, oids.INT8, oids.FLOAT4, oids.FLOAT8, oids.NUMERIC}


class ExtendedQuery:
    """One handler per extended-protocol message (part of TierdHandler)."""

    def handle_parse(self, state: ConnectionState, payload: bytes) -> None:
        name, sql, param_oids = messages.read_parse(payload)
        version = state.session.analysis_version()
        statement = state.parsed_before(sql, param_oids, version)
        metrics.inc("tierd_fast_path_total", path="parse_analysis", outcome="fallback" if statement is None else "used")
        if statement is None:
            if len(split_statements(sql)) > 1:
                raise SyntaxError_("cannot insert multiple commands into a prepared statement")
            statement = PreparedStatement(sql, param_oids)
            state.remember_parsed(statement, version)
        state.add_statement(name, statement)
        self.write(messages.PARSE_COMPLETE)

    def handle_bind(self, state: ConnectionState, payload: bytes) -> None:
        """Parameters are decoded by their declared OID, or the number type Postgres infers
        for an undeclared one (never guessed from content); the OIDs are worked out once per
        statement."""
        bind = messages.read_bind(payload)
        statement = state.statement(bind.statement)
        oids_ = self.bind_oids(state, statement) if statement.bind_oids is None else statement.bind_oids
        values = bind.values
        if len(values) != len(oids_):
            raise ProtocolViolation(
                f"bind message supplies {len(values)} parameters, but prepared "
                f'statement "{bind.statement}" requires {len(oids_)}')
        key = (oids_, tuple(bind.param_formats), state.timezone)
        decoders = statement.decoders
        if decoders is None or decoders[0] != key:
            decoders = statement.decoders = (key, param_decoders(*key))
        try:
            params = [None if value is None else decode(value) for decode, value in zip(decoders[1], values)]
        except Exception:   # decoded again one by one for Postgres's error of the value at fault
            params = _decode_each(oids_, bind, state.timezone)
        if not bind.portal:
            state.portals.pop("", None)
        state.add_portal(bind.portal, Portal(statement, params, bind.result_formats, frame=bind.frame,
                                             decoders=decoders))
        self.write(messages.BIND_COMPLETE)

    def bind_oids(self, state: ConnectionState, statement: PreparedStatement) -> tuple[int, ...]:
        """The OID each Bind value of `statement` is decoded by: the declared one, else the
        number type Postgres infers at Parse, else 0 (text stays text)."""
        required = max(len(statement.param_oids), statement.placeholders)
        declared = [statement.param_oids[i] if i < len(statement.param_oids) else 0 for i in range(required)]
        if 0 in declared:
            inferred = self.inferred_numbers(state, statement)
            declared = [oid or (inferred[i] if i < len(inferred) else 0) for i, oid in enumerate(declared)]
        statement.bind_oids = tuple(declared)
        return statement.bind_oids

    def inferred_numbers(self, state: ConnectionState, statement: PreparedStatement) -> tuple[int, ...]:
        """Per parameter, the number type (or array of one) Postgres infers for an undeclared
        parameter from its context at Parse, else 0: the column it is compared with (`pk =
        $1`, `IN ($1, $2)`, `= ANY($1)`), assigned or inserted into, the other operand of
        arithmetic (`abalance + $1`), a cast. Untyped text such as pgbench -M prepared and
        pg8000 send is then read as that number (`'07'` finds key 7, `'7.5'` is 22P02 for an
        integer), not compared as text. Asked of the engine once per statement text."""
        if statement.inferred is None:
            types = state.session.param_types(statement.sql)
            found = [oid_for_sql_type(t) if t else 0 for t in types]
            statement.inferred = tuple(o if o in _NUMBER_OIDS or oids.ELEMENT_OF.get(o) in _NUMBER_OIDS else 0
                                       for o in found)
        return statement.inferred

    def handle_describe(self, state: ConnectionState, payload: bytes) -> None:
        """Describe never runs a statement twice: a portal runs once, here or at Execute."""
        kind, name = messages.read_target(payload)
        if kind == "S":
            self.describe_statement(state, state.statement(name))
            return
        if name not in state.portals and name in getattr(state.session, "cursors", {}):
            # a DECLAREd cursor is a portal too (psycopg describes its named cursors)
            schema = state.session.cursor_schema(name)
            self.write(row_description(plan_columns(schema, (), state.timezone, state.interval_style)))
            return
        portal = state.portal(name)
        if portal.statement.is_copy:
            self.write(messages.NO_DATA)   # runs at Execute, where its data flows
            return
        if not portal.executed and self.batchable(state, portal.statement):
            columns = self.batch_columns(state, portal)   # runs at Execute, maybe batched
            self.write(messages.NO_DATA if columns is None else row_description(columns))
            return
        self.run_portal(state, portal)
        if portal.table is None:
            self.write(messages.NO_DATA)
        else:
            self.write(self.portal_row_description(portal))

    def describe_statement(self, state: ConnectionState, statement: PreparedStatement) -> None:
        """ParameterDescription with inferred types, then RowDescription or NoData; the
        statement is bound by DuckDB (LIMIT 0) but never run, once per statement text (a
        re-sent Parse of it keeps the answer while the catalog and search path are unchanged)."""
        self.run_held(state)
        if statement.description is None:
            statement.description = state.session.describe(statement.sql)
        param_types, schema = statement.description
        statement.described([declared or oid_for_sql_type(inferred) for declared, inferred in
                              zip_longest(statement.param_oids, param_types)])
        self.write(messages.parameter_description(statement.param_oids))
        if schema is None:
            self.write(messages.NO_DATA)
        else:
            self.write(row_description(plan_columns(postgres_schema(statement.sql, schema),
                                                    timezone=state.timezone,
                                                    interval_style=state.interval_style)))

    def run_portal(self, state: ConnectionState, portal: Portal) -> None:
        if portal.executed:
            return
        self.run_held(state)
        portal.executed = True
        state.session.begin_segment()
        tag = state.deallocate(portal.statement.sql) if portal.statement.is_deallocate else None
        if tag:
            portal.tag = tag
            return
        results = state.session.execute(portal.statement.sql, portal.params)
        if not results:
            portal.empty_query = True
            return
        result = results[-1]
        self.send_notices(result.notices)
        if result.tag in SETTINGS_TAGS:
            state.after_settings_change(result.tag)
            self.report_settings(state)
        portal.tag, portal.table = result.tag, result.table
        if result.table is not None:
            portal.columns = self.result_columns(state, portal, result.table.schema)

    def result_columns(self, state: ConnectionState, portal: Portal, schema) -> list:
        """The wire columns of a portal's result; kept on its statement while the result
        schema is the very same object (a point lookup's) and the formats and settings
        that shape them are unchanged."""
        statement = portal.statement
        key = (portal.result_formats, state.timezone, state.interval_style)
        planned = statement.planned
        if planned is not None and planned[0] is schema and planned[1] == key:
            return planned[2]
        columns = plan_columns(postgres_schema(statement.sql, schema), *key)
        statement.planned = (schema, key, columns, row_description(columns))
        return columns

    def portal_row_description(self, portal: Portal) -> bytes:
        """RowDescription of an executed portal (the statement's kept one when it planned
        these very columns)."""
        planned = portal.statement.planned
        if planned is not None and planned[2] is portal.columns:
            return planned[3]
        return row_description(portal.columns)

    def handle_execute(self, state: ConnectionState, payload: bytes) -> None:
        """Row limits are honoured: send that many rows, then PortalSuspended."""
        name, max_rows = messages.read_execute(payload)
        portal = state.portal(name)
        if portal.statement.is_copy:
            if portal.executed:
                raise ProtocolViolation("COPY portal already ran")
            self.run_held(state)
            portal.executed = True
            self.run_copy(state, portal.statement.sql)
            return
        if not portal.executed and self.batchable(state, portal.statement):
            self.hold_execute(state, portal)
            return
        self.run_portal(state, portal)
        if portal.empty_query:
            self.write(messages.EMPTY_QUERY_RESPONSE)
            return
        if portal.table is None:
            self.write(messages.command_complete(portal.tag))
            return
        count = portal.remaining if max_rows <= 0 else min(max_rows, portal.remaining)
        for chunk in data_rows(portal.table.slice(portal.position, count), portal.columns):
            self.write(chunk)
        suspended_before = portal.position > 0
        portal.position += count
        if max_rows > 0 and portal.remaining > 0:
            self.send_portal_suspend()
        elif suspended_before and portal.tag.startswith("SELECT"):
            self.write(messages.command_complete(f"SELECT {count}"))
        else:
            self.write(messages.command_complete(portal.tag))

    def handle_close(self, state: ConnectionState, payload: bytes) -> None:
        kind, name = messages.read_target(payload)   # closing a missing object is no error
        (state.statements if kind == "S" else state.portals).pop(name, None)
        self.send_close_complete()

    def handle_flush(self, state: ConnectionState, payload: bytes) -> None:
        self.flush()

    def handle_sync(self, state: ConnectionState) -> None:
        """Sync ends the implicit transaction of the messages before it: commit or, after an
        error, the rollback already done."""
        state.skip_until_sync = False
        try:
            state.session.end_segment()
        except (ClientGone, ConnectionError):
            raise
        except Exception as exc:
            self.send_error(exc)
        state.end_of_transaction()
        self.send_ready_for_query(state)
        self.flush()


def param_decoders(oids_: tuple[int, ...], formats: tuple[int, ...], zone: str) -> tuple:
    """Per Bind value, the decoder of its declared OID and format code."""
    return tuple(param_decoder(oid, messages.format_code(formats, i), zone) for i, oid in enumerate(oids_))


def _decode_each(oids_: tuple[int, ...], bind: messages.Bind, zone: str) -> list:
    return [None if value is None else _decode(oid, bind.format_of(i), value, i, zone)
            for i, (oid, value) in enumerate(zip(oids_, bind.values))]


def _decode(oid: int, fmt: int, value: bytes | None, index: int, zone: str) -> object:
    """One Bind parameter; a value its type cannot read is the client's error, as in Postgres
    (22P02 for text, 22P03 for binary), never an internal one."""
    try:
        return decode_param(oid, fmt, value, zone)
    except EngineError:
        raise
    except UnicodeDecodeError as exc:
        raise invalid_utf8(exc) from None
    except (ValueError, TypeError, ArithmeticError, IndexError, struct.error) as exc:
        if fmt == 1:
            raise InvalidBinaryRepresentation(
                f"incorrect binary data format in bind parameter {index + 1}") from None
        raise InvalidTextRepresentation(
            f"invalid input syntax for bind parameter {index + 1}: {exc}") from None
