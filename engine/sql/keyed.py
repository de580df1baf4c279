"""The shape of a key-addressed UPDATE or DELETE: a WHERE that pins every primary-key column to a
parameter or a constant (`id = $1`, `a = 1 AND b = $2`), and SET expressions simple enough to
compute in Python (a parameter, a constant, a column, `+ - *` of those, casts). Such statements
need no DuckDB query: engine/session/keyed_writes.py finds the row through the key index. The
same expressions, with EXCLUDED's columns and a WHERE of comparisons, make an upsert's DO UPDATE
computable in Python (`conflict_action`).

The shape depends on the SQL text alone and is cached, like a plan; what the table's key is
gets checked at execution (`KeyedShape.key_of`), so one text serves any table. A text without
parameters (the simple protocol: pgbench -M simple, psql) has its literals lifted out first
(`lifted`), so `... WHERE aid = 17` and `... WHERE aid = 42` share one shape and one parse.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from decimal import Decimal, Inexact, localcontext

import sqlglot
from sqlglot import exp

from engine.sql.split import leading_words, space_params

# An expression: ("p", index) a parameter, ("lit", index) a literal lifted out of the text (a
# constant whose value comes with the parameters), ("c", value) a constant, ("col", name) the
# row's column, ("ex", name) EXCLUDED's column (an upsert's proposed row), (op, left, right)
# with op in "+-*", ("neg", e), ("cast", e, family): a value that must already be of that
# family (psycopg and SQLAlchemy send `$1::BIGINT` with an int). A condition (DO UPDATE's
# WHERE): ("cmp", op, left, right) with op one of = <> < > <= >=, ("and", a, b), ("or", a, b),
# ("not", a), ("isnull", e), or an expression of a boolean value.
Expr = tuple


class NotKeyed(Exception):
    """This statement, on this table, with these values, takes the general path."""


@dataclass(frozen=True)
class KeyedShape:
    kind: str  # "UPDATE" or "DELETE"
    namespace: str | None  # None: the default namespace
    table: str
    where: tuple[tuple[str, Expr], ...]  # (column, parameter or constant) ANDed
    sets: tuple[tuple[str, Expr], ...]  # UPDATE: (column, expression), in SET order
    alias: str = ""  # the name the statement gives the table (RETURNING's qualifier)
    returning: str | None = None  # RETURNING's list as DuckDB reads it (the session keeps plain columns)

    def key_of(self, key_columns: list[str]) -> tuple[Expr, ...]:
        """The operand pinning each key column, in key order, if WHERE pins exactly the key."""
        pinned = dict(self.where)
        if len(pinned) != len(self.where) or set(pinned) != set(key_columns):
            raise NotKeyed
        return tuple(pinned[c] for c in key_columns)


def evaluate(e: Expr, params: list, row: dict | None = None, bits: dict | None = None,
             excluded: dict | None = None):
    """The value of a shape expression, with SQL's NULL propagation and integer widths
    (`bits`: the integer columns' widths; int4 + int4 overflows as in Postgres even when the
    target column is wider); NotKeyed when Python's arithmetic would not be SQL's (mixed
    types, bool as a number, text, an overflow whose error the general path words).
    `row`: the current version's columns; `excluded`: an upsert's proposed row."""
    return _eval(e, params, row or {}, bits or {}, excluded or {})[0]


def holds(e: Expr, params: list, row: dict, bits: dict, excluded: dict) -> bool | None:
    """A condition's SQL truth value (None: unknown), or NotKeyed when only DuckDB can say."""
    kind = e[0]
    if kind == "and":
        a, b = holds(e[1], params, row, bits, excluded), holds(e[2], params, row, bits, excluded)
        return False if a is False or b is False else None if a is None or b is None else True
    if kind == "or":
        a, b = holds(e[1], params, row, bits, excluded), holds(e[2], params, row, bits, excluded)
        return True if a is True or b is True else None if a is None or b is None else False
    if kind == "not":
        a = holds(e[1], params, row, bits, excluded)
        return None if a is None else not a
    if kind == "isnull":
        return _eval(e[1], params, row, bits, excluded)[0] is None
    if kind == "cmp":
        a = _eval(e[2], params, row, bits, excluded)[0]
        b = _eval(e[3], params, row, bits, excluded)[0]
        if a is None or b is None:
            return None
        if type(a) is bool or type(b) is bool:
            if type(a) is not type(b) or e[1] not in ("=", "<>"):
                raise NotKeyed
        elif isinstance(a, str) or isinstance(b, str):
            if type(a) is not type(b):
                raise NotKeyed  # '5' = 5: Postgres's coercion of an unknown literal
        else:
            a, b = _number(a), _number(b)
            if {type(a), type(b)} == {float, Decimal}:
                raise NotKeyed
        return _COMPARE[e[1]](a, b)
    v = _eval(e, params, row, bits, excluded)[0]
    if v is not None and type(v) is not bool:
        raise NotKeyed  # 42804: the general path words it
    return v


def references(e: Expr):
    """Every ("col", name) and ("ex", name) node of an expression or condition."""
    if e[0] in ("col", "ex"):
        yield e
    elif e[0] not in ("p", "lit", "c"):
        for x in e[1:]:
            if isinstance(x, tuple):
                yield from references(x)


_COMPARE = {"=": lambda a, b: a == b, "<>": lambda a, b: a != b, "<": lambda a, b: a < b,
            ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}
_RANGE = {16: 1 << 15, 32: 1 << 31, 64: 1 << 63}


def _literal_width(v) -> int | None:
    return (32 if -(1 << 31) <= v < (1 << 31) else 64) if type(v) is int else None


def _eval(e: Expr, params: list, row: dict, bits: dict, excluded: dict) -> tuple[object, int | None]:
    """(value, integer width or None: not an integer, or a parameter that takes the other
    operand's type)."""
    kind = e[0]
    if kind == "p" or kind == "lit":
        if e[1] >= len(params):
            raise NotKeyed
        v = params[e[1]]
        return v, _literal_width(v) if kind == "lit" else None
    if kind == "c":
        return e[1], _literal_width(e[1])
    if kind == "col":
        if e[1] not in row:
            raise NotKeyed
        return row[e[1]], bits.get(e[1])
    if kind == "ex":
        if e[1] not in excluded:
            raise NotKeyed
        return excluded[e[1]], bits.get(e[1])
    if kind == "cast":
        v, width = _eval(e[1], params, row, bits, excluded)
        if v is not None and not isinstance(v, _FAMILIES[e[2]]) or type(v) is bool and e[2] != "bool":
            raise NotKeyed  # a real conversion (text to number...): the general path does it
        return v, width
    if kind == "neg":
        v, width = _eval(e[1], params, row, bits, excluded)
        return (None, width) if v is None else (_checked(-_number(v), width), width)
    if kind not in ("+", "-", "*"):
        raise NotKeyed  # a condition where a value belongs
    (a, wa), (b, wb) = _eval(e[1], params, row, bits, excluded), _eval(e[2], params, row, bits, excluded)
    width = max(wa or 0, wb or 0) or None
    if a is None or b is None:
        return None, width
    a, b = _number(a), _number(b)
    if type(a) is not type(b):
        if {type(a), type(b)} == {int, float}:  # integer with double precision: double
            a, b, width = float(a), float(b), None
        elif {type(a), type(b)} == {int, Decimal}:  # integer with numeric: numeric
            a, b, width = Decimal(a), Decimal(b), None
        else:
            raise NotKeyed
    with localcontext() as ctx:  # numeric arithmetic is exact in Postgres
        ctx.prec, ctx.traps[Inexact] = 1000, True
        return _checked(a + b if kind == "+" else a - b if kind == "-" else a * b, width), width


def _checked(v, width: int | None):
    if width is not None and type(v) is int and not -_RANGE[width] <= v < _RANGE[width]:
        raise NotKeyed  # 22003 integer out of range: the general path raises it
    return v


def _number(v):
    if type(v) not in (int, float, Decimal):
        raise NotKeyed
    return v


_FAMILIES = {"int": (int,), "float": (float,), "numeric": (int, Decimal), "text": (str,), "bool": (bool,)}
_CAST_FAMILY = {
    exp.DataType.Type.SMALLINT: "int", exp.DataType.Type.INT: "int", exp.DataType.Type.BIGINT: "int",
    exp.DataType.Type.FLOAT: "float", exp.DataType.Type.DOUBLE: "float", exp.DataType.Type.DECIMAL: "numeric",
    exp.DataType.Type.TEXT: "text", exp.DataType.Type.VARCHAR: "text", exp.DataType.Type.BOOLEAN: "bool",
}



_LIFTABLE = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*"""
                       r"""|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|--|/\*|\$""")


def lifted(sql: str) -> tuple[str, tuple] | None:
    """`sql` with its literals as placeholders $1..$n, and their values (an integer as int, a
    decimal as Decimal, a string as str), or None: no literals, or a text where lifting could
    change the meaning (comments, dollar quotes, parameters, E'' and other prefixed strings)."""
    out, values, pos = [], [], 0
    for m in _LIFTABLE.finditer(sql):
        tok = m.group(0)
        c = tok[0]
        if c in "-/$":
            return None
        if c == "'":
            if m.start() and (sql[m.start() - 1].isalnum() or sql[m.start() - 1] in "_&'"):
                return None  # E'..', B'..', U&'..', TIMESTAMP'..'
            value: object = tok[1:-1].replace("''", "'")
        elif c.isdigit() or c == ".":
            value = int(tok) if tok.isdigit() else Decimal(tok)
        else:
            continue
        values.append(value)
        out += [sql[pos:m.start()], f"${len(values)}"]
        pos = m.end()
    if not values:
        return None
    out.append(sql[pos:])
    return "".join(out), tuple(values)


def analysed(sql: str) -> tuple[KeyedShape | None, tuple]:
    """The key-addressed shape of `sql` and the values of its lifted literals (the statement's
    parameters when it has no others), or (None, ())."""
    if (leading_words(sql, 1) or [""])[0] not in ("UPDATE", "DELETE"):
        return None, ()  # an INSERT is not parsed here (a 1,000-row VALUES list takes sqlglot seconds)
    if "$" not in sql:
        lift = lifted(sql)
        if lift is not None:
            got = _cached_shape(lift[0], True)
            return (got, lift[1]) if got is not None else (None, ())
    return _cached_shape(sql, False), ()


def shape(sql: str) -> KeyedShape | None:
    """The key-addressed shape of `sql` (with parameters, not lifted literals), or None."""
    if (leading_words(sql, 1) or [""])[0] not in ("UPDATE", "DELETE"):
        return None
    return _cached_shape(sql, False)


@functools.lru_cache(maxsize=1024)
def _cached_shape(sql: str, literals: bool) -> KeyedShape | None:
    """`literals`: the parameters of `sql` are lifted literals (constants, typed as such)."""
    try:
        tree = sqlglot.parse_one(space_params(sql), read="postgres")
    except sqlglot.errors.ParseError:
        return None
    try:
        got = _shape(tree)
    except NotKeyed:
        return None
    if literals:
        got = dataclasses.replace(got, where=tuple((c, _as_literal(e)) for c, e in got.where),
                                  sets=tuple((c, _as_literal(e)) for c, e in got.sets))
    return got


def _as_literal(e):
    """An expression whose ("p", i) are lifted literals: ("lit", i)."""
    if not isinstance(e, tuple) or not e:
        return e
    if e[0] == "p":
        return ("lit", e[1])
    if e[0] == "c":
        return e
    return tuple(_as_literal(x) if isinstance(x, tuple) else x for x in e)


def _shape(tree: exp.Expression) -> KeyedShape:
    if isinstance(tree, exp.Update):
        kind = "UPDATE"
    elif isinstance(tree, exp.Delete):
        kind = "DELETE"
    else:
        raise NotKeyed
    if any(tree.args.get(a) for a in ("from", "from_", "using", "with", "limit", "order")):
        raise NotKeyed
    table = tree.this
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        raise NotKeyed
    names = {table.name, table.alias_or_name, _folded(table.this)}
    where = tree.args.get("where")
    if where is None:
        raise NotKeyed
    pins = tuple(_pin(c, names) for c in _conjuncts(where.this))
    sets: tuple[tuple[str, Expr], ...] = ()
    if kind == "UPDATE":
        out = []
        for eq in tree.expressions:
            if not isinstance(eq, exp.EQ) or not isinstance(eq.this, exp.Column):
                raise NotKeyed
            out.append((_column(eq.this, names), _expr(eq.expression, names)))
        if len({c for c, _ in out}) != len(out):
            raise NotKeyed  # Postgres: multiple assignments to the same column
        sets = tuple(out)
    ns = _folded(table.args["db"]) if table.args.get("db") else None
    if table.args.get("catalog"):
        raise NotKeyed
    ret = tree.args.get("returning")
    returning = None if ret is None else ", ".join(e.sql(dialect="duckdb") for e in ret.expressions)
    return KeyedShape(kind, ns, _folded(table.this), pins, sets, table.alias_or_name, returning)


_EXCLUDED = "\0excluded"  # among a shape's qualifiers: `excluded.col` is EXCLUDED's column
_COMPARISONS = {exp.EQ: "=", exp.NEQ: "<>", exp.LT: "<", exp.GT: ">", exp.LTE: "<=", exp.GTE: ">="}


@dataclass(frozen=True)
class ConflictAction:
    """DO UPDATE SET ... [WHERE ...] in Python: (column, expression) in SET order, and the
    condition (None: none)."""
    sets: tuple[tuple[str, Expr], ...]
    where: Expr | None


def conflict_action(node: exp.OnConflict, table: exp.Table) -> ConflictAction | None:
    """An upsert's DO UPDATE as expressions over the existing row (`col`, `t.col`, `ns.t.col`)
    and the proposed one (`excluded.col`), or None when DuckDB must evaluate it."""
    names = {table.name, table.alias_or_name, _folded(table.this), _EXCLUDED}
    ns = table.args.get("db")

    def unqualify(n: exp.Expression) -> exp.Expression:
        if isinstance(n, exp.Column) and n.args.get("db") is not None and not n.args.get("catalog") \
                and ns is not None and n.db == ns.name and n.table == table.name:
            return exp.column(n.this.copy(), table=exp.to_identifier(table.alias_or_name))
        return n
    try:
        out = []
        for eq in node.expressions:
            if not isinstance(eq, exp.EQ) or not isinstance(eq.this, exp.Column) or eq.this.table:
                raise NotKeyed
            out.append((_folded(eq.this.this), _expr(eq.expression.transform(unqualify), names)))
        if len({c for c, _ in out}) != len(out):
            raise NotKeyed
        where = node.args.get("where")
        cond = None if where is None else _cond(where.this.transform(unqualify), names)
    except NotKeyed:
        return None
    return ConflictAction(tuple(out), cond)


def _cond(node: exp.Expression, names: set[str]) -> Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return ("and", _cond(node.this, names), _cond(node.expression, names))
    if isinstance(node, exp.Or):
        return ("or", _cond(node.this, names), _cond(node.expression, names))
    if isinstance(node, exp.Not):
        return ("not", _cond(node.this, names))
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        test = ("isnull", _expr(node.this, names))
        return ("not", test) if node.args.get("negate") else test
    if node.args.get("negate"):
        raise NotKeyed
    op = _COMPARISONS.get(type(node))
    if op is not None:
        return ("cmp", op, _expr(node.this, names), _expr(node.expression, names))
    return _expr(node, names)


def _conjuncts(node: exp.Expression) -> list[exp.Expression]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


def _pin(node: exp.Expression, names: set[str]) -> tuple[str, Expr]:
    if not isinstance(node, exp.EQ):
        raise NotKeyed
    left, right = node.this, node.expression
    if isinstance(right, exp.Column) and not isinstance(left, exp.Column):
        left, right = right, left
    if not isinstance(left, exp.Column):
        raise NotKeyed
    operand = _expr(right, names)
    if operand[0] == "cast" and operand[1][0] in ("p", "c", "lit"):
        pass
    elif operand[0] not in ("p", "c") or operand[1] is None:
        raise NotKeyed  # `= NULL` matches nothing: the general path says so
    return _column(left, names), operand


def _column(node: exp.Column, names: set[str]) -> str:
    if node.args.get("catalog") or node.args.get("db") or isinstance(node.this, exp.Star):
        raise NotKeyed
    if node.table and node.table not in names:
        raise NotKeyed
    return _folded(node.this)


def _folded(ident: exp.Expression) -> str:
    """A column name as Postgres resolves it: unquoted names fold to lower case."""
    return ident.name if isinstance(ident, exp.Identifier) and ident.quoted else ident.name.lower()


def _expr(node: exp.Expression, names: set[str]) -> Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Parameter):
        text = node.sql(dialect="postgres").lstrip("$")
        if text.isdigit():
            return ("p", int(text) - 1)
        raise NotKeyed
    if isinstance(node, exp.Null):
        return ("c", None)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return ("c", node.this)
        text = node.this
        if text.isdigit():
            return ("c", int(text))
        raise NotKeyed  # 1.5 is numeric in Postgres, not float: the general path types it
    if isinstance(node, exp.Neg):
        inner = _expr(node.this, names)
        if inner[0] == "c" and type(inner[1]) is int:
            return ("c", -inner[1])
        return ("neg", inner)
    if isinstance(node, exp.Boolean):
        return ("c", bool(node.this))
    if isinstance(node, exp.Column):
        if _EXCLUDED in names and node.table.lower() == "excluded" and not node.args.get("db"):
            return ("ex", _folded(node.this))
        return ("col", _column(node, names))
    if isinstance(node, exp.Cast) and isinstance(node.to, exp.DataType):
        family = _CAST_FAMILY.get(node.to.this)
        if family is None or node.to.expressions:
            raise NotKeyed  # varchar(n), numeric(p, s), dates ...: the general path
        return ("cast", _expr(node.this, names), family)
    if isinstance(node, (exp.Add, exp.Sub, exp.Mul)):
        op = "+" if isinstance(node, exp.Add) else "-" if isinstance(node, exp.Sub) else "*"
        return (op, _expr(node.this, names), _expr(node.expression, names))
    raise NotKeyed
