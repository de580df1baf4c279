"""PostgreSQL's formatting functions in Python, as DuckDB UDFs run them (engine/sql/functions.py):
`format()` with %s %I %L %%, `to_char` of timestamps and numbers, `to_timestamp`/`to_date`
with a format, `to_number`, `initcap`, `parse_ident`, `quote_ident`.

They follow PostgreSQL 15's formatting.c / varlena.c rules for the patterns users write;
an unsupported pattern answers 0A000 naming it rather than a wrong string. Errors carry
their SQLSTATE as a `[XXXXX] ` prefix, which engine/errors.py turns back into the class.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import re

# Filled by functions.install from DuckDB's keyword list (libpg_query's: PostgreSQL's own).
NON_UNRESERVED_KEYWORDS: set[str] = set()


class PgError(ValueError):
    def __init__(self, sqlstate: str, message: str):
        super().__init__(f"[{sqlstate}] {message}")


# --------------------------------------------------------------------- identifiers, format()
_PLAIN_IDENT = re.compile(r"[a-z_][a-z0-9_$]*\Z")


def quote_ident(name: str) -> str:
    if _PLAIN_IDENT.match(name) and name not in NON_UNRESERVED_KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    quoted = "'" + value.replace("'", "''").replace("\\", "\\\\") + "'"
    return "E" + quoted if "\\" in value else quoted


_SPEC = re.compile(r"%(?:(\d+)\$)?(-)?(\d+|\*(?:\d+\$)?)?([sIL%])?")


def pg_format(fmt: str | None, args: list | None) -> str | None:
    """format(fmt, VARIADIC args): %s (NULL -> ''), %I (an identifier), %L (a literal,
    NULL -> NULL), %%, with `n$` positions, `-` and a width."""
    if fmt is None:
        return None
    args = args or []
    out: list[str] = []
    pos = 0
    next_arg = 0
    while pos < len(fmt):
        at = fmt.find("%", pos)
        if at < 0:
            out.append(fmt[pos:])
            break
        out.append(fmt[pos:at])
        m = _SPEC.match(fmt, at)
        kind = m.group(4)
        if kind is None:
            raise PgError("22023", "unterminated format() type specifier"
                          if m.end() >= len(fmt) else f'unrecognized format() type specifier "{fmt[m.end()]}"')
        if kind == "%":
            out.append("%")
            pos = m.end()
            continue
        if m.group(3) and m.group(3).startswith("*"):
            raise PgError("0A000", "format() width from an argument (*) is not supported by tierd")
        index = int(m.group(1)) - 1 if m.group(1) else next_arg
        if m.group(1) and index < 0:
            raise PgError("22023", "format specifies argument 0, but arguments are numbered from 1")
        if index >= len(args):
            raise PgError("22023", "too few arguments for format()")
        next_arg = index + 1
        value = args[index]
        if kind == "s":
            text = "" if value is None else value
        elif kind == "I":
            if value is None:
                raise PgError("22004", "null values cannot be formatted as an SQL identifier")
            text = quote_ident(value)
        else:
            text = "NULL" if value is None else quote_literal(value)
        width = int(m.group(3)) if m.group(3) else 0
        out.append(text.ljust(width) if m.group(2) else text.rjust(width))
        pos = m.end()
    return "".join(out)


def parse_ident(text: str | None, strict: bool = True) -> list[str] | None:
    """parse_ident('a."B c".d') -> ['a', 'B c', 'd'], as PostgreSQL splits a qualified name."""
    if text is None:
        return None
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i < n and text[i] == '"':
            j, buf = i + 1, []
            while True:
                k = text.find('"', j)
                if k < 0:
                    raise PgError("22023", f'string is not a valid identifier: "{text}"')
                buf.append(text[j:k])
                if k + 1 < n and text[k + 1] == '"':
                    buf.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            part = "".join(buf)
            if not part:
                raise PgError("22023", f'string is not a valid identifier: "{text}"')
            parts.append(part)
        else:
            m = re.compile(r"[A-Za-z_\x80-\uffff][\w$\x80-\uffff]*").match(text, i)
            if m is None:
                raise PgError("22023", f'string is not a valid identifier: "{text}"')
            parts.append(m.group(0).lower())
            i = m.end()
        while i < n and text[i].isspace():
            i += 1
        if i < n and text[i] == ".":
            i += 1
            continue
        if i < n and strict:
            raise PgError("22023", f'string is not a valid identifier: "{text}"')
        return parts


def initcap(text: str | None) -> str | None:
    """First letter of each alphanumeric run upper case, the rest lower (PostgreSQL's rule)."""
    if text is None:
        return None
    out, in_word = [], False
    for ch in text:
        out.append(ch.lower() if in_word else ch.upper())
        in_word = ch.isalnum()
    return "".join(out)


# --------------------------------------------------------------------- to_char(timestamp)
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"]
_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_DT_PATTERNS = sorted([
    "HH24", "HH12", "HH", "MI", "SSSSS", "SSSS", "SS", "MS", "US", "AM", "PM", "am", "pm", "A.M.", "P.M.",
    "a.m.", "p.m.", "Y,YYY", "YYYY", "YYY", "YY", "Y", "IYYY", "IYY", "IY", "I", "MONTH", "Month", "month",
    "MON", "Mon", "mon", "MM", "DAY", "Day", "day", "DY", "Dy", "dy", "DDD", "DD", "D", "IDDD", "ID", "IW",
    "WW", "W", "Q", "J", "CC", "TZ", "tz", "OF", "FF1", "FF2", "FF3", "FF4", "FF5", "FF6",
], key=len, reverse=True)


def _cased(name: str, pattern: str) -> str:
    if pattern.isupper():
        return name.upper()
    if pattern.islower():
        return name.lower()
    return name


def _dt_field(p: str, t: dt.datetime, fill: bool) -> str:
    def num(v: int, width: int) -> str:
        return str(v) if fill else f"{v:0{width}d}" if v >= 0 else "-" + f"{-v:0{width}d}"
    iso = t.isocalendar()
    if p == "HH24":
        return num(t.hour, 2)
    if p in ("HH12", "HH"):
        return num((t.hour % 12) or 12, 2)
    if p == "MI":
        return num(t.minute, 2)
    if p == "SS":
        return num(t.second, 2)
    if p in ("SSSS", "SSSSS"):
        return str(t.hour * 3600 + t.minute * 60 + t.second)
    if p == "MS":
        return num(t.microsecond // 1000, 3)
    if p == "US":
        return num(t.microsecond, 6)
    if p.startswith("FF"):
        digits = int(p[2])
        return f"{t.microsecond:06d}"[:digits]
    if p.replace(".", "").upper() in ("AM", "PM"):
        word = ("P.M." if "." in p else "PM") if t.hour >= 12 else ("A.M." if "." in p else "AM")
        return word.lower() if p.islower() else word
    if p == "Y,YYY":
        return f"{t.year // 1000},{t.year % 1000:03d}"
    if p in ("YYYY", "IYYY"):
        return num(t.year if p == "YYYY" else iso[0], 4)
    if p in ("YYY", "YY", "Y", "IYY", "IY", "I"):
        width = len(p.replace("I", "Y")) if p != "I" else 1
        year = t.year if p.startswith("Y") else iso[0]
        return num(year % 10 ** width, width)
    if p.upper() == "MONTH":
        name = _cased(_MONTHS[t.month - 1], p)
        return name if fill else name.ljust(9)
    if p.upper() == "MON":
        return _cased(_MONTHS[t.month - 1][:3], p)
    if p == "MM":
        return num(t.month, 2)
    if p.upper() == "DAY":
        name = _cased(_DAYS[(t.weekday() + 1) % 7], p)
        return name if fill else name.ljust(9)
    if p.upper() == "DY":
        return _cased(_DAYS[(t.weekday() + 1) % 7][:3], p)
    if p == "DDD":
        return num(t.timetuple().tm_yday, 3)
    if p == "IDDD":
        return num((iso[1] - 1) * 7 + iso[2], 3)
    if p == "DD":
        return num(t.day, 2)
    if p == "D":
        return str((t.weekday() + 1) % 7 + 1)
    if p == "ID":
        return str(iso[2])
    if p == "IW":
        return num(iso[1], 2)
    if p == "WW":
        return num((t.timetuple().tm_yday - 1) // 7 + 1, 2)
    if p == "W":
        return str((t.day - 1) // 7 + 1)
    if p == "Q":
        return str((t.month - 1) // 3 + 1)
    if p == "J":
        return str(t.toordinal() + 1721425)
    if p == "CC":
        return num((t.year + 99) // 100 if t.year > 0 else -((-t.year) // 100) - 1, 2)
    if p in ("TZ", "tz", "OF"):
        offset = t.utcoffset()
        if offset is None:
            return "" if p != "OF" else "+00"
        if p == "OF":
            minutes = int(offset.total_seconds() // 60)
            sign = "-" if minutes < 0 else "+"
            hours, mins = divmod(abs(minutes), 60)
            return f"{sign}{hours:02d}" + (f":{mins:02d}" if mins else "")
        name = t.tzname() or ""
        return name.lower() if p == "tz" else name
    raise PgError("0A000", f'to_char pattern "{p}" is not supported by tierd')


def to_char_timestamp(t: dt.datetime | None, fmt: str | None) -> str | None:
    if t is None or fmt is None:
        return None
    if not isinstance(t, dt.datetime):
        t = dt.datetime(t.year, t.month, t.day)
    out: list[str] = []
    i = 0
    while i < len(fmt):
        fill = False
        if fmt.startswith(("FM", "fm"), i):
            fill, i = True, i + 2
        if fmt.startswith(("TM", "tm"), i):
            i += 2
        if i < len(fmt) and fmt[i] == '"':
            end = fmt.find('"', i + 1)
            end = len(fmt) if end < 0 else end
            out.append(fmt[i + 1:end].replace('\\"', '"'))
            i = end + 1
            continue
        if fmt.startswith("\\", i) and i + 1 < len(fmt):
            out.append(fmt[i + 1])
            i += 2
            continue
        for p in _DT_PATTERNS:
            if fmt.startswith(p, i):
                out.append(_dt_field(p, t, fill))
                i += len(p)
                break
        else:
            if i < len(fmt):
                out.append(fmt[i])
                i += 1
    return "".join(out)


# --------------------------------------------------------------------- to_char(number), to_number
def _number_format(fmt: str) -> dict:
    """The parts of a numeric template: digit positions before/after the point, flags."""
    spec = {"int": [], "frac": 0, "point": False, "fill": False, "sign": None, "eeee": False, "frac_zero": 0}
    body = fmt
    if body.upper().startswith("FM"):
        spec["fill"], body = True, body[2:]
    i = 0
    items: list[str] = []
    upper = body.upper()
    while i < len(body):
        for token in ("EEEE", "MI", "PL", "SG", "PR", "TH", "9", "0", ".", "D", ",", "G", "S", "V", "L"):
            if upper.startswith(token, i):
                items.append(token)
                i += len(token)
                break
        else:
            items.append(body[i])  # literal text
            i += 1
    spec["items"] = items
    return spec


def to_char_number(value, fmt: str | None, binary_float: bool = False) -> str | None:
    """to_char of a number; a float rounds as C's printf does (half to even), numeric half up."""
    if value is None or fmt is None:
        return None
    spec = _number_format(fmt)
    items = spec["items"]
    if any(t in ("V", "TH", "L") for t in items):
        raise PgError("0A000", "to_char number patterns V, TH and L are not supported by tierd")
    value = decimal.Decimal(str(value))
    if not value.is_finite():
        return str(value)
    point = next((k for k, t in enumerate(items) if t in (".", "D")), None)
    int_items = items if point is None else items[:point]
    frac_items = [] if point is None else items[point + 1:]
    n_int = sum(t in ("9", "0") for t in int_items)
    n_frac = sum(t in ("9", "0") for t in frac_items)
    negative = value < 0
    if "EEEE" in items:
        text = f"{abs(value):.{n_frac}e}".replace("e", "e")
        mantissa, exp_part = text.split("e")
        exponent = int(exp_part)
        body = f"{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"
        return ("-" if negative else " ") + body if not spec["fill"] else ("-" if negative else "") + body
    rounded = abs(value).quantize(decimal.Decimal(1).scaleb(-n_frac),
                                  rounding=decimal.ROUND_HALF_EVEN if binary_float else decimal.ROUND_HALF_UP)
    int_digits, _, frac_digits = f"{rounded:f}".partition(".")
    int_digits = int_digits.lstrip("0")
    frac_digits = frac_digits.ljust(n_frac, "0")
    overflow = len(int_digits) > n_int
    # integer part, right to left
    out_int: list[str] = []
    digits = list(int_digits)
    first_zero = next((k for k, t in enumerate(int_items) if t == "0"), None)
    printed_any = False
    positions = [k for k, t in enumerate(int_items) if t in ("9", "0")]
    for k in range(len(int_items) - 1, -1, -1):
        t = int_items[k]
        if t in ("9", "0"):
            if overflow:
                out_int.append("#")
            elif digits:
                out_int.append(digits.pop())
                printed_any = True
            elif first_zero is not None and k >= first_zero:
                out_int.append("0")
                printed_any = True
            elif k == positions[-1] and not frac_items and not int_digits:
                out_int.append("0")  # a zero value shows one digit
                printed_any = True
            else:
                out_int.append(" ")
        elif t in (",", "G"):
            more = overflow or digits or (first_zero is not None and k > first_zero)
            out_int.append("," if (more or any(c not in " " for c in out_int)) and _left_has_digit(int_items, k, digits, first_zero) else " ")
        elif t in ("S", "MI", "PL", "SG", "PR"):
            out_int.append("\0" + t)
        else:
            out_int.append(t)
    int_text = "".join(reversed(out_int))
    frac_text = ""
    if point is not None:
        chars = list(frac_digits)
        frac_out = []
        for t in frac_items:
            if t in ("9", "0"):
                frac_out.append("#" if overflow else chars.pop(0) if chars else "0")
            elif t in ("S", "MI", "PL", "SG", "PR"):
                frac_out.append("\0" + t)
            else:
                frac_out.append(t)
        frac_text = "." + "".join(frac_out)
        if spec["fill"]:
            trailing = [t for t in frac_items if t in ("9", "0")]
            keep = len(frac_digits.rstrip("0")) if trailing and trailing[-1] == "9" else len(frac_digits)
            zeros_forced = max((k + 1 for k, t in enumerate(trailing) if t == "0"), default=0)
            keep = max(keep, zeros_forced)
            digits_seen, cut = 0, []
            for ch in frac_text[1:]:
                if ch.isdigit() or ch == "#":
                    digits_seen += 1
                    if digits_seen > keep:
                        continue
                cut.append(ch)
            frac_text = "." + "".join(cut)
    explicit = {"S", "MI", "PL", "SG", "PR"} & set(items)
    text = int_text + frac_text
    leading_s = bool(int_items) and int_items[0] == "S"
    if leading_s:
        text = text.replace("\0S", "", 1)
    if not explicit or leading_s or explicit == {"PR"}:
        # the sign's own slot, just left of the first printed character
        first = len(text) - len(text.lstrip(" "))
        if explicit == {"PR"}:
            text = text.replace("\0PR", "")
            sign, end = ("<", ">") if negative else (" ", " ")
        else:
            sign, end = ("-" if negative else "+" if leading_s else " "), ""
        text = text[:first] + sign + text[first:] + end
    else:
        def sign_for(t: str) -> str:
            if t == "S":
                return "-" if negative else "+"
            if t == "MI":
                return "-" if negative else " "
            if t == "PL":
                return "+" if not negative else " "
            return "-" if negative else "+"  # SG
        for t in explicit:
            text = text.replace("\0" + t, sign_for(t))
    if spec["fill"]:
        text = text.strip(" ")
        if text.startswith("-") or text.startswith("+"):
            text = text[0] + text[1:].lstrip(" ")
    return text


def _left_has_digit(items: list[str], k: int, remaining: list[str], first_zero: int | None) -> bool:
    """Is a digit printed left of position k (so a group separator there shows)?"""
    if remaining:
        return True
    return first_zero is not None and first_zero < k


def to_number(text: str | None, fmt: str | None) -> float | None:
    if text is None or fmt is None:
        return None
    spec = _number_format(fmt)
    items = spec["items"]
    point = next((k for k, t in enumerate(items) if t in (".", "D")), None)
    n_frac = 0 if point is None else sum(t in ("9", "0") for t in items[point + 1:])
    negative = "-" in text or ("PR" in items and text.strip().startswith("<"))
    digits = re.sub(r"[^0-9.]", "", text) if point is not None else re.sub(r"[^0-9]", "", text)
    if not digits.strip("."):
        raise PgError("22P02", f'invalid input syntax for type numeric: " "')
    number = decimal.Decimal(digits)
    number = number.quantize(decimal.Decimal(1).scaleb(-n_frac), rounding=decimal.ROUND_HALF_UP)
    return float(-number if negative else number)


# --------------------------------------------------------------------- to_timestamp, to_date
_PARSE = {
    "YYYY": r"(?P<year>[+-]?\d{1,4})", "Y,YYY": r"(?P<year_c>\d,\d{3})", "YYY": r"(?P<year3>\d{1,3})",
    "YY": r"(?P<year2>\d{1,2})", "MM": r"(?P<month>\d{1,2})", "DD": r"(?P<day>\d{1,2})",
    "DDD": r"(?P<yday>\d{1,3})", "HH24": r"(?P<hour>\d{1,2})", "HH12": r"(?P<hour12>\d{1,2})",
    "HH": r"(?P<hour12>\d{1,2})", "MI": r"(?P<minute>\d{1,2})", "SS": r"(?P<second>\d{1,2})",
    "MS": r"(?P<ms>\d{1,3})", "US": r"(?P<us>\d{1,6})", "AM": r"(?P<ampm>[AaPp]\.?[Mm]\.?)",
    "PM": r"(?P<ampm>[AaPp]\.?[Mm]\.?)", "A.M.": r"(?P<ampm>[AaPp]\.[Mm]\.)", "P.M.": r"(?P<ampm>[AaPp]\.[Mm]\.)",
    "MONTH": r"(?P<monthname>[A-Za-z]+)", "MON": r"(?P<monname>[A-Za-z]{3})",
    "DAY": r"[A-Za-z]+", "DY": r"[A-Za-z]{3}", "TZH": r"(?P<tzh>[+-]\d{1,2})", "TZM": r"(?P<tzm>\d{2})",
    "FF1": r"(?P<ff>\d{1})", "FF2": r"(?P<ff>\d{1,2})", "FF3": r"(?P<ff>\d{1,3})",
    "FF4": r"(?P<ff>\d{1,4})", "FF5": r"(?P<ff>\d{1,5})", "FF6": r"(?P<ff>\d{1,6})",
}
_PARSE_ORDER = sorted(_PARSE, key=len, reverse=True)


def _parse_datetime(text: str, fmt: str, kind: str) -> dt.datetime:
    regex, i, used = [r"\s*"], 0, set()
    upper = fmt.upper()
    while i < len(fmt):
        if upper.startswith(("FM", "TM"), i):
            i += 2
            continue
        if fmt[i] == '"':
            end = fmt.find('"', i + 1)
            end = len(fmt) if end < 0 else end
            regex.append(re.escape(fmt[i + 1:end]))
            i = end + 1
            continue
        for p in _PARSE_ORDER:
            if upper.startswith(p, i):
                group = _PARSE[p]
                name = re.search(r"\?P<(\w+)>", group)
                if name and name.group(1) in used:
                    group = re.sub(r"\?P<\w+>", "?:", group)
                elif name:
                    used.add(name.group(1))
                regex.append(group)
                i += len(p)
                break
        else:
            ch = fmt[i]
            regex.append(r"\s*" if ch.isspace() else r"[^\w]?" if not ch.isalnum() else re.escape(ch))
            i += 1
    m = re.match("".join(regex) + r"\s*", text)
    if m is None:
        raise PgError("22007", f'invalid value "{text}" for "{fmt}"')
    g = {k: v for k, v in m.groupdict().items() if v is not None}
    year = int(g["year"]) if "year" in g else int(g["year_c"].replace(",", "")) if "year_c" in g else \
        (2000 + int(g["year2"]) if int(g["year2"]) < 70 else 1900 + int(g["year2"])) if "year2" in g else \
        (2000 + int(g["year3"]) if "year3" in g else 1)
    month = int(g.get("month", 1))
    if "monthname" in g or "monname" in g:
        name = (g.get("monthname") or g.get("monname")).lower()
        found = [k for k, full in enumerate(_MONTHS) if full.lower().startswith(name[:3])]
        if not found:
            raise PgError("22007", f'invalid value "{name}" for "MON"')
        month = found[0] + 1
    day = int(g.get("day", 1))
    hour = int(g.get("hour", 0))
    if "hour12" in g:
        hour = int(g["hour12"]) % 12
        if g.get("ampm", "a")[0] in "Pp":
            hour += 12
    micro = int(g["us"].ljust(6, "0")) if "us" in g else int(g["ms"]) * 1000 if "ms" in g else \
        int(g["ff"].ljust(6, "0")) if "ff" in g else 0
    try:
        if "yday" in g:
            out = dt.datetime(year, 1, 1) + dt.timedelta(days=int(g["yday"]) - 1)
        else:
            out = dt.datetime(year, month, day)
        out = out.replace(hour=hour, minute=int(g.get("minute", 0)), second=int(g.get("second", 0)),
                          microsecond=micro)
    except ValueError:
        raise PgError("22008", f'date/time field value out of range: "{text}"') from None
    if "tzh" in g:
        offset = dt.timedelta(hours=int(g["tzh"]), minutes=int(g.get("tzm", 0)) * (-1 if g["tzh"].startswith("-") else 1))
        out = (out - offset)
    return out


def to_timestamp(text: str | None, fmt: str | None) -> dt.datetime | None:
    """to_timestamp(text, fmt) as a naive timestamp; the caller casts it to timestamptz."""
    if text is None or fmt is None:
        return None
    return _parse_datetime(text, fmt, "timestamp")


def to_date(text: str | None, fmt: str | None) -> dt.date | None:
    if text is None or fmt is None:
        return None
    return _parse_datetime(text, fmt, "date").date()


def to_char(type_name: str | None, value: str | None, fmt: str | None) -> str | None:
    """to_char(value, fmt) for any type: DuckDB UDFs have no overloads, so the value arrives
    as text with its DuckDB type name (`to_char(v, f)` is a macro over typeof(v), v::text)."""
    if value is None or fmt is None:
        return None
    kind = (type_name or "").upper()
    if kind.startswith(("TIMESTAMP", "DATE")):
        return to_char_timestamp(dt.datetime.fromisoformat(value), fmt)
    if kind.startswith(("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "DECIMAL", "DOUBLE", "FLOAT",
                        "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")):
        return to_char_number(value, fmt, binary_float=kind.startswith(("DOUBLE", "FLOAT")))
    raise PgError("0A000", f"to_char of type {kind.lower()} is not supported by tierd")


# --------------------------------------------------------------------- jsonb
def _path(path: str) -> list[str]:
    """A text[] path as it reaches a UDF: PostgreSQL's `{a,b}` or DuckDB's `[a, b]`."""
    from engine.sql.arrays import parse

    path = path.strip()
    if path.startswith("["):
        return [p.strip() for p in path[1:-1].split(",") if p.strip()]
    return [p for p in parse(path) if p is not None]


def jsonb_set(target: str | None, path: str | None, new: str | None, create_missing: bool | None = True) -> str | None:
    """jsonb_set(target, path, new_value, create_missing): PostgreSQL's rules for objects
    (replace or add the key) and arrays (replace an element; a missing index appends or
    prepends)."""
    if target is None or path is None or new is None:
        return None
    doc = json.loads(target)
    keys = _path(path)
    if not keys:
        return target
    value = json.loads(new)
    node = doc
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, dict):
            if last:
                if key in node or create_missing:
                    node[key] = value
            elif key in node:
                node = node[key]
                continue
            break
        if isinstance(node, list):
            try:
                index = int(key)
            except ValueError:
                raise PgError("22P02", f'path element at position {depth + 1} is not an integer: "{key}"') from None
            if index < 0:
                index += len(node)
            if 0 <= index < len(node):
                if last:
                    node[index] = value
                    break
                node = node[index]
                continue
            if last and create_missing:
                if index < 0:
                    node.insert(0, value)
                else:
                    node.append(value)
            break
        break
    return json.dumps(doc, separators=(",", ":"))


def jsonb_concat(left: str | None, right: str | None) -> str | None:
    """jsonb || jsonb: objects merge at the top level (right wins), anything else concatenates
    as arrays."""
    if left is None or right is None:
        return None
    a, b = json.loads(left), json.loads(right)
    if isinstance(a, dict) and isinstance(b, dict):
        return json.dumps({**a, **b}, separators=(",", ":"))
    a = a if isinstance(a, list) else [a]
    b = b if isinstance(b, list) else [b]
    return json.dumps(a + b, separators=(",", ":"))


def jsonb_pretty(value: str | None) -> str | None:
    if value is None:
        return None
    return json.dumps(json.loads(value), indent=4, ensure_ascii=False)


def json_path(pg_path: str) -> str:
    """PostgreSQL's `{a,0,b}` path (#>, #>>) as the JSONPath DuckDB reads: `$."a"[0]."b"`."""
    from engine.sql.arrays import parse

    out = "$"
    for key in parse(pg_path):
        if key is None:
            return ""
        out += f"[{key}]" if re.fullmatch(r"-?\d+", key) else '."' + key.replace('"', '\\"') + '"'
    return out
