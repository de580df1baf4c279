"""Every error tierd can answer with: one class per SQLSTATE, under its SQLSTATE class.

Modelled on psycopg 3's `errors`: `UniqueViolation` is an `IntegrityConstraintViolation`
(class 23) is an `EngineError`, so callers catch a class (or a whole class of classes),
never match message strings, and `lookup("23505")` finds the class for a code. The wire
layer turns any `EngineError` into an ErrorResponse with its `sqlstate` and `severity`.
No error class with a SQLSTATE is defined outside this module.
"""
from __future__ import annotations

import re
from typing import Callable


class EngineError(Exception):
    sqlstate = "XX000"
    severity = "ERROR"
    position: int | None = None   # 1-based character offset in the statement, when known

    def __init__(self, message: str, *, detail: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.hint = hint


_BY_CODE: dict[str, type[EngineError]] = {}


def _sqlstate(code: str, severity: str = "ERROR"):
    """Class decorator: the SQLSTATE of a class, registered for `lookup`."""
    def register(cls: type[EngineError]) -> type[EngineError]:
        cls.sqlstate = code
        cls.severity = severity
        _BY_CODE.setdefault(code, cls)  # the first class of a code is its canonical one
        return cls
    return register


def lookup(sqlstate: str) -> type[EngineError]:
    """The class of a SQLSTATE (an unknown code gets its SQLSTATE class's, else EngineError)."""
    return _BY_CODE.get(sqlstate) or _BY_CODE.get(sqlstate[:2] + "000") or EngineError


# --- Class 08: connection exception
@_sqlstate("08000")
class ConnectionException(EngineError): pass
@_sqlstate("08P01")
class ProtocolViolation(ConnectionException): pass
@_sqlstate("08P01", "FATAL")
class FatalProtocolViolation(ProtocolViolation): pass


# --- Class 0A: feature not supported
@_sqlstate("0A000")
class FeatureNotSupported(EngineError): pass


# --- Class 21: cardinality violation
@_sqlstate("21000")
class CardinalityViolation(EngineError): pass


# --- Class 22: data exception
@_sqlstate("22000")
class DataException(EngineError): pass
@_sqlstate("22003")
class NumericValueOutOfRange(DataException): pass
@_sqlstate("22004")
class NullValueNotAllowed(DataException): pass
@_sqlstate("22007")
class InvalidDatetimeFormat(DataException): pass
@_sqlstate("22008")
class DatetimeFieldOverflow(DataException): pass
@_sqlstate("22012")
class DivisionByZero(DataException): pass
@_sqlstate("2200H")
class SequenceGeneratorLimitExceeded(DataException): pass
@_sqlstate("22021")
class CharacterNotInRepertoire(DataException): pass
@_sqlstate("22023")
class InvalidParameterValue(DataException): pass
@_sqlstate("22P02")
class InvalidTextRepresentation(DataException): pass
@_sqlstate("22P03")
class InvalidBinaryRepresentation(DataException): pass
@_sqlstate("22P04")
class BadCopyFileFormat(DataException): pass


# --- Class 23: integrity constraint violation
@_sqlstate("23000")
class IntegrityConstraintViolation(EngineError): pass
@_sqlstate("23502")
class NotNullViolation(IntegrityConstraintViolation): pass
@_sqlstate("23503")
class ForeignKeyViolation(IntegrityConstraintViolation): pass
@_sqlstate("23505")
class UniqueViolation(IntegrityConstraintViolation): pass


# --- Class 25: invalid transaction state
@_sqlstate("25000")
class InvalidTransactionState(EngineError): pass
@_sqlstate("25001")
class ActiveSqlTransaction(InvalidTransactionState): pass
@_sqlstate("25P01")
class NoActiveSqlTransaction(InvalidTransactionState): pass
@_sqlstate("25P02")
class InFailedSqlTransaction(InvalidTransactionState): pass
@_sqlstate("25P03", "FATAL")
class IdleInTransactionSessionTimeout(InvalidTransactionState): pass


# --- Class 26: invalid SQL statement name
@_sqlstate("26000")
class InvalidSqlStatementName(EngineError): pass


# --- Class 28: invalid authorization specification (they end the connection)
@_sqlstate("28000", "FATAL")
class InvalidAuthorizationSpecification(EngineError): pass
@_sqlstate("28P01", "FATAL")
class InvalidPassword(InvalidAuthorizationSpecification): pass


# --- Class 2B: dependent privilege descriptors still exist
@_sqlstate("2BP01")
class DependentObjectsStillExist(EngineError): pass


# --- Class 34: invalid cursor name
@_sqlstate("34000")
class InvalidCursorName(EngineError): pass


# --- Class 3D, 3F: invalid catalog / schema name
@_sqlstate("3D000")
class InvalidCatalogName(EngineError): pass
@_sqlstate("3F000")
class InvalidSchemaName(EngineError): pass


# --- Class 40: transaction rollback
@_sqlstate("40000")
class TransactionRollback(EngineError): pass
@_sqlstate("40001")
class SerializationFailure(TransactionRollback): pass
@_sqlstate("40P01")
class DeadlockDetected(TransactionRollback): pass


# --- Class 42: syntax error or access rule violation
@_sqlstate("42000")
class SyntaxErrorOrAccessRuleViolation(EngineError): pass
@_sqlstate("42501")
class InsufficientPrivilege(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42601")
class SyntaxError_(SyntaxErrorOrAccessRuleViolation): pass   # "_": SyntaxError is a builtin
@_sqlstate("42701")
class DuplicateColumn(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42702")
class AmbiguousColumn(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42703")
class UndefinedColumn(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42P10")
class InvalidColumnReference(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42704")
class UndefinedObject(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42710")
class DuplicateObject(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("428C9")
class GeneratedAlways(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42725")
class AmbiguousFunction(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42803")
class GroupingError(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42804")
class DatatypeMismatch(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42830")
class InvalidForeignKey(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42883")
class UndefinedFunction(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42P01")
class UndefinedTable(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42P02")
class UndefinedParameter(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42P03")
class DuplicateCursor(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42P05")
class DuplicatePreparedStatement(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42P06")
class DuplicateSchema(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42P07")
class DuplicateTable(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42P09")
class AmbiguousAlias(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42P16")
class InvalidTableDefinition(SyntaxErrorOrAccessRuleViolation): pass


# --- Class 53: insufficient resources
@_sqlstate("53000")
class InsufficientResources(EngineError): pass
@_sqlstate("53100")
class DiskFull(InsufficientResources): pass
@_sqlstate("53300", "FATAL")
class TooManyConnections(InsufficientResources): pass


# --- Class 54: program limit exceeded
@_sqlstate("54000")
class ProgramLimitExceeded(EngineError): pass
@_sqlstate("54001")
class StatementTooComplex(ProgramLimitExceeded): pass


def stack_depth_exceeded() -> StatementTooComplex:
    """A statement nested too deeply to analyse (Python's RecursionError), as Postgres says it."""
    return StatementTooComplex(
        "stack depth limit exceeded",
        hint='Increase the configuration parameter "max_stack_depth" (currently 2048kB), after ensuring '
             "the platform's stack depth limit is adequate.")


# --- Class 55: object not in prerequisite state
@_sqlstate("55000")
class ObjectNotInPrerequisiteState(EngineError): pass
@_sqlstate("55006")
class ObjectInUse(ObjectNotInPrerequisiteState): pass
@_sqlstate("55P03")
class LockNotAvailable(ObjectNotInPrerequisiteState): pass


class JobNotRetryable(ObjectNotInPrerequisiteState):
    """RETRY JOB of a job that is not failed or cancelled (55000)."""


class DataDirLocked(ObjectInUse):
    """Another tierd holds the data directory's LevelDB lock (55006)."""


# --- Class 57: operator intervention
@_sqlstate("57000")
class OperatorIntervention(EngineError): pass
@_sqlstate("57014")
class QueryCanceled(OperatorIntervention): pass
@_sqlstate("57P01", "FATAL")
class AdminShutdown(OperatorIntervention): pass


# --- Class 58: system error (errors external to tierd)
@_sqlstate("58000")
class SystemError_(EngineError): pass
@_sqlstate("58030")
class IoError(SystemError_): pass


class StorageUnhealthy(IoError):
    """A storage failed its check (58030)."""


class InjectedFault(IoError):
    """Raised by a failpoint set to "error" (58030)."""


# --- Class XX: internal error
@_sqlstate("XX000")
class InternalError(EngineError): pass


_RAISED_IN_UDF = re.compile(r"\[SQLSTATE ([0-9A-Z]{5})\] (.*?)\s*(?:\n\s*At:.*)?$", re.S)


def udf_error(err: EngineError) -> ValueError:
    """`err` as an exception a Python function DuckDB runs may raise: DuckDB keeps its text,
    and from_duckdb turns it back into `err`'s SQLSTATE and message."""
    return ValueError(f"[SQLSTATE {err.sqlstate}] {err}")


# --- DuckDB's errors in PostgreSQL's words ------------------------------------------------
# DuckDB says "Catalog Error: Table with name x does not exist!" where PostgreSQL says
# `relation "x" does not exist`. One table maps every DuckDB error family a client can meet:
# (DuckDB exception class name, pattern of the message's first line, build). A build gets
# the match and returns the error; DuckDB's `LINE n: ... ^` excerpt stays behind the message
# so error_position.locate turns it into the position. DuckDB's own hints ("Did you mean
# ...", candidate lists) are dropped: they name DuckDB's functions and tierd's internals.

_DUCKDB_TYPES = {
    "TINYINT": "smallint", "INT8": "smallint", "SMALLINT": "smallint", "INT16": "smallint",
    "INTEGER": "integer", "INT32": "integer", "BIGINT": "bigint", "INT64": "bigint",
    "HUGEINT": "numeric", "INT128": "uuid", "UUID": "uuid", "FLOAT": "real", "DOUBLE": "double precision",
    "BOOLEAN": "boolean", "BOOL": "boolean", "VARCHAR": "text", "BLOB": "bytea", "DATE": "date",
    "TIME": "time without time zone", "TIMESTAMP": "timestamp without time zone",
    "TIMESTAMP WITH TIME ZONE": "timestamp with time zone", "INTERVAL": "interval", "JSON": "json",
    "STRING_LITERAL": "unknown", "INTEGER_LITERAL": "integer", "NULL": "unknown", "DECIMAL": "numeric",
}
_NO_FUNCTION_HINT = "No function matches the given name and argument types. You might need to add explicit type casts."
_NO_OPERATOR_HINT = "No operator matches the given name and argument types. You might need to add explicit type casts."
_OUT_OF_RANGE = {"smallint": "smallint out of range", "integer": "integer out of range",
                 "bigint": "bigint out of range"}


def pg_type_name(duckdb_type: str) -> str:
    """PostgreSQL's name of a DuckDB type as DuckDB prints it (`INTEGER[]` -> `integer[]`)."""
    t = duckdb_type.strip()
    if t.endswith("[]"):
        return pg_type_name(t[:-2]) + "[]"
    base = t.split("(")[0].strip().upper()
    return _DUCKDB_TYPES.get(base, t.lower())


def _out_of_range(duckdb_type: str) -> EngineError:
    name = pg_type_name(duckdb_type)
    return NumericValueOutOfRange(_OUT_OF_RANGE.get(name, "numeric field overflow" if name == "numeric"
                                                    else f"value out of range for type {name}"))


def _args(text: str) -> list[str]:
    """`INTEGER, DECIMAL(4,1), VARCHAR` -> the PostgreSQL names, commas inside () kept."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [pg_type_name(a) for a in out + [cur] if a.strip()]


def _no_function(name: str, args: str) -> EngineError:
    types = _args(args)
    if not name[:1].isalpha() and name[:1] != "_":  # an operator: +, @>, ~~ ...
        shown = f"{types[0]} {name} {types[1]}" if len(types) == 2 else f"{name} {' '.join(types)}"
        return UndefinedFunction(f"operator does not exist: {shown}", hint=_NO_OPERATOR_HINT)
    return UndefinedFunction(f"function {name}({', '.join(types)}) does not exist", hint=_NO_FUNCTION_HINT)


def _not_unique(name: str, args: str) -> EngineError:
    types = _args(args)
    if not name[:1].isalpha() and name[:1] != "_" and len(types) == 2:
        return AmbiguousFunction(f"operator is not unique: {types[0]} {name} {types[1]}",
                                 hint="Could not choose a best candidate operator. You might need to add explicit type casts.")
    return AmbiguousFunction(f"function {name}({', '.join(types)}) is not unique",
                             hint="Could not choose a best candidate function. You might need to add explicit type casts.")


def _numeric_overflow(precision: int, scale: int) -> EngineError:
    return NumericValueOutOfRange(
        "numeric field overflow",
        detail=f"A field with precision {precision}, scale {scale} must round to an absolute value "
               f"less than {'1' if precision == scale else '10^' + str(precision - scale)}.")


def _coded(sqlstate: str, message: str) -> EngineError:
    """An error raised inside DuckDB by tierd's own UDFs and macros: `[22004] message`."""
    err = lookup(sqlstate)(message)
    err.sqlstate = sqlstate  # a code without a class of its own keeps its exact SQLSTATE
    return err


def _bad_input(type_name: str, value: str) -> EngineError:
    if type_name.endswith("[]"):
        return InvalidTextRepresentation(f'malformed array literal: "{value}"')
    if type_name.startswith(("date", "time")):
        return InvalidDatetimeFormat(f'invalid input syntax for type {type_name}: "{value}"')
    return InvalidTextRepresentation(f'invalid input syntax for type {type_name}: "{value}"')


_DUCKDB_FAMILIES: list[tuple[str, str, object]] = [
    # relations, schemas, types
    ("CatalogException", r'Table with name "?([^"!]+?)"? does not exist because schema', lambda m: UndefinedTable(f'relation "{m.group(1)}" does not exist')),
    ("CatalogException", r'(?:Table|View) with name "?([^"!]+?)"? does not exist', lambda m: UndefinedTable(f'relation "{m.group(1)}" does not exist')),
    ("CatalogException", r'(?:Table|View) with name "?([^"!]+?)"? already exists', lambda m: DuplicateTable(f'relation "{m.group(1)}" already exists')),
    ("CatalogException", r'Schema with name "?([^"!]+?)"? does not exist', lambda m: InvalidSchemaName(f'schema "{m.group(1)}" does not exist')),
    ("CatalogException", r'Schema with name "?([^"!]+?)"? already exists', lambda m: DuplicateSchema(f'schema "{m.group(1)}" already exists')),
    ("CatalogException", r'Type with name "?([^"!]+?)"? does not exist', lambda m: UndefinedObject(f'type "{m.group(1)}" does not exist')),
    # functions and operators
    ("CatalogException", r'(?:Scalar|Table|Aggregate|Macro|Table Macro) Function with name "?([^"!]+?)"? does not exist', lambda m: None),
    ("BinderException", r"No function matches the given name and argument types '(.+?)\((.*)\)'", lambda m: _no_function(m.group(1), m.group(2))),
    ("BinderException", r'Could not choose a best candidate function for the function call "(.+?)\((.*)\)"',
      lambda m: _not_unique(m.group(1), m.group(2))),
    # columns and tables in a query
    ("BinderException", r'Referenced column "([^"]+)" not found', lambda m: UndefinedColumn(f'column "{m.group(1)}" does not exist')),
    ("BinderException", r'(?:Table|Values list) "([^"]+)" does not have a column named "([^"]+)"', lambda m: UndefinedColumn(f"column {m.group(1)}.{m.group(2)} does not exist")),
    ("BinderException", r'Referenced table "([^"]+)" not found', lambda m: UndefinedTable(f'missing FROM-clause entry for table "{m.group(1)}"')),
    ("BinderException", r'Ambiguous reference to column name "([^"]+)"', lambda m: AmbiguousColumn(f'column reference "{m.group(1)}" is ambiguous')),
    ("BinderException", r'Ambiguous reference to table "(?:[^"]*\.)?([^".]+)"', lambda m: AmbiguousAlias(f'table name "{m.group(1)}" specified more than once')),
    ("BinderException", r'column "([^"]+)" must appear in the GROUP BY clause',
     lambda m: GroupingError(f'column "{m.group(1)}" must appear in the GROUP BY clause or be used in an aggregate function')),
    ("BinderException", r"Cannot (?:concatenate|compare|mix) (?:values of )?types? (\S+) and (\S+)",
     lambda m: UndefinedFunction(f"operator does not exist: {pg_type_name(m.group(1))} || {pg_type_name(m.group(2))}", hint=_NO_OPERATOR_HINT)),
    # syntax
    ("ParserException", r"(syntax error at (?:or near \S+|end of input))", lambda m: SyntaxError_(m.group(1))),
    # values that do not convert or do not fit
    ("ConversionException", r"Could not cast value (\S+) to DECIMAL\((\d+),(\d+)\)", lambda m: _numeric_overflow(int(m.group(2)), int(m.group(3)))),
    ("ConversionException", r"Could not convert string ['\"](.*)['\"] to (\S+)", lambda m: _bad_input(pg_type_name(m.group(2)), m.group(1))),
    ("ConversionException", r'invalid (date|timestamp|time) field format: "(.*)", expected format',
     lambda m: _bad_input(pg_type_name(m.group(1).upper()), m.group(2))),
    ("ConversionException", r"Type \S+ with value (.*) can't be cast because the value is out of range for the destination type (\S+)",
     lambda m: _out_of_range(m.group(2))),
    ("ConversionException", r"Type VARCHAR with value '(.*)' can't be cast to the destination type (\S+)",
     lambda m: _bad_input(pg_type_name(m.group(2)), m.group(1))),
    ("ConversionException", r"Malformed JSON", lambda m: InvalidTextRepresentation("invalid input syntax for type json")),
    ("OutOfRangeException", r"Overflow in \w+ of (\w+)", lambda m: _out_of_range(m.group(1))),
    ("OutOfRangeException", r"(?:Value|Cast) .*out of range for (?:the destination )?type (\w+)", lambda m: _out_of_range(m.group(1))),
    ("InvalidInputException", r"division by zero", lambda m: DivisionByZero("division by zero")),
    # tierd's current_setting (pg_catalog)
    ("InvalidInputException", r"(unrecognized configuration parameter.*)", lambda m: UndefinedObject(m.group(1))),
    # raised by tierd's own macros: error('[22003] numeric field overflow')
    ("InvalidInputException", r"\[([0-9A-Z]{5})\] (.*)", lambda m: _coded(m.group(1), m.group(2))),
]
_DUCKDB_FAMILY_RES = [(cls, re.compile(pattern), build) for cls, pattern, build in _DUCKDB_FAMILIES]
_FALLBACK = {
    "CatalogException": UndefinedObject, "ParserException": SyntaxError_, "BinderException": DatatypeMismatch,
    "ConversionException": InvalidTextRepresentation, "OutOfRangeException": NumericValueOutOfRange,
    "InvalidInputException": InvalidParameterValue, "TransactionException": SerializationFailure,
    "IOException": IoError, "NotImplementedException": FeatureNotSupported,
    "PermissionException": InsufficientPrivilege, "ConstraintException": UniqueViolation,
}


def from_duckdb(exc: Exception, function_args: Callable[[str], list[str] | None] | None = None) -> EngineError:
    """A DuckDB exception as the error PostgreSQL gives for the same mistake (the table
    above); `function_args(name)` may name the argument types of an unknown function call."""
    import duckdb

    marked = _RAISED_IN_UDF.search(str(exc))
    if marked:  # an EngineError raised inside one of tierd's own DuckDB functions (udf_error)
        return lookup(marked.group(1))(marked.group(2))
    if isinstance(exc, duckdb.ParserException) and ("Max expression depth" in str(exc)
                                                   or "memory exhausted" in str(exc)):
        return stack_depth_exceeded()
    if isinstance(exc, duckdb.InterruptException):
        return QueryCanceled("canceling statement due to user request")
    if not isinstance(exc, duckdb.Error):
        return InternalError(f"{type(exc).__name__}: {exc}")
    text = str(exc)
    excerpt_at = text.find("\n\nLINE ")
    excerpt = text[excerpt_at:] if excerpt_at >= 0 else ""
    first = text.split("\n", 1)[0]
    first = re.sub(r"^[A-Za-z ]+ Error: ", "", first)
    cls = type(exc).__name__
    err = None
    for family, pattern, build in _DUCKDB_FAMILY_RES:
        m = pattern.search(first) if family == cls or family in _bases(exc) else None
        if m is None:
            continue
        if family == "CatalogException" and "Function with name" in pattern.pattern:
            name = m.group(1).rsplit(".", 1)[-1]
            args = function_args(name) if function_args else None
            err = _no_function(name, ", ".join(args or [])) if args is not None else UndefinedFunction(
                f"function {name} does not exist", hint=_NO_FUNCTION_HINT)
        else:
            err = build(m)
        break
    if err is None:
        if isinstance(exc, duckdb.ConstraintException) and "NOT NULL" in first:
            err = NotNullViolation(first.rstrip("!"))
        else:
            fallback = next((c for name, c in _FALLBACK.items() if name in _bases(exc)), InternalError)
            err = fallback(first.rstrip("!"))
    err.message += excerpt  # error_position.locate turns it into the position
    err.args = (err.message,)
    return err


def _bases(exc: Exception) -> set[str]:
    return {c.__name__ for c in type(exc).__mro__}
