"""What a client query refers to, read from DuckDB's own parse tree.

Privilege checks (GRANTs, USER tables) and the sandbox must know every table and function a
statement can reach. A regex over the text cannot see through quoting, CTE shadowing or nested
subqueries, and a second SQL parser could disagree with the one that runs the query; so this
asks DuckDB's parser itself: `json_serialize_sql` returns the statement's syntax tree as JSON,
which is walked here. A statement that cannot be serialized (anything but a query) is refused,
never guessed at.

Names are case-folded: DuckDB binds identifiers case-insensitively, so "T" and t reach the
same table and a check must treat them alike.
"""
from __future__ import annotations

import functools
import json
import re
import threading
from dataclasses import dataclass

import duckdb

from engine.errors import FeatureNotSupported, SyntaxError_, from_duckdb

QName = tuple[str, str, str]  # (catalog, schema, name), "" for a part not written

_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(ANALY[SZ]E\s+)?", re.I)
# A table reference DuckDB resolves by name, and a function call in a FROM clause.
_BASE_TABLE, _TABLE_FUNCTION, _SHOW_REF = "BASE_TABLE", "TABLE_FUNCTION", "SHOW_REF"
_FUNCTION_CLASSES = ("FUNCTION", "WINDOW")


@dataclass(frozen=True)
class SqlRefs:
    """Everything one client query names, across all its statements.

    tables:           base tables and views named in FROM/JOIN, CTE names left out
    table_functions:  functions called in FROM (read_csv(...), range(...), table macros)
    scalar_functions: other function calls, aggregates and window functions included
    file_refs:        string literals used as tables (FROM 'x.parquet': a replacement scan)
    show_refs:        SHOW <name> forms DuckDB answers itself (SHOW TABLES -> "tables")
    settings_read:    names passed to current_setting(...), "" for one computed at run time
    """

    tables: frozenset[QName]
    table_functions: frozenset[QName]
    scalar_functions: frozenset[QName]
    file_refs: frozenset[str]
    show_refs: frozenset[str]
    settings_read: frozenset[str]


class _Parser:
    """A private in-memory DuckDB used only to parse; one statement at a time."""

    def __init__(self) -> None:
        self._con = duckdb.connect(":memory:", config={"enable_external_access": False})
        self._lock = threading.Lock()

    def tree(self, sql: str) -> dict:
        # A literal, not a parameter: a prepared statement costs 4x as much. Standard SQL
        # strings have one escape (''), so the literal is exactly `sql`.
        literal = "'" + sql.replace("'", "''") + "'"
        with self._lock:
            text = self._con.execute(f"SELECT json_serialize_sql({literal})").fetchone()[0]
        return json.loads(text)


_parser = _Parser()


def _qname(node: dict, catalog: str, schema: str, name: str) -> QName:
    return (str(node.get(catalog) or "").casefold(), str(node.get(schema) or "").casefold(),
            str(node.get(name) or "").casefold())


def _literal(args) -> str:
    """The first argument when it is a string constant (case-folded), else ""."""
    first = args[0] if isinstance(args, list) and args else {}
    value = first.get("value") if isinstance(first, dict) and first.get("class") == "CONSTANT" else None
    if isinstance(value, dict) and isinstance(value.get("value"), str):
        return value["value"].casefold()
    return ""


class _Collector:
    def __init__(self, text: bytes) -> None:
        self.text = text
        self.tables: set[QName] = set()
        self.table_functions: set[QName] = set()
        self.scalar_functions: set[QName] = set()
        self.file_refs: set[str] = set()
        self.show_refs: set[str] = set()
        self.settings_read: set[str] = set()

    def walk(self, node, ctes: frozenset[str]) -> None:
        if isinstance(node, list):
            for item in node:
                self.walk(item, ctes)
            return
        if not isinstance(node, dict):
            return
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict) and cte_map.get("map"):
            ctes = self._ctes(cte_map["map"], ctes)
        kind = node.get("type")
        if kind == _BASE_TABLE and "table_name" in node:
            self._base_table(node, ctes)
        elif kind == _TABLE_FUNCTION and isinstance(node.get("function"), dict):
            fn = node["function"]
            self.table_functions.add(_qname(fn, "catalog", "schema", "function_name"))
            self.walk(fn.get("children"), ctes)  # arguments may hold subqueries
            self.walk({k: v for k, v in node.items() if k != "function"}, ctes)
            return
        elif kind == _SHOW_REF and node.get("table_name"):
            self.show_refs.add(str(node["table_name"]).strip('"').casefold())
        elif node.get("class") in _FUNCTION_CLASSES and "function_name" in node:
            name = _qname(node, "catalog", "schema", "function_name")
            self.scalar_functions.add(name)
            if name[2] == "current_setting":
                self.settings_read.add(_literal(node.get("children")))
        for key, value in node.items():
            if key != "cte_map" and isinstance(value, (dict, list)):
                self.walk(value, ctes)

    def _ctes(self, entries: list, outer: frozenset[str]) -> frozenset[str]:
        """Each CTE body sees the CTEs before it (and itself when recursive); the query body
        sees them all. Walks the bodies; returns the names visible to the body."""
        visible = set(outer)
        for entry in entries:
            name = str(entry.get("key", "")).casefold()
            query = (entry.get("value") or {}).get("query") or {}
            recursive = (query.get("node") or {}).get("type") == "RECURSIVE_CTE_NODE"
            self.walk(query, frozenset(visible | {name}) if recursive else frozenset(visible))
            visible.add(name)
        return frozenset(visible)

    def _base_table(self, node: dict, ctes: frozenset[str]) -> None:
        ref = _qname(node, "catalog_name", "schema_name", "table_name")
        loc = node.get("query_location")
        if isinstance(loc, int) and 0 <= loc < len(self.text) and self.text[loc:loc + 1] == b"'":
            self.file_refs.add(str(node["table_name"]))  # FROM 'path': a string, not a name
        elif not (ref[0] == "" and ref[1] == "" and ref[2] in ctes):
            self.tables.add(ref)


def query_texts(sql: str) -> list[str]:
    """The statements of `sql`, EXPLAIN [ANALYZE] removed; refuses anything but queries."""
    if "\x00" in sql:  # C strings end there: what is analyzed must be all that runs
        raise SyntaxError_("invalid byte sequence: the statement contains a NUL character")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise from_duckdb(exc) from None
    out = []
    for st in statements:
        text = st.query
        kind = st.type
        if kind == duckdb.StatementType.EXPLAIN:
            text = _EXPLAIN.sub("", text, count=1)
            try:
                inner = duckdb.extract_statements(text)
            except duckdb.Error as exc:
                raise from_duckdb(exc) from None
            kind = inner[0].type if len(inner) == 1 else None
        if kind != duckdb.StatementType.SELECT:
            what = kind.name if kind is not None else "several statements"
            raise FeatureNotSupported(f"only queries can run here, not {what} (EXPLAIN of a write included)")
        out.append(text)
    return out


@functools.lru_cache(maxsize=1024)
def analyze(sql: str) -> SqlRefs:
    """The references of every statement in `sql` (prepared statements repeat: cached).

    Raises SyntaxError_ when DuckDB cannot parse it and FeatureNotSupported for statements that
    are not queries; a query whose tree cannot be produced is refused too, never passed on."""
    parts = []
    for text in query_texts(sql):
        tree = _parser.tree(text)
        if tree.get("error"):
            msg = tree.get("error_message") or "statement cannot be analyzed"
            if tree.get("error_type") == "parser":
                raise SyntaxError_(msg)
            raise FeatureNotSupported(f"statement cannot be analyzed: {msg}")
        c = _Collector(text.encode("utf-8"))
        c.walk(tree.get("statements", []), frozenset())
        parts.append(c)
    return SqlRefs(
        tables=frozenset().union(*(c.tables for c in parts)),
        table_functions=frozenset().union(*(c.table_functions for c in parts)),
        scalar_functions=frozenset().union(*(c.scalar_functions for c in parts)),
        file_refs=frozenset().union(*(c.file_refs for c in parts)),
        show_refs=frozenset().union(*(c.show_refs for c in parts)),
        settings_read=frozenset().union(*(c.settings_read for c in parts)),
    )
