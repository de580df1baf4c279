"""Every error tierd can answer with: one class per SQLSTATE, under its SQLSTATE class.

Modelled on psycopg 3's `errors`: `UniqueViolation` is an `IntegrityConstraintViolation`
(class 23) is an `EngineError`, so callers catch a class (or a whole class of classes),
never match message strings, and `lookup("23505")` finds the class for a code. The wire
layer turns any `EngineError` into an ErrorResponse with its `sqlstate` and `severity`.
No error class with a SQLSTATE is defined outside this module.
"""
from __future__ import annotations


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


# --- Class 22: data exception
@_sqlstate("22000")
class DataException(EngineError): pass
@_sqlstate("22003")
class NumericValueOutOfRange(DataException): pass
@_sqlstate("22012")
class DivisionByZero(DataException): pass
@_sqlstate("22021")
class CharacterNotInRepertoire(DataException): pass
@_sqlstate("22023")
class InvalidParameterValue(DataException): pass
@_sqlstate("22P02")
class InvalidTextRepresentation(DataException): pass
@_sqlstate("22P04")
class BadCopyFileFormat(DataException): pass


# --- Class 23: integrity constraint violation
@_sqlstate("23000")
class IntegrityConstraintViolation(EngineError): pass
@_sqlstate("23502")
class NotNullViolation(IntegrityConstraintViolation): pass
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


# --- Class 42: syntax error or access rule violation
@_sqlstate("42000")
class SyntaxErrorOrAccessRuleViolation(EngineError): pass
@_sqlstate("42501")
class InsufficientPrivilege(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42601")
class SyntaxError_(SyntaxErrorOrAccessRuleViolation): pass   # "_": SyntaxError is a builtin
@_sqlstate("42701")
class DuplicateColumn(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42703")
class UndefinedColumn(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42704")
class UndefinedObject(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42710")
class DuplicateObject(SyntaxErrorOrAccessRuleViolation): pass
@_sqlstate("42804")
class DatatypeMismatch(SyntaxErrorOrAccessRuleViolation): pass
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
@_sqlstate("42P16")
class InvalidTableDefinition(SyntaxErrorOrAccessRuleViolation): pass


# --- Class 53: insufficient resources
@_sqlstate("53000")
class InsufficientResources(EngineError): pass
@_sqlstate("53100")
class DiskFull(InsufficientResources): pass


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


def from_duckdb(exc: Exception) -> EngineError:
    """Map a DuckDB exception to the closest Postgres SQLSTATE class."""
    import duckdb

    msg = str(exc)
    # DuckDB prefixes messages with its own class name ("Binder Error: ..."); keep the text.
    if isinstance(exc, duckdb.CatalogException):
        if "does not exist" in msg and ("Table" in msg or "View" in msg):
            return UndefinedTable(msg)
        if "Schema" in msg and "does not exist" in msg:
            return InvalidSchemaName(msg)
        if "Function" in msg or "function" in msg:
            return UndefinedFunction(msg)
        if "already exists" in msg:
            return DuplicateObject(msg)
        return UndefinedObject(msg)
    if isinstance(exc, duckdb.ParserException):
        return SyntaxError_(msg)
    if isinstance(exc, duckdb.BinderException):
        if "not found" in msg and ("Referenced column" in msg or "column" in msg.lower()):
            return UndefinedColumn(msg)
        if "No function matches" in msg:
            return UndefinedFunction(msg)
        return SyntaxError_(msg) if "syntax" in msg.lower() else DatatypeMismatch(msg)
    if isinstance(exc, duckdb.ConstraintException):
        if "NOT NULL" in msg:
            return NotNullViolation(msg)
        return UniqueViolation(msg)
    if isinstance(exc, duckdb.ConversionException):
        return InvalidTextRepresentation(msg)
    if isinstance(exc, duckdb.OutOfRangeException):
        return NumericValueOutOfRange(msg)
    if isinstance(exc, duckdb.InvalidInputException):
        if "division by zero" in msg.lower():
            return DivisionByZero("division by zero")
        if "unrecognized configuration parameter" in msg:  # tierd's current_setting (pg_catalog)
            return UndefinedObject(msg[msg.index("unrecognized configuration parameter"):])
        return InvalidParameterValue(msg)
    if isinstance(exc, duckdb.TransactionException):
        return SerializationFailure(msg)
    if isinstance(exc, duckdb.InterruptException):
        return QueryCanceled("canceling statement due to user request")
    if isinstance(exc, duckdb.IOException):
        return IoError(msg)
    if isinstance(exc, duckdb.NotImplementedException):
        return FeatureNotSupported(msg)
    if isinstance(exc, duckdb.PermissionException):
        return InsufficientPrivilege(msg)
    if isinstance(exc, duckdb.Error):
        return DataException(msg) if "Conversion" in msg else InternalError(msg)
    return InternalError(f"{type(exc).__name__}: {msg}")
