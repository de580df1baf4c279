"""Deferred deletion of cold files that a compaction replaced.

A query binds its file list when it starts; files retired after that must outlive it. Each
read registers its start epoch; retired files are deleted once no read older than their
retirement is still running.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from typing import Callable, Iterator

log = logging.getLogger("tierd.reaper")


class FileReaper:
    def __init__(self):
        self.lock = threading.Lock()
        self.epoch = 0
        self.readers: dict[int, int] = {}  # reader id -> epoch it started in
        self.retired: list[tuple[int, Callable[[], None], str]] = []  # (epoch, delete, what)
        self._ids = itertools.count()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self.lock:
            rid = next(self._ids)
            self.readers[rid] = self.epoch
        try:
            yield
        finally:
            with self.lock:
                del self.readers[rid]
            if self.retired:
                self.collect()

    def retire(self, delete: Callable[[], None], what: str) -> None:
        """Schedule `delete` for when every read that might use the file has finished."""
        with self.lock:
            self.retired.append((self.epoch, delete, what))
            self.epoch += 1
        self.collect()

    def collect(self) -> None:
        with self.lock:
            oldest = min(self.readers.values(), default=self.epoch)
            ready = [r for r in self.retired if r[0] < oldest]
            self.retired = [r for r in self.retired if r[0] >= oldest]
        for _, delete, what in ready:
            try:
                delete()
            except OSError as exc:  # left for start-up recovery, which removes unlisted files
                log.warning("could not delete retired %s: %s", what, exc)
