"""The shape of a key-addressed UPDATE or DELETE: a WHERE that pins every primary-key column to a
parameter or a constant (`id = $1`, `a = 1 AND b = $2`), and SET expressions simple enough to
compute in Python (a parameter, a constant, a column, `+ - *` of those, casts). Such statements
need no DuckDB query: engine/session/keyed_writes.py finds the row through the key index.

The shape depends on the SQL text alone and is cached, like a plan; what the table's key is
gets checked at execution (`KeyedShape.key_of`), so one text serves any table.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal, Inexact, localcontext

import sqlglot
from sqlglot import exp

from engine.sql.dml import space_params
from engine.sql.split import leading_words

# An expression: ("p", index) a parameter, ("c", value) a constant, ("col", name) the row's
# column, (op, left, right) with op in "+-*", ("neg", e), ("cast", e, family): a value that
# must already be of that family (psycopg and SQLAlchemy send `$1::BIGINT` with an int).
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

    def key_of(self, key_columns: list[str]) -> tuple[Expr, ...]:
        """The operand pinning each key column, in key order, if WHERE pins exactly the key."""
        pinned = dict(self.where)
        if len(pinned) != len(self.where) or set(pinned) != set(key_columns):
            raise NotKeyed
        return tuple(pinned[c] for c in key_columns)


def evaluate(e: Expr, params: list, row: dict | None = None, bits: dict | None = None):
    """The value of a shape expression, with SQL's NULL propagation and integer widths
    (`bits`: the integer columns' widths; int4 + int4 overflows as in Postgres even when the
    target column is wider); NotKeyed when Python's arithmetic would not be SQL's (mixed
    types, bool as a number, text, an overflow whose error the general path words)."""
    return _eval(e, params, row or {}, bits or {})[0]


_RANGE = {16: 1 << 15, 32: 1 << 31, 64: 1 << 63}


def _eval(e: Expr, params: list, row: dict, bits: dict) -> tuple[object, int | None]:
    """(value, integer width or None: not an integer, or a parameter that takes the other
    operand's type)."""
    kind = e[0]
    if kind == "p":
        if e[1] >= len(params):
            raise NotKeyed
        return params[e[1]], None
    if kind == "c":
        v = e[1]
        return v, (32 if -(1 << 31) <= v < (1 << 31) else 64) if type(v) is int else None
    if kind == "col":
        if e[1] not in row:
            raise NotKeyed
        return row[e[1]], bits.get(e[1])
    if kind == "cast":
        v, width = _eval(e[1], params, row, bits)
        if v is not None and not isinstance(v, _FAMILIES[e[2]]) or type(v) is bool and e[2] != "bool":
            raise NotKeyed  # a real conversion (text to number...): the general path does it
        return v, width
    if kind == "neg":
        v, width = _eval(e[1], params, row, bits)
        return (None, width) if v is None else (_checked(-_number(v), width), width)
    (a, wa), (b, wb) = _eval(e[1], params, row, bits), _eval(e[2], params, row, bits)
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



@functools.lru_cache(maxsize=512)
def shape(sql: str) -> KeyedShape | None:
    """The key-addressed shape of `sql`, or None."""
    if (leading_words(sql, 1) or [""])[0] not in ("UPDATE", "DELETE"):
        return None  # an INSERT is not parsed here (a 1,000-row VALUES list takes sqlglot seconds)
    try:
        tree = sqlglot.parse_one(space_params(sql), read="postgres")
    except sqlglot.errors.ParseError:
        return None
    try:
        return _shape(tree)
    except NotKeyed:
        return None


def _shape(tree: exp.Expression) -> KeyedShape:
    if isinstance(tree, exp.Update):
        kind = "UPDATE"
    elif isinstance(tree, exp.Delete):
        kind = "DELETE"
    else:
        raise NotKeyed
    if any(tree.args.get(a) for a in ("from", "from_", "using", "returning", "with", "limit", "order")):
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
    return KeyedShape(kind, ns, _folded(table.this), pins, sets)


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
    if operand[0] == "cast" and operand[1][0] in ("p", "c"):
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
    if isinstance(node, exp.Column):
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
