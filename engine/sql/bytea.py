"""Postgres bytea text input: hex (`\\x0001ff`) and escape (`a\\000b`) formats.

Shared by the wire (text-format bytea parameters) and the engine (string literals and
untyped parameters written to a BYTEA column), so both read `'\\x0001ff'` as 3 bytes.
"""
from __future__ import annotations

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
