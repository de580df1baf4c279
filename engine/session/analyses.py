"""What a statement's analysis found, kept per session until the catalog or the roles change.

A statement text seen before (prepared, or repeated in the simple protocol) reuses its
analysis: a write's plan, target, sandbox and privilege verdicts (engine/session/writes.py),
a read's aggregate result-type casts (engine/session/reads.py). Each execution then only does
what depends on its parameters and the data.
"""
from __future__ import annotations

from typing import Callable, TypeVar

from engine import metrics
from engine.session.state import SessionState

T = TypeVar("T")
_ANALYSES_KEPT = 512  # per session; a simple-protocol client's one-off texts must not grow it


def analysis(s: SessionState, key: tuple, analyse: Callable[[], T], path: str = "write_analysis") -> T:
    """What `analyse()` found for `key` (a statement text or shape) the last time this role,
    with this search path, asked, if no catalog or role change happened since (CREATE, ALTER,
    DROP, GRANT, REVOKE, ALTER ROLE bump the generations): a write statement's plan, target,
    sandbox and privilege verdicts are worked out once, and each execution only decodes its
    parameters and writes. An error (no such table, no privilege) is never kept."""
    eng = s.engine
    version = (eng.catalog.generation, eng.roles.generation)
    full = (key, s.user, tuple(s.schemas))
    hit = s.write_analyses.get(full)
    if hit is not None and hit[0] == version:
        metrics.inc("tierd_fast_path_total", path=path, outcome="used")
        return hit[1]
    value = analyse()
    if len(s.write_analyses) >= _ANALYSES_KEPT:
        s.write_analyses.clear()
    s.write_analyses[full] = (version, value)
    metrics.inc("tierd_fast_path_total", path=path, outcome="fallback")
    return value
