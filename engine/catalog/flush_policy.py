"""FLUSH_POLICY values: `rows:N`, `interval:S`, both comma-separated, or `manual`."""
from __future__ import annotations

from dataclasses import dataclass

from engine.errors import InvalidParameterValue

MAX_ROWS = 1_000_000_000
MAX_INTERVAL = 365 * 24 * 3600


@dataclass(frozen=True)
class FlushPolicy:
    rows: int | None = None
    interval: int | None = None

    @property
    def manual(self) -> bool:
        return self.rows is None and self.interval is None

    def __str__(self) -> str:
        if self.manual:
            return "manual"
        parts = []
        if self.rows is not None:
            parts.append(f"rows:{self.rows}")
        if self.interval is not None:
            parts.append(f"interval:{self.interval}")
        return ",".join(parts)


def parse_flush_policy(text: str) -> FlushPolicy:
    raw = text.strip().lower()
    if raw == "manual":
        return FlushPolicy()
    if not raw:
        raise InvalidParameterValue("FLUSH_POLICY must not be empty; use 'rows:N', 'interval:S', both, or 'manual'")
    found: dict[str, int] = {}
    for part in raw.split(","):
        key, sep, value = part.strip().partition(":")
        key = key.strip()
        if key not in ("rows", "interval"):
            raise InvalidParameterValue(
                f"invalid FLUSH_POLICY {text!r}: unknown key {key!r} (expected rows, interval or manual)"
            )
        if key in found:
            raise InvalidParameterValue(f"invalid FLUSH_POLICY {text!r}: {key} given twice")
        if not sep or not value.strip():
            raise InvalidParameterValue(f"invalid FLUSH_POLICY {text!r}: {key} needs a value, e.g. {key}:100")
        try:
            n = int(value.strip())
        except ValueError:
            raise InvalidParameterValue(f"invalid FLUSH_POLICY {text!r}: {key} value {value.strip()!r} is not an integer") from None
        limit = MAX_ROWS if key == "rows" else MAX_INTERVAL
        if not 1 <= n <= limit:
            raise InvalidParameterValue(f"invalid FLUSH_POLICY {text!r}: {key} must be between 1 and {limit}")
        found[key] = n
    return FlushPolicy(rows=found.get("rows"), interval=found.get("interval"))
