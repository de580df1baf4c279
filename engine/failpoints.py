"""Named points in flush and recovery where tests can inject a failure or a crash.

Off unless the config lists them: `[failpoints] "flush.after_parquet" = "error"`.
"""
from __future__ import annotations

import logging
import os
import threading

from engine.errors import IoError

log = logging.getLogger("tierd.failpoints")

ACTIONS = ("error", "crash", "off")


class InjectedFault(IoError):
    """Raised by a failpoint set to "error"."""


class Failpoints:
    def __init__(self, points: dict[str, str] | None = None):
        self._points = dict(points or {})
        self._lock = threading.Lock()
        for name, action in self._points.items():
            if action not in ACTIONS:
                raise ValueError(f"failpoint {name!r}: action must be one of {ACTIONS}, not {action!r}")

    def set(self, name: str, action: str) -> None:
        with self._lock:
            self._points[name] = action

    def hit(self, name: str) -> None:
        action = self._points.get(name)
        if not action or action == "off":
            return
        if action == "crash":
            log.error("failpoint %s: crashing the process", name)
            os._exit(137)
        raise InjectedFault(f"injected fault at failpoint {name}")
