"""Postgres bytea text input: hex (`\\x0001ff`) and escape (`a\\000b`) formats.

Shared by the wire (text-format bytea parameters) and the engine (string literals and
untyped parameters written to a BYTEA column), so both read `'\\x0001ff'` as 3 bytes.
Also `encode(bytea, format)` and `decode(text, format)` (base64, hex, escape), as DuckDB
UDFs run them (engine/sql/functions.py), with PostgreSQL's line breaks and errors.
"""
from __future__ import annotations

import base64
import binascii
import re

from engine.errors import InvalidTextRepresentation

_OCTAL = re.compile(rb"\\([0-7]{3})|\\\\")


def bytea_from_text(text: str) -> bytes:
    if text.startswith("\\x"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise InvalidTextRepresentation(
                f'invalid hexadecimal data in bytea: "{text[:40]}"') from None
    # Postgres "escape" format: \\ and \nnn octal.
    raw = text.encode()
    return _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]) if m.group(1) else b"\\", raw)


_ENCODINGS = ("base64", "hex", "escape")
_ESCAPE_OUT = re.compile(rb"[\x00\x80-\xff\\]")
_ESCAPE_IN = re.compile(r"\\([0-7]{3})|\\\\|\\")


def _encoding(name: str) -> str:
    kind = name.lower()
    if kind not in _ENCODINGS:
        raise ValueError(f'[22023] unrecognized encoding: "{name}"')
    return kind


def encode(data: bytes, name: str) -> str | None:
    """PostgreSQL's encode(): base64 in lines of 76 characters, lower-case hex, or escape
    (zero bytes, bytes with the high bit set and backslashes as \\nnn / \\\\). An empty
    format name gives NULL, not Postgres's error: Describe runs a statement with '' for each
    text parameter (engine/session/reads.py `_schema_of`), `encode($1, $2)` included."""
    if data is None or not name:
        return None
    kind = _encoding(name)
    if kind == "base64":
        return base64.encodebytes(data).decode().rstrip("\n")
    if kind == "hex":
        return data.hex()
    return _ESCAPE_OUT.sub(lambda m: b"\\\\" if m.group() == b"\\" else b"\\%03o" % m.group()[0],
                           data).decode("latin-1")


def decode(text: str, name: str) -> bytes | None:
    """PostgreSQL's decode(): the reverse of encode(); base64 and hex skip whitespace (an
    empty format name: NULL, as for encode)."""
    if text is None or not name:
        return None
    kind = _encoding(name)
    if kind == "base64":
        compact = "".join(text.split())
        try:
            return base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("[22023] invalid base64 end sequence" if len(compact) % 4
                             else "[22023] invalid symbol found while decoding base64 sequence") from None
    if kind == "hex":
        compact = "".join(text.split())
        if len(compact) % 2:
            raise ValueError("[22023] invalid hexadecimal data: odd number of digits")
        try:
            return bytes.fromhex(compact)
        except ValueError:
            raise ValueError("[22023] invalid hexadecimal digit") from None

    out, at = bytearray(), 0
    for m in _ESCAPE_IN.finditer(text):
        out += text[at:m.start()].encode()
        if m.group(1):
            out.append(int(m.group(1), 8) & 0xFF)
        elif m.group() == "\\\\":
            out += b"\\"
        else:
            raise ValueError("[22P02] invalid input syntax for type bytea")
        at = m.end()
    return bytes(out + text[at:].encode())
