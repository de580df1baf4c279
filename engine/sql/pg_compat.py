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

from engine.catalog import pg_catalog

_T = duckdb.token_type
_REGEX_OPS = {"~": ("~", ""), "!~": ("!~", ""), "~*": ("~", "i"), "!~*": ("!~", "i")}
_SCALAR_SRFS = {"generate_series", "unnest", "generate_subscripts"}
# Keywords that end a FROM clause (at the same parenthesis depth).
_AFTER_FROM = {"where", "group", "having", "order", "limit", "offset", "union", "except", "intersect",
               "window", "qualify", "select", "on", "using", "returning"}
_RENAMED_FUNCTIONS = {"json_build_object": "json_object", "jsonb_build_object": "json_object",
                      "json_agg": "json_group_array", "jsonb_agg": "json_group_array"}
_REG_TYPES = {"regclass", "regtype", "regnamespace", "regproc", "regprocedure"}
_DROPPED_COLLATIONS = {"default", '"default"', '"c"', '"posix"', "c", "posix"}
_CATALOG_NAMES = ({n.lower() for n in pg_catalog.TABLES} | set(pg_catalog.VIEWS) | set(pg_catalog.MACROS)
                  | {"pg_catalog", "information_schema", "pg_settings"})
# Functions of one value that Postgres also accepts as a one-row table in FROM.
_SCALARS_IN_FROM = {"string_to_array", "regexp_split_to_array", "current_schemas", "current_setting"}


# Every word the rewrites look for: a cheap test before tokenizing.
_TRIGGERS = frozenset(_CATALOG_NAMES | _REG_TYPES | _SCALAR_SRFS | set(_RENAMED_FUNCTIONS) | _SCALARS_IN_FROM
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
    if "~" not in sql and _TRIGGERS.isdisjoint(_WORD.findall(sql.lower())):  # most SQL: nothing to do
        return Rewritten(sql, False)
    try:
        toks = tokens(sql)
    except duckdb.Error:
        return Rewritten(sql, False)
    if not any(t.low in _CATALOG_NAMES or t.low in ("operator", "collate", "current_setting", "set_config")
               or t.low in _REG_TYPES or t.text in _REGEX_OPS or t.low in _SCALAR_SRFS
               or t.low in _RENAMED_FUNCTIONS or t.low in _SCALARS_IN_FROM for t in toks):
        return Rewritten(sql, False)
    uses_catalog = any(t.low in _CATALOG_NAMES for t in toks)
    toks = _name_srf_columns(toks)
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
                out.extend(_reg_call(toks[k].low, operand, _text_cast_follows(toks, k + 1)))
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
