"""One door for cold-tier I/O: every Parquet and manifest read or write goes through a Storage.

Two kinds sit behind the same interface: a local directory (`FilesystemStorage`) and an S3
bucket prefix (`engine/storage/s3.py`). Writes are atomic for readers: a filesystem write
goes to a temp name, is fsync'd and renamed; an S3 PUT is atomic by itself.
"""
from __future__ import annotations

import errno
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field

from engine.errors import DiskFull

TMP_MARK = ".tmp-"
SECRET_KEYS = ("secret_access_key", "session_token", "password")


@dataclass
class StorageCheck:
    status: str  # healthy | degraded | unreachable
    readable: bool
    writable: bool
    listable: bool
    deletable: bool
    latency_ms: float
    error: str | None


@dataclass
class Storage:
    storage_id: str
    base: str  # absolute directory, or s3://bucket/prefix
    storage_type: str = "filesystem"
    name: str = ""
    description: str = ""
    shared_tables_template: str = "{namespace}/{tableName}"
    user_tables_template: str = "{namespace}/{tableName}/{userId}"
    config: dict = field(default_factory=dict)

    # --- layout -------------------------------------------------------------------
    def scope_dir(self, namespace: str, table: str, user_id: str | None = None) -> str:
        """Relative directory of one table scope (a SHARED table, or one user of a USER table)."""
        if user_id is None:
            return self.shared_tables_template.format(namespace=namespace, tableName=table)
        return self.user_tables_template.format(namespace=namespace, tableName=table, userId=user_id)

    def redacted_config(self) -> dict:
        return {k: ("********" if k in SECRET_KEYS and v else v) for k, v in self.config.items()}

    # --- I/O, per kind ----------------------------------------------------------------
    def write_atomic(self, rel: str, data: bytes) -> int:
        raise NotImplementedError

    def read(self, rel: str) -> bytes | None:
        raise NotImplementedError

    def list(self, rel_dir: str) -> list[str]:
        """Names directly under `rel_dir` (used by recovery and checks, never by queries)."""
        raise NotImplementedError

    def delete(self, rel: str) -> None:
        raise NotImplementedError

    def delete_tree(self, rel_dir: str) -> None:
        raise NotImplementedError

    def reader_path(self, rel: str) -> str:
        """The path DuckDB's read_parquet uses for `rel`."""
        raise NotImplementedError

    def duckdb_setup(self) -> list[str]:
        """SQL that lets DuckDB read this storage (extensions, secrets); none for local files."""
        return []

    def close(self) -> None:
        pass

    def check(self) -> StorageCheck:
        """Write, list, read and delete a probe object; the basis of STORAGE CHECK."""
        rel = f".tierd-check/{uuid.uuid4().hex}"
        payload = b"tierd storage check"
        started = time.monotonic()
        flags = {"writable": False, "listable": False, "readable": False, "deletable": False}
        error = None
        try:
            self.write_atomic(rel, payload)
            flags["writable"] = True
            flags["listable"] = rel.rsplit("/", 1)[1] in self.list(".tierd-check")
            flags["readable"] = self.read(rel) == payload
            self.delete(rel)
            flags["deletable"] = self.read(rel) is None
        except Exception as exc:  # the check reports, it does not raise
            error = f"{type(exc).__name__}: {exc}"
        latency = (time.monotonic() - started) * 1000
        ok = sum(flags.values())
        status = "healthy" if ok == 4 else ("unreachable" if not flags["writable"] and not flags["readable"] else "degraded")
        return StorageCheck(status=status, latency_ms=round(latency, 3), error=error, **flags)


@dataclass
class FilesystemStorage(Storage):
    def path(self, rel: str) -> str:
        full = os.path.normpath(os.path.join(self.base, rel))
        if not (full == self.base or full.startswith(self.base + os.sep)):
            raise ValueError(f"path {rel!r} escapes storage {self.storage_id!r}")
        return full

    def write_atomic(self, rel: str, data: bytes) -> int:
        final = self.path(rel)
        tmp = f"{final}{TMP_MARK}{uuid.uuid4().hex[:8]}"
        try:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            _fsync_dir(os.path.dirname(final))
        except BaseException as exc:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise disk_full(final, exc) from exc
            raise
        return len(data)

    def read(self, rel: str) -> bytes | None:
        try:
            with open(self.path(rel), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def list(self, rel_dir: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(rel_dir)))
        except FileNotFoundError:
            return []

    def delete(self, rel: str) -> None:
        try:
            os.unlink(self.path(rel))
        except FileNotFoundError:
            pass

    def delete_tree(self, rel_dir: str) -> None:
        shutil.rmtree(self.path(rel_dir), ignore_errors=True)

    def reader_path(self, rel: str) -> str:
        return self.path(rel)


def disk_full(path: str, exc: OSError) -> DiskFull:
    """A full storage directory as Postgres words a full disk (53100), not OSError's text."""
    return DiskFull(f'could not extend file "{path}": {os.strerror(exc.errno)}',
                    hint="Check free disk space.")


def _fsync_dir(d: str) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
