"""One door for cold-tier file I/O: every Parquet and manifest write goes through a Storage.

Only the filesystem kind exists so far; S3 will sit behind the same interface.
Writes are atomic: data goes to a temp name, is fsync'd, then renamed into place.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

TMP_MARK = ".tmp-"


@dataclass
class Storage:
    storage_id: str
    base: str  # absolute directory
    storage_type: str = "filesystem"
    name: str = ""
    description: str = ""
    shared_tables_template: str = "{namespace}/{tableName}"
    user_tables_template: str = "{namespace}/{tableName}/{userId}"
    config: dict = field(default_factory=dict)

    def scope_dir(self, namespace: str, table: str) -> str:
        """Relative directory of a SHARED table's scope."""
        return self.shared_tables_template.format(namespace=namespace, tableName=table)

    def path(self, rel: str) -> str:
        full = os.path.normpath(os.path.join(self.base, rel))
        if not (full == self.base or full.startswith(self.base + os.sep)):
            raise ValueError(f"path {rel!r} escapes storage {self.storage_id!r}")
        return full

    def write_atomic(self, rel: str, data: bytes) -> int:
        """Write `data` at `rel` so readers see the old file or the new one, never a part."""
        final = self.path(rel)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = f"{final}{TMP_MARK}{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        self._fsync_dir(os.path.dirname(final))
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
        import shutil

        shutil.rmtree(self.path(rel_dir), ignore_errors=True)

    def local_path(self, rel: str) -> str:
        """A path DuckDB can read directly."""
        return self.path(rel)

    @staticmethod
    def _fsync_dir(d: str) -> None:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
