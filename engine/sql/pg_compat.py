"""Postgres-only syntax in client SQL, rewritten into what DuckDB parses, token by token.

Each rewrite is small and local (never a match on a whole query's text), works on DuckDB's
own tokenizer output so string literals and comments are never touched, and maps a Postgres
construct onto tierd's catalog (engine.pg_catalog):

- `OPERATOR(pg_catalog.~)` -> `~`                  (schema-qualified operator syntax)
- `COLLATE pg_catalog.default` / `"C"` / `"POSIX"`  -> removed (DuckDB's default order is
  Postgres's C/byte order)
- `pg_catalog.x` -> `x`                           (tierd's pg_catalog is on the search path)
- `information_schema.x` -> `__pg.info.x`
- `'name'::regclass` -> the relation's OID; `expr::regclass` -> its name (likewise regtype,
  regnamespace, regproc): a literal cast to a reg type is a name lookup, anything else an OID
  being printed
- `a ~ 'p'` -> `a ~ '(?s).*(?:p).*'` (Postgres's ~ searches, DuckDB's matches the whole
  string); `~*`/`!~*` likewise, case-insensitive; only for literal patterns
- `FROM generate_series(...) s` -> `... s(s)`: Postgres names a scalar set-returning
  function's one column after its alias (likewise unnest, generate_subscripts)
- `json_build_object(...)` -> `json_object(...)` and other Postgres functions DuckDB has
  under another name (variadic, so not macros)
- `'{a,"b c",NULL}'::text[]`, `CAST('{{1,2},{3,4}}' AS int[])` -> DuckDB list literals
  (`['a', 'b c', NULL]::text[]`, `[['1','2'],['3','4']]::int[][]`): Postgres's array text
  (sql/arrays.py), the type's dimensions following the literal's
- `format(f, a, b)` -> `__pg_format(f, [a::VARCHAR, b::VARCHAR])` and the two-argument
  `to_timestamp(t, f)` -> `__pg_to_timestamp(t, f)::TIMESTAMPTZ` (Python UDFs of
  engine/sql/functions.py: DuckDB has neither variadic UDFs nor this overload)
- jsonb operators onto DuckDB's JSON functions: `a @> b` -> `json_contains(a, b)` (and `<@`),
  `a ? k` / `?|` / `?&` -> key tests, `a #> '{x,0}'` / `#>>` -> `json_extract[_string](a,
  '$."x"[0]')`, `a || b` of jsonb -> `__pg_jsonb_concat` (a json operand must be evident from the
  text for @>, <@ and ||, as they mean list containment and string concatenation otherwise)
- `current_setting('x')` -> the session's value of x; with a name computed at run time (a
  parameter, an expression) -> a call of tierd's current_setting over the session's settings
  passed in as a MAP; `set_config('x', 'v', local)` sets x and yields 'v' (constant arguments)
- `pg_settings` (a table) -> tierd's pg_settings over the session's settings, likewise
- `FROM string_to_array(...) s` -> `FROM (SELECT string_to_array(...) AS s) s`: Postgres lets a
  function returning one value stand in FROM as a one-row table
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb

from engine.catalog import pg_catalog, pg_session
from engine.errors import EngineError
from engine.sql import arrays, functions, pg_format

_T = duckdb.token_type
_REGEX_OPS = {"~": ("~", ""), "!~": ("!~", ""), "~*": ("~", "i"), "!~*": ("!~", "i")}
_SCALAR_SRFS = {"generate_series", "unnest", "generate_subscripts"}
_SELECT_LIST_SRFS = {"generate_series"}  # DuckDB's unnest already expands; jsonb_* are macros
# Keywords that end a FROM clause (at the same parenthesis depth).
_AFTER_FROM = {"where", "group", "having", "order", "limit", "offset", "union", "except", "intersect",
               "window", "qualify", "select", "on", "using", "returning"}
_RENAMED_FUNCTIONS = {"json_build_object": "json_object", "jsonb_build_object": "json_object",
                      # engine/sql/functions.py: named so that sqlglot leaves them alone
                      "to_char": "tierd_to_char", "to_date": "tierd_to_date", "to_number": "tierd_to_number",
                      "jsonb_build_array": "json_array", "json_build_array": "json_array", "to_jsonb": "to_json"}
_REG_TYPES = {"regclass", "regtype", "regnamespace", "regproc", "regprocedure"}
_DROPPED_COLLATIONS = {"default", '"default"', '"c"', '"posix"', "c", "posix"}
_CATALOG_NAMES = ({n.lower() for n in pg_catalog.TABLES} | set(pg_catalog.VIEWS) | set(pg_catalog.MACROS) | pg_session.NAMES
                  | {"pg_catalog", "information_schema", "pg_settings"})
# Functions of one value that Postgres also accepts as a one-row table in FROM.
_SCALARS_IN_FROM = {"string_to_array", "regexp_split_to_array", "current_schemas", "current_setting"}


# Every word the rewrites look for: a cheap test before tokenizing.
_UDF_CALLS = {"format", "to_timestamp", "json_agg", "jsonb_agg"}
_JSON_OP_CHARS = ("?", "@>", "<@", "#>", "json")
_JSON_OP_TOKENS = {"?", "@>", "<@", "#", "||"}
_JSONISH = re.compile(r"json|->|^\s*'\s*[\[{]", re.I)
_JSON_TYPED = re.compile(r"::\s*jsonb?\b|\bjsonb?_\w+\s*\(|\bto_jsonb?\s*\(|\bjson_object\s*\(|\bjson_array\s*\(", re.I)
_TRIGGERS = frozenset(_CATALOG_NAMES | _REG_TYPES | _SCALAR_SRFS | set(_RENAMED_FUNCTIONS) | _SCALARS_IN_FROM | _UDF_CALLS
                      | {"operator", "collate", "current_setting", "set_config"})
_WORD = re.compile(r"\w+")


@dataclass
class Tok:
    text: str
    kind: object  # duckdb.token_type
    pre: str = " "  # the text between the previous token and this one (whitespace, comments)
    written: str | None = None  # what the client wrote here, when a name was mapped

    @property
    def low(self) -> str:
        """The lower-cased text; a quoted catalog name ("pg_catalog") as its bare name."""
        if self.text.startswith('"') and self.text[1:-1] in _CATALOG_NAMES:
            return self.text[1:-1]
        return self.text.lower()


@dataclass
class Rewritten:
    sql: str
    uses_catalog: bool  # reads tierd's pg_catalog / information_schema (rebuild it first)
    # The same SQL with the names the client wrote (information_schema.x, not where tierd keeps
    # it): what the sandbox and privilege checks judge.
    checked_sql: str = ""

    def __post_init__(self) -> None:
        self.checked_sql = self.checked_sql or self.sql


def tokens(sql: str) -> list[Tok]:
    raw = duckdb.tokenize(sql)
    out = []
    prev_end = 0
    for i, (pos, kind) in enumerate(raw):
        end = raw[i + 1][0] if i + 1 < len(raw) else len(sql)
        text = sql[pos:end].rstrip()
        out.append(Tok(text, kind, sql[prev_end:pos]))
        prev_end = pos + len(text)
    if out:
        out[-1].text += sql[prev_end:]  # trailing whitespace / comment kept as it was
    return out


def _join(toks: list[Tok], as_written: bool = False) -> str:
    return "".join(t.pre + (t.written if as_written and t.written is not None else t.text) for t in toks)


def _spliced(sql: str, pre: str) -> list[Tok]:
    """Tokens of a replacement, placed where the replaced text began."""
    new = tokens(sql)
    new[0].pre = pre
    return new


def _sql_literal(value: str) -> Tok:
    return Tok("'" + value.replace("'", "''") + "'", _T.string_const)


def _is_value_ref(toks: list[Tok], k: int) -> bool:
    """A parameter ($1, ?) or a column reference at toks[k] (not a literal, not a call)."""
    t = toks[k]
    if t.text == "?" or (t.text.startswith("$") and t.text[1:].isdigit()):
        return True
    return t.kind == _T.identifier and not (k + 1 < len(toks) and toks[k + 1].text == "(")


def _literal_value(t: Tok) -> str | None:
    if t.kind != _T.string_const or not t.text.startswith("'"):
        return None
    return t.text[1:-1].replace("''", "'")


def _operand_start(toks: list[Tok], end: int) -> int:
    """Index of the first token of the operand that ends at toks[end] (before a `::`)."""
    i = end
    if toks[i].text == ")":
        depth = 0
        while i >= 0:
            if toks[i].text == ")":
                depth += 1
            elif toks[i].text == "(":
                depth -= 1
                if depth == 0:
                    break
            i -= 1
        if i > 0 and toks[i - 1].kind == _T.identifier:  # a function call
            i -= 1
        else:
            return max(i, 0)
    while i >= 2 and toks[i - 1].text == "." and toks[i - 2].kind in (_T.identifier, _T.keyword):
        i -= 2  # a qualified name: a.b.c
    return i


def rewrite(sql: str, settings: dict[str, str] | None = None, derived: dict[str, str] | None = None) -> Rewritten:
    """Client SQL with the Postgres-only constructs above rewritten; `settings` is the
    session's (read by current_setting, written by set_config); `derived` are read-only
    settings computed for the session (is_superuser, ...)."""
    if "~" not in sql and "'{" not in sql and not any(op in sql for op in _JSON_OP_CHARS) \
            and _TRIGGERS.isdisjoint(_WORD.findall(sql.lower())):
        return Rewritten(sql, False)  # most SQL: nothing to do
    try:
        toks = tokens(sql)
    except duckdb.Error:
        return Rewritten(sql, False)
    if not any(t.low in _CATALOG_NAMES or t.low in ("operator", "collate", "current_setting", "set_config")
               or t.low in _REG_TYPES or t.text in _REGEX_OPS or t.low in _SCALAR_SRFS
               or t.low in _RENAMED_FUNCTIONS or t.low in _SCALARS_IN_FROM or t.text.startswith("'{")
               or t.low in _UDF_CALLS or t.text in _JSON_OP_TOKENS for t in toks):
        return Rewritten(sql, False)
    uses_catalog = any(t.low in _CATALOG_NAMES or t.low in _REG_TYPES for t in toks)  # reg casts look names up
    toks = _json_operators(_srfs_in_select_list(_name_srf_columns(_array_literals(toks))))
    out: list[Tok] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1].text if i + 1 < len(toks) else ""
        if t.text in _REGEX_OPS and out and i + 1 < len(toks) and _is_value_ref(toks, i + 1):
            end = i + 1  # `a ~ $1`, `a ~ b.pattern`: Postgres's ~ is a search, DuckDB's a full match
            while end + 2 < len(toks) and toks[end + 1].text == "." and toks[end + 2].kind == _T.identifier:
                end += 2
            start = _operand_start(out, len(out) - 1)
            lhs = out[start:]
            del out[start:]
            op, flags = _REGEX_OPS[t.text]
            call = _spliced(("NOT " if op == "!~" else "") + "regexp_matches(", lhs[0].pre)
            lhs[0].pre = ""
            rhs = toks[i + 1:end + 1]
            rhs[0].pre = ""
            tail = [Tok(",", _T.operator, ""), Tok("'i'", _T.string_const)] if flags else []
            out.extend(call + lhs + [Tok(",", _T.operator, "")] + rhs + tail + [Tok(")", _T.operator, "")])
            i = end + 1
            continue
        if t.text in _REGEX_OPS and i + 1 < len(toks) and _literal_value(toks[i + 1]) is not None:
            op, flags = _REGEX_OPS[t.text]
            pattern = _sql_literal(f"(?s{flags}).*(?:{_literal_value(toks[i + 1])}).*")
            pattern.pre = toks[i + 1].pre
            out.extend([Tok(op, _T.operator, t.pre), pattern])
            i += 2
            continue
        if t.low == "operator" and nxt == "(":
            close = next((j for j in range(i + 2, len(toks)) if toks[j].text == ")"), None)
            if close is not None:  # the bare operator, then handled like any other token
                toks[close] = Tok(toks[close - 1].text, _T.operator, t.pre)
                i = close
                continue
        if t.low == "collate":
            j = i + 1
            while j + 1 < len(toks) and toks[j + 1].text == ".":
                j += 2
            if j < len(toks) and toks[j].low in _DROPPED_COLLATIONS:
                i = j + 1
                continue
        if t.low == "pg_catalog" and nxt == "." and i + 2 < len(toks):
            toks[i + 2].pre = t.pre  # the qualifier goes; the name stays
            i += 2
            continue
        if t.low == "information_schema" and nxt == "." and i + 2 < len(toks):
            mapped = _spliced(f"{pg_catalog.INFO}.", t.pre)
            for m in mapped:
                m.written = ""
            mapped[0].written, mapped[-1].written = t.text, "."
            out.extend(mapped)
            i += 2
            continue
        if t.text == "::" and out:
            k = _skip_pg_catalog(toks, i + 1)
            if k < len(toks) and toks[k].low in _REG_TYPES:
                start = _operand_start(out, len(out) - 1)
                operand = out[start:]
                del out[start:]
                out.extend(_reg_call(toks[k].low, operand, _text_cast_follows(toks, k + 1)
                                     or (toks[k].low == "regclass" and _result_named(toks, k + 1))))
                i = k + 1
                continue
        if t.low == "cast" and nxt == "(":
            close = _closing(toks, i + 1)
            as_at = close - 2 if close is not None else None
            if as_at and toks[as_at].low != "as" and toks[as_at].text == ".":
                as_at -= 2  # AS pg_catalog.regclass
            if as_at and as_at > i + 2 and toks[as_at].low == "as" and toks[close - 1].low in _REG_TYPES:
                operand = toks[i + 2:as_at]
                operand[0].pre = ""
                call = _reg_call(toks[close - 1].low, operand, _text_cast_follows(toks, close + 1, in_cast=True))
                call[0].pre = t.pre
                toks[i:close + 1] = call  # rewritten further (nested casts) as the loop goes on
                continue
        if t.low in _UDF_CALLS and nxt == "(" and not (out and out[-1].text == "."):
            call = _udf_call(toks, i)
            if call is not None:
                call_toks, close = call
                call_toks[0].pre = t.pre
                toks[i:close + 1] = call_toks  # the arguments are rewritten as the loop goes on
                continue
        if t.low in _RENAMED_FUNCTIONS and nxt == "(":
            out.append(Tok(_RENAMED_FUNCTIONS[t.low], _T.identifier, t.pre))
            i += 1
            continue
        if t.low in ("current_setting", "set_config") and nxt == "(" and settings is not None:
            replaced = _setting_call(toks, i, settings)
            if replaced is not None:
                replaced[0].pre = t.pre
                out.append(replaced[0])
                i = replaced[1]
                continue
            if t.low == "current_setting":  # a computed name: looked up when the query runs
                out.extend(_spliced(f"{pg_catalog.PG}.tierd_current_setting({_settings_map(settings, derived)},",
                                    t.pre))
                i += 2
                continue
        if t.low == "pg_settings" and nxt != "(" and settings is not None and not (out and out[-1].text == "."):
            mapped = _spliced(f"{pg_catalog.PG}.tierd_pg_settings({_settings_map(settings, derived)})", t.pre)
            for m in mapped:
                m.written = ""
            mapped[0].written = t.text
            out.extend(mapped)
            i += 1
            continue
        out.append(t)
        i += 1
    return Rewritten(_join(out), uses_catalog, _join(out, as_written=True))


_TEXT_TYPES = {"text", "varchar", "name"}


def _skip_pg_catalog(toks: list[Tok], k: int) -> int:
    if k + 1 < len(toks) and toks[k].low == "pg_catalog" and toks[k + 1].text == ".":
        return k + 2
    return k


def _closing(toks: list[Tok], open_at: int) -> int | None:
    depth = 0
    for j in range(open_at, len(toks)):
        depth += {"(": 1, ")": -1}.get(toks[j].text, 0)
        if depth == 0:
            return j
    return None


def _text_cast_follows(toks: list[Tok], k: int, in_cast: bool = False) -> bool:
    """Is the value cast on to text next (`::text`, or `AS text)` closing an outer CAST)?"""
    if k < len(toks) and toks[k].low == ("as" if in_cast else "::"):
        k = _skip_pg_catalog(toks, k + 1)
        return k < len(toks) and toks[k].low in _TEXT_TYPES
    return False


def _result_named(toks: list[Tok], k: int) -> bool:
    """`expr::regclass AS name`: a result column, which Postgres prints as the relation's name
    (psql's \\d reads `conrelid::pg_catalog.regclass AS ontable` so)."""
    return k + 1 < len(toks) and toks[k].low == "as" and toks[k + 1].kind == _T.identifier


def _reg_call(reg_type: str, operand: list[Tok], as_text: bool) -> list[Tok]:
    """`operand::regclass` as a macro call: the OID, or its name when cast on to text."""
    kind = "regproc" if reg_type == "regprocedure" else reg_type
    call = _spliced(f"{pg_catalog.PG}.tierd_{kind}_{'name' if as_text else 'oid'}(", operand[0].pre)
    operand[0].pre = ""
    return call + operand + [Tok(")", _T.operator, "")]


def _name_srf_columns(toks: list[Tok]) -> list[Tok]:
    """`FROM generate_series(...) [AS] s` -> `... s(s)` (see the module docstring)."""
    out: list[Tok] = []
    in_from = [False]  # per parenthesis depth
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.low in _SCALARS_IN_FROM and in_from[-1] and i + 1 < len(toks) and toks[i + 1].text == "(":
            j = _closing(toks, i + 1)
            k = j + 1 if j is not None else len(toks)
            if k < len(toks) and toks[k].low == "as":
                k += 1
            if j is not None and k < len(toks) and toks[k].kind == _T.identifier and toks[k].low not in _AFTER_FROM:
                alias = toks[k].text
                out.extend(_spliced("(SELECT", t.pre))
                toks[i].pre = " "
                out.extend(toks[i:j + 1])
                out.extend([Tok("AS", _T.keyword), Tok(alias, _T.identifier), Tok(")", _T.operator, ""),
                            Tok(alias, _T.identifier)])
                i = k + 1
                continue
        out.append(t)
        if t.text == "(":
            in_from.append(False)
        elif t.text == ")" and len(in_from) > 1:
            in_from.pop()
        elif t.low in ("from", "join"):
            in_from[-1] = True
        elif t.low in _AFTER_FROM:
            in_from[-1] = False
        elif t.low in _SCALAR_SRFS and in_from[-1] and i + 1 < len(toks) and toks[i + 1].text == "(":
            depth, j = 0, i + 1
            while j < len(toks):
                depth += {"(": 1, ")": -1}.get(toks[j].text, 0)
                if depth == 0:
                    break
                j += 1
            k = j + 1
            if k < len(toks) and toks[k].low == "as":
                k += 1
            alias_ok = k < len(toks) and toks[k].kind == _T.identifier and toks[k].low not in _AFTER_FROM
            if j < len(toks) and alias_ok and (k + 1 >= len(toks) or toks[k + 1].text != "("):
                out.extend(toks[i + 1:k + 1])
                out.extend([Tok("(", _T.operator, ""), Tok(toks[k].text, _T.identifier, ""),
                            Tok(")", _T.operator, "")])
                i = k + 1
                continue
        i += 1
    return out


def _call_args(toks: list[Tok], open_at: int, close: int) -> list[str]:
    """The argument texts of a call whose parentheses are toks[open_at] and toks[close]."""
    args, depth, start = [], 0, open_at + 1
    for j in range(open_at + 1, close):
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(toks[j].text, 0)
        if toks[j].text == "," and depth == 0:
            args.append(_join(toks[start:j]).strip())
            start = j + 1
    last = _join(toks[start:close]).strip()
    return args + [last] if last or args else args


def _udf_call(toks: list[Tok], i: int) -> tuple[list[Tok], int] | None:
    """format(...) / to_timestamp(text, fmt) as the UDF call (module docstring), and the
    index of the call's closing parenthesis; None to leave the call as it is."""
    close = _closing(toks, i + 1)
    if close is None:
        return None
    args = _call_args(toks, i + 1, close)
    if toks[i].low == "format" and args:
        rest = ", ".join(f"CAST({a} AS VARCHAR)" for a in args[1:])
        sql = f"{functions.FORMAT_UDF}({args[0]}, {'[' + rest + ']' if rest else '[]::VARCHAR[]'})"
    elif toks[i].low in ("json_agg", "jsonb_agg") and args:
        sql = f"to_json(list({', '.join(args)}))"  # DuckDB's json_group_array takes no ORDER BY
    elif toks[i].low == "to_timestamp" and len(args) == 2:
        sql = f"CAST({functions.TO_TIMESTAMP_UDF}({args[0]}, {args[1]}) AS TIMESTAMPTZ)"
    else:
        return None
    return tokens(sql), close


def _array_literals(toks: list[Tok]) -> list[Tok]:
    """`'{1,2}'::int[]` / `CAST('{1,2}' AS int[])` -> `['1', '2']::int[]` (module docstring)."""
    out: list[Tok] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        value = _literal_value(t)
        if value is None or not value.lstrip().startswith(("{", "[")) or i + 1 >= len(toks) \
                or toks[i + 1].low not in ("::", "as"):
            out.append(t)
            i += 1
            continue
        k = _skip_pg_catalog(toks, i + 2)
        while k < len(toks) and toks[k].kind in (_T.keyword, _T.identifier) and toks[k].low != "array":
            k += 1  # the type's name: one or more words (double precision, character varying)
        dims = 0
        while k + 1 < len(toks) and toks[k].text == "[" and toks[k + 1].text == "]":
            dims, k = dims + 1, k + 2
        if k < len(toks) and toks[k].low == "array":
            dims, k = 1, k + 1
        if dims == 0 or k == i + 2:
            out.append(t)
            i += 1
            continue
        try:
            parsed = arrays.parse(value)
        except EngineError:
            out.append(t)  # DuckDB's cast error becomes `malformed array literal`
            i += 1
            continue
        out.extend(_spliced(arrays.duckdb_list(parsed), t.pre))
        out.extend(toks[i + 1:k - (2 * dims if toks[k - 1].low != "array" else 1)])
        out.extend(_spliced("[]" * arrays.depth(parsed), ""))
        i = k
    return out


def _operand_end(toks: list[Tok], j: int) -> int:
    """Index just past the operand starting at toks[j]: a literal, a (qualified) name, a call,
    a parenthesised expression or ARRAY[...], with any `::type` casts after it."""
    if j >= len(toks):
        return j
    if toks[j].text == "(":
        k = (_closing(toks, j) or len(toks) - 1) + 1
    elif toks[j].low == "array" and j + 1 < len(toks) and toks[j + 1].text == "[":
        depth, k = 0, j + 1
        while k < len(toks):
            depth += {"[": 1, "]": -1}.get(toks[k].text, 0)
            k += 1
            if depth == 0:
                break
    else:
        k = j + 1
        while k + 1 < len(toks) and toks[k].text == ".":
            k += 2
        if k < len(toks) and toks[k].text == "(":
            k = (_closing(toks, k) or len(toks) - 1) + 1
    while k + 1 < len(toks) and toks[k].text == "::":
        k += 2
        while k + 1 < len(toks) and toks[k].text == "[" and toks[k + 1].text == "]":
            k += 2
    return k


def _json_operators(toks: list[Tok]) -> list[Tok]:
    """jsonb operators as DuckDB JSON function calls (module docstring)."""
    out: list[Tok] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        op, width = t.text, 1
        if t.text == "#" and i + 1 < len(toks) and toks[i + 1].text in (">", ">>") and not toks[i + 1].pre:
            op, width = "#" + toks[i + 1].text, 2
        elif t.text == "?" and i + 1 < len(toks) and toks[i + 1].text in ("|", "&") and not toks[i + 1].pre:
            op, width = "?" + toks[i + 1].text, 2
        if op not in ("@>", "<@", "?", "?|", "?&", "#>", "#>>", "||") or not out:
            out.append(t)
            i += 1
            continue
        end_at = len(out) - 1
        while end_at >= 1 and out[end_at].text == "]" and out[end_at - 1].text == "[":
            end_at -= 2  # ::text[]
        start = _operand_start(out, end_at)
        while start >= 2 and out[start - 1].text in ("->", "->>", "::"):
            start = _operand_start(out, start - 2)
        end = _operand_end(toks, i + width)
        left, right = _join(out[start:]).strip(), _join(toks[i + width:end]).strip()
        call = _json_call(op, left, right)
        if call is None:
            out.append(t)
            i += 1
            continue
        pre = out[start].pre
        del out[start:]
        out.extend(_spliced(call, pre))
        i = end
    return out


def _json_call(op: str, left: str, right: str) -> str | None:
    if not left or not right:
        return None
    if op in ("@>", "<@"):
        if not (_JSONISH.search(left) or _JSONISH.search(right)):
            return None  # list containment
        return f"json_contains({left}, {right})" if op == "@>" else f"json_contains({right}, {left})"
    if op == "?":
        return f"{functions.JSONB_EXISTS}({left}, {right})"
    if op in ("?|", "?&"):
        keys = right
        if right.startswith("'{"):
            try:
                keys = arrays.duckdb_list(arrays.parse(right[1:-1].replace("''", "'")))
            except EngineError:
                return None
        return f"list_has_{'any' if op == '?|' else 'all'}(json_keys({left}), {keys})"
    if op in ("#>", "#>>"):
        if not (right.startswith("'") and right.endswith("'")):
            return None
        try:
            path = pg_format.json_path(right[1:-1].replace("''", "'"))
        except EngineError:
            return None
        if not path:
            return None
        fn = "json_extract" if op == "#>" else "json_extract_string"
        return f"{fn}({left}, '{path.replace(chr(39), chr(39) * 2)}')"
    if op == "||" and (_JSON_TYPED.search(left) or _JSON_TYPED.search(right)):
        return f"{functions.JSONB_CONCAT_UDF}(({left})::VARCHAR, ({right})::VARCHAR)::JSON"
    return None


def _srfs_in_select_list(toks: list[Tok]) -> list[Tok]:
    """`SELECT generate_series(1, 3)` -> `SELECT unnest(generate_series(1, 3))`: in PostgreSQL a
    set-returning function in the SELECT list yields rows; DuckDB's generate_series is a
    scalar returning a list there."""
    out: list[Tok] = []
    clause = ["other"]  # per parenthesis depth: the clause the tokens are in
    wraps: list[int] = []  # depths whose closing parenthesis also closes an unnest(
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.text == "(":
            clause.append(clause[-1] if clause[-1] == "select" else "other")
        elif t.text == ")" and len(clause) > 1:
            clause.pop()
            out.append(t)
            if wraps and wraps[-1] == len(clause):
                wraps.pop()
                out.append(Tok(")", _T.operator, ""))
            i += 1
            continue
        elif t.low == "select":
            clause[-1] = "select"
        elif t.low in ("from", "where", "group", "having", "order", "limit", "window", "qualify", "into"):
            clause[-1] = "other"
        elif (t.low in _SELECT_LIST_SRFS and clause[-1] == "select" and i + 1 < len(toks)
              and toks[i + 1].text == "(" and not (out and out[-1].text in (".",))):
            out.append(Tok("unnest", _T.identifier, t.pre))
            out.append(Tok("(", _T.operator, ""))
            t = Tok(t.text, t.kind, "")
            wraps.append(len(clause))
        out.append(t)
        i += 1
    return out


def _settings_map(settings: dict[str, str], derived: dict[str, str] | None) -> str:
    """The session's settings as a DuckDB MAP literal (what tierd's current_setting reads)."""
    merged = {**(derived or {}), **settings}
    return "MAP {" + ", ".join(f"{_sql_literal(k).text}: {_sql_literal(v).text}" for k, v in merged.items()) + "}"


def _setting_call(toks: list[Tok], i: int, settings: dict[str, str]) -> tuple[Tok, int] | None:
    """current_setting('x'[, missing_ok]) or set_config('x', 'v', local) with constant
    arguments: (the value as a literal, index after the call); None to leave the call alone."""
    args: list[Tok] = []
    j = i + 2
    while j < len(toks) and toks[j].text != ")":
        if toks[j].text != ",":
            args.append(toks[j])
        j += 1
    if j >= len(toks) or not args:
        return None
    name = _literal_value(args[0])
    if name is None:
        return None
    name = name.lower()
    if toks[i].low == "current_setting":
        if name not in settings:
            missing_ok = len(args) > 1 and args[1].low == "true"
            if missing_ok:
                return Tok("NULL::VARCHAR", _T.keyword), j + 1
            return None  # DuckDB's current_setting reports the unknown name
        return _sql_literal(settings[name]), j + 1
    if len(args) != 3:
        return None
    value = _literal_value(args[1])
    if value is None:
        return None
    settings[name] = value
    return _sql_literal(value), j + 1
