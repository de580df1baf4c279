"""Named points in flush and compaction where tests can inject a failure, a crash or a pause.

Off unless the config lists them, e.g. `[failpoints] "flush.after_parquet" = "error"`.
Actions: "error" (every time), "error:N" (the first N times, then pass: a fault that gets
fixed), "crash" (exit at once, as kill -9 would), "sleep:MS" (hold the step, so a test can
act while the job is running), "off".
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time

from engine.errors import InjectedFault

log = logging.getLogger("tierd.failpoints")

_ACTION = re.compile(r"^(error(:\d+)?|crash|off|sleep:\d+)$")


class Failpoints:
    def __init__(self, points: dict[str, str] | None = None):
        self._points: dict[str, str] = {}
        self._lock = threading.Lock()
        for name, action in (points or {}).items():
            self.set(name, action)

    def set(self, name: str, action: str) -> None:
        if not _ACTION.match(action):
            raise ValueError(f"failpoint {name!r}: action must be error, error:N, crash, sleep:MS or off, not {action!r}")
        with self._lock:
            self._points[name] = action

    def hit(self, name: str) -> None:
        with self._lock:
            action = self._points.get(name)
            if not action or action == "off":
                return
            if action.startswith("error:"):
                left = int(action.split(":")[1])
                if left <= 0:
                    return
                self._points[name] = f"error:{left - 1}"
        if action == "crash":
            log.error("failpoint %s: crashing the process", name)
            os._exit(137)
        if action.startswith("sleep:"):
            log.warning("failpoint %s: sleeping %s ms", name, action.split(":")[1])
            time.sleep(int(action.split(":")[1]) / 1000)
            return
        raise InjectedFault(f"injected fault at failpoint {name}")
