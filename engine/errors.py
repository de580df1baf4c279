"""One exception class per SQLSTATE the engine can raise.

The wire layer turns any `EngineError` into an ErrorResponse with `sqlstate`; callers
catch the class (`UniqueViolation`), never match message strings.
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


def _error(name: str, code: str) -> type[EngineError]:
    return type(name, (EngineError,), {"sqlstate": code, "__doc__": f"SQLSTATE {code}"})


FeatureNotSupported = _error("FeatureNotSupported", "0A000")
InvalidCatalogName = _error("InvalidCatalogName", "3D000")
InvalidSchemaName = _error("InvalidSchemaName", "3F000")
SyntaxError_ = _error("SyntaxError", "42601")
UndefinedTable = _error("UndefinedTable", "42P01")
UndefinedColumn = _error("UndefinedColumn", "42703")
UndefinedObject = _error("UndefinedObject", "42704")
UndefinedFunction = _error("UndefinedFunction", "42883")
UndefinedParameter = _error("UndefinedParameter", "42P02")
DuplicateTable = _error("DuplicateTable", "42P07")
DuplicateSchema = _error("DuplicateSchema", "42P06")
DuplicateObject = _error("DuplicateObject", "42710")
DuplicateColumn = _error("DuplicateColumn", "42701")
InvalidTableDefinition = _error("InvalidTableDefinition", "42P16")
DatatypeMismatch = _error("DatatypeMismatch", "42804")
InsufficientPrivilege = _error("InsufficientPrivilege", "42501")
InvalidParameterValue = _error("InvalidParameterValue", "22023")
DataException = _error("DataException", "22000")
InvalidTextRepresentation = _error("InvalidTextRepresentation", "22P02")
BadCopyFileFormat = _error("BadCopyFileFormat", "22P04")
CharacterNotInRepertoire = _error("CharacterNotInRepertoire", "22021")
NumericValueOutOfRange = _error("NumericValueOutOfRange", "22003")
DivisionByZero = _error("DivisionByZero", "22012")
NotNullViolation = _error("NotNullViolation", "23502")
UniqueViolation = _error("UniqueViolation", "23505")
ActiveSqlTransaction = _error("ActiveSqlTransaction", "25001")
NoActiveSqlTransaction = _error("NoActiveSqlTransaction", "25P01")
InFailedSqlTransaction = _error("InFailedSqlTransaction", "25P02")
SerializationFailure = _error("SerializationFailure", "40001")
LockNotAvailable = _error("LockNotAvailable", "55P03")
ObjectInUse = _error("ObjectInUse", "55006")
QueryCanceled = _error("QueryCanceled", "57014")
DiskFull = _error("DiskFull", "53100")
IoError = _error("IoError", "58030")
InternalError = _error("InternalError", "XX000")

# SyntaxError shadows a builtin; export it under the psycopg-style name too.
SyntaxErrorOrAccessRule = SyntaxError_


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
