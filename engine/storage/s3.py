"""S3 storage: a bucket prefix as a cold tier, written with pyarrow and read natively by DuckDB.

Client library: pyarrow's `S3FileSystem` (the AWS C++ SDK inside pyarrow, already a dependency
for Parquet). boto3 was the alternative and is ruled out: botocore pins python-dateutil<3, which
conflicts with our python-dateutil==4.0.0 pin, and it would add five packages for what pyarrow
already does. What pyarrow gives and how this module uses it:
- `allow_delayed_open=True` and `background_writes=False`: a write is ONE PutObject, sent and
  acknowledged inside `write_atomic` (without delayed open pyarrow starts a multipart upload:
  three requests). Objects above pyarrow's part size (10 MiB) go up as a multipart upload,
  which is equally invisible to readers until it completes.
- Errors are `OSError`s whose text names bucket and key and carries "AWS Error <CODE>" and, for
  HTTP errors, "HTTP status <N>". They never contain credentials (checked), but this module
  still re-raises everything as `S3StorageError`, written by us, with the secret redacted from
  the detail and the original exception not chained.
- Timeouts: `connect_timeout` works everywhere; `request_timeout` (pyarrow's docs say Windows and
  macOS only) works on Linux too, as curl's low-speed limit: a request that moves no byte for
  that long fails with "curlCode: 28". Measured against a frozen (SIGSTOPped) SeaweedFS: a
  HEAD/GET/LIST fails after `request_timeout`, a PUT after `request_timeout` + ~6 s.
- pyarrow's own retries are off (`max_attempts=1`); `_call` retries transient failures
  (connection refused/reset, timeouts, HTTP 5xx, throttling) with exponential backoff, at most
  `max_attempts` (3) tries within `retry_deadline_s`, so a dead endpoint fails an operation in
  well under a second and a frozen one in a few `request_timeout`s. Permanent errors (access
  denied, no such bucket, bad signature) fail at once.
- Quirks handled here: `delete_file` of a missing key raises (we ignore it: delete is
  idempotent); a read is HEAD + ranged GET, so a read racing an overwrite of the same key could
  mix versions: `read` compares the ETag before and after and reads again if it changed.
  pyarrow keeps a directory visible after its last file is deleted by writing an empty
  `dir/` marker object; `list` then shows that (empty) directory, as os.listdir would, and
  `check()` leaves an empty `.tierd-check/` behind. pyarrow uploads with
  `Content-Encoding: aws-chunked`, which SeaweedFS keeps as object metadata (harmless to readers).
- An S3 PUT whose answer never came (timeout) may still land later: callers must treat a failed
  write as "maybe written" (object names that are reused must be rewritten with the same bytes,
  and manifests re-read before they are trusted).

DuckDB reads the objects natively through the httpfs extension: `duckdb_setup()` returns the
statements that load it (by file path, from the `duckdb-extension-httpfs` wheel, which exists for
duckdb 1.5.5 and not 1.5.6, so duckdb is pinned to 1.5.5) and create a temporary secret SCOPEd
to this storage's base, so two storages on different endpoints or credentials coexist in one
DuckDB. The secret's statement carries the secret key in clear: never log those statements.
"""
from __future__ import annotations

import importlib.util
import os
import posixpath
import random
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from engine.storage.backend import SECRET_KEYS, Storage

DEFAULT_REGION = "us-east-1"
REDACTED = "********"

# "AWS Error <CODE>" codes (AWS C++ SDK CoreErrors / S3Errors names) worth another try.
_TRANSIENT_CODES = {
    "NETWORK_CONNECTION", "REQUEST_TIMEOUT", "SERVICE_UNAVAILABLE", "INTERNAL_FAILURE",
    "SLOW_DOWN", "THROTTLING", "REQUEST_TIME_TOO_SKEWED", "UNKNOWN_NETWORK",
}
_AWS_CODE = re.compile(r"AWS Error ([A-Z_]+)")
_HTTP_STATUS = re.compile(r"HTTP status (\d{3})")


class S3StorageError(OSError):
    """An S3 operation failed. The message names the operation, the object's s3:// URL and the
    endpoint, never a credential. `transient` says whether trying again later may succeed."""

    def __init__(self, op: str, url: str, endpoint: str, detail: str, transient: bool, attempts: int):
        self.op = op
        self.url = url
        self.endpoint = endpoint
        self.detail = detail
        self.transient = transient
        self.attempts = attempts
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"S3 {op} of {url} at {endpoint} failed{tries}: {detail}")

    def __str__(self) -> str:  # OSError's default would prefix errno fields
        return self.args[0]


def is_transient(message: str) -> bool:
    m = _HTTP_STATUS.search(message)
    if m and (m.group(1).startswith("5") or m.group(1) in ("408", "429")):
        return True
    m = _AWS_CODE.search(message)
    if m and m.group(1) in _TRANSIENT_CODES:
        return True
    return "curlCode: " in message and ("Timeout" in message or "connect" in message.lower())


def httpfs_extension_path() -> str | None:
    """The httpfs extension file built for the installed duckdb, or None.

    Looked up in the `duckdb-extension-httpfs` wheel (`duckdb_extension_httpfs/extensions/
    v<version>/httpfs.duckdb_extension`), then in DuckDB's own extension directory
    (~/.duckdb/extensions/v<version>/<platform>/). TIERD_HTTPFS_EXTENSION overrides both.
    An extension built for another duckdb version refuses to load, so only an exact match counts.
    """
    override = os.environ.get("TIERD_HTTPFS_EXTENSION")
    if override:
        return override if os.path.isfile(override) else None
    import duckdb

    version = "v" + duckdb.__version__.lstrip("v")
    spec = importlib.util.find_spec("duckdb_extension_httpfs")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            path = os.path.join(root, "extensions", version, "httpfs.duckdb_extension")
            if os.path.isfile(path):
                return path
    home = os.path.join(os.path.expanduser("~"), ".duckdb", "extensions", version)
    if os.path.isdir(home):
        for platform in sorted(os.listdir(home)):
            path = os.path.join(home, platform, "httpfs.duckdb_extension")
            if os.path.isfile(path):
                return path
    return None


def duckdb_http_settings(timeout_s: int = 5, retries: int = 1) -> list[str]:
    """Connection-wide httpfs limits. DuckDB's defaults (http_timeout 30 s, http_retries 3) make a
    query against a frozen S3 endpoint hang ~120 s before its IOException; with these, ~10 s.
    Run them after `duckdb_setup()`: before httpfs is loaded DuckDB does not know these settings
    and tries to download the extension (autoinstall) to find them."""
    return [f"SET http_timeout = {int(timeout_s)}", f"SET http_retries = {int(retries)}"]


def _sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass(repr=False, eq=False)
class S3Storage(Storage):
    """`base` is s3://bucket[/prefix]; `config` keys: endpoint (http[s]://host:port, optional for
    AWS), region, allow_http, access_key_id, secret_access_key, session_token, path_style
    (default true), connect_timeout (s, 1), request_timeout (s, 3), max_attempts (3),
    backoff_base_s (0.2, doubled per retry), retry_deadline_s (10: no new attempt past it)."""

    storage_type: str = "s3"
    _fs: object = field(default=None, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"storage '{self.storage_id}': base must be s3://bucket[/prefix], not {self.base!r}")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        cfg = self.config or {}
        self.region = str(cfg.get("region") or DEFAULT_REGION)
        self.allow_http = _truthy(cfg.get("allow_http", False))
        self.path_style = _truthy(cfg.get("path_style", True))
        endpoint = str(cfg.get("endpoint") or "").strip()
        if endpoint:
            ep = urlsplit(endpoint if "://" in endpoint else f"{'http' if self.allow_http else 'https'}://{endpoint}")
            if ep.scheme not in ("http", "https") or not ep.netloc:
                raise ValueError(f"storage '{self.storage_id}': endpoint must be http[s]://host[:port], not {endpoint!r}")
            if ep.scheme == "http" and not self.allow_http:
                raise ValueError(f"storage '{self.storage_id}': endpoint {endpoint} is plain http; "
                                 "set \"allow_http\": true in CONFIG to allow it")
            self.scheme = ep.scheme
            self.host = ep.netloc  # host:port, what pyarrow's endpoint_override and DuckDB's ENDPOINT take
        else:
            self.scheme = "http" if self.allow_http else "https"
            self.host = ""
        self.endpoint_label = f"{self.scheme}://{self.host}" if self.host else f"AWS S3 ({self.region})"
        self.access_key_id = cfg.get("access_key_id") or None
        self.secret_access_key = cfg.get("secret_access_key") or None
        self.session_token = cfg.get("session_token") or None
        self.connect_timeout = float(cfg.get("connect_timeout", 1.0))
        self.request_timeout = float(cfg.get("request_timeout", 3.0))
        self.max_attempts = max(1, int(cfg.get("max_attempts", 3)))
        self.backoff_base_s = float(cfg.get("backoff_base_s", 0.2))
        self.retry_deadline_s = float(cfg.get("retry_deadline_s", 10.0))

    def __repr__(self) -> str:
        return (f"S3Storage(storage_id={self.storage_id!r}, base={self.base!r}, "
                f"config={self.redacted_config()!r})")

    # --- keys -------------------------------------------------------------------------
    def key(self, rel: str) -> str:
        """The object key of `rel` (relative to the base); refuses anything escaping the base."""
        rel = rel or ""
        if rel.startswith("/"):
            raise ValueError(f"path {rel!r} escapes storage {self.storage_id!r}")
        norm = posixpath.normpath(rel) if rel else "."
        if norm == ".." or norm.startswith("../"):
            raise ValueError(f"path {rel!r} escapes storage {self.storage_id!r}")
        if norm == ".":
            return self.prefix
        return f"{self.prefix}/{norm}" if self.prefix else norm

    def _path(self, rel: str) -> str:
        """bucket/key, the form pyarrow takes."""
        k = self.key(rel)
        return f"{self.bucket}/{k}" if k else self.bucket

    def url(self, rel: str) -> str:
        k = self.key(rel)
        return f"s3://{self.bucket}/{k}" if k else f"s3://{self.bucket}"

    # --- client -----------------------------------------------------------------------
    @property
    def fs(self):
        with self._lock:
            if self._fs is None:
                import pyarrow.fs as pafs

                self._fs = pafs.S3FileSystem(
                    access_key=self.access_key_id,
                    secret_key=self.secret_access_key,
                    session_token=self.session_token,
                    anonymous=not (self.access_key_id and self.secret_access_key),
                    region=self.region,
                    scheme=self.scheme,
                    endpoint_override=self.host or None,
                    force_virtual_addressing=not self.path_style if self.host else False,
                    connect_timeout=self.connect_timeout,
                    request_timeout=self.request_timeout,
                    allow_delayed_open=True,
                    background_writes=False,
                    retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
                )
            return self._fs

    def redact(self, text: str) -> str:
        for k in SECRET_KEYS:
            v = (self.config or {}).get(k)
            if v and isinstance(v, str) and len(v) >= 4:
                text = text.replace(v, REDACTED)
        return text

    def _call(self, op: str, rel: str, fn):
        """Run fn() with bounded retries of transient failures; FileNotFoundError passes through."""
        deadline = time.monotonic() + self.retry_deadline_s
        delay = self.backoff_base_s
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                return fn()
            except FileNotFoundError:
                raise
            except (OSError, ValueError) as exc:  # pyarrow raises OSError (ArrowIOError) and ArrowInvalid
                detail = self.redact(str(exc)) or type(exc).__name__
                transient = isinstance(exc, OSError) and is_transient(detail)
                now = time.monotonic()
                # no new attempt that would likely end past the deadline (a frozen server times out
                # every attempt: each costs about as long as the last one did)
                if not transient or attempt >= self.max_attempts or now + delay + (now - started) > deadline:
                    raise S3StorageError(op, self.url(rel), self.endpoint_label, detail, transient, attempt) from None
            time.sleep(delay * random.uniform(0.8, 1.2))
            delay *= 2

    # --- I/O ----------------------------------------------------------------------------
    def write_atomic(self, rel: str, data: bytes) -> int:
        """One PUT (atomic for readers, idempotent: the same bytes under the same key)."""
        path = self._path(rel)
        data = bytes(data)

        def put():
            with self.fs.open_output_stream(path) as out:
                out.write(data)

        self._call("write", rel, put)
        return len(data)

    def read(self, rel: str) -> bytes | None:
        path = self._path(rel)

        def get():
            for _ in range(3):
                with self.fs.open_input_stream(path) as f:  # HEAD, then a ranged GET
                    etag = f.metadata().get("ETag")
                    data = f.read()
                if etag is None:
                    return data
                with self.fs.open_input_stream(path) as f:  # HEAD: same version as the one read?
                    if f.metadata().get("ETag") == etag:
                        return data
            return data

        try:
            return self._call("read", rel, get)
        except FileNotFoundError:
            return None

    def list(self, rel_dir: str) -> list[str]:
        """Names directly under `rel_dir` (objects and sub-"directories"); [] if there is none."""
        import pyarrow.fs as pafs

        sel = pafs.FileSelector(self._path(rel_dir), recursive=False, allow_not_found=True)
        try:
            infos = self._call("list", rel_dir, lambda: self.fs.get_file_info(sel))
        except FileNotFoundError:
            return []
        return sorted({i.base_name for i in infos if i.base_name})

    def delete(self, rel: str) -> None:
        path = self._path(rel)
        try:
            self._call("delete", rel, lambda: self.fs.delete_file(path))
        except FileNotFoundError:
            pass

    def delete_tree(self, rel_dir: str) -> None:
        path = self._path(rel_dir)
        if path == self.bucket:
            fn = lambda: self.fs.delete_dir_contents(path, missing_dir_ok=True)  # never the bucket itself
        else:
            fn = lambda: self.fs.delete_dir(path)
        try:
            self._call("delete_tree", rel_dir, fn)
        except FileNotFoundError:
            pass

    def reader_path(self, rel: str) -> str:
        return self.url(rel)

    # --- DuckDB ---------------------------------------------------------------------------
    @property
    def secret_name(self) -> str:
        return "tierd_s3_" + re.sub(r"[^A-Za-z0-9_]", lambda m: f"_{ord(m.group()):02x}", self.storage_id)

    @property
    def scope(self) -> str:
        """The secret's scope: the base with a trailing slash, so s3://b/data never claims s3://b/data2."""
        return self.url("") + "/"

    def duckdb_setup(self) -> list[str]:
        """LOAD httpfs (by file path) and CREATE OR REPLACE SECRET scoped to this storage.

        The secret statement holds the secret key in clear: run it, never log it."""
        ext = httpfs_extension_path()
        if ext is None:
            import duckdb

            raise S3StorageError(
                "setup", self.url(""), self.endpoint_label,
                f"DuckDB's httpfs extension for duckdb {duckdb.__version__} is not installed "
                f"(pip install duckdb-extension-httpfs=={duckdb.__version__})", False, 1)
        opts = ["TYPE s3", f"SCOPE {_sql_str(self.scope)}", f"REGION {_sql_str(self.region)}"]
        if self.access_key_id and self.secret_access_key:
            opts += [f"KEY_ID {_sql_str(self.access_key_id)}", f"SECRET {_sql_str(self.secret_access_key)}"]
            if self.session_token:
                opts.append(f"SESSION_TOKEN {_sql_str(self.session_token)}")
        if self.host:
            opts.append(f"ENDPOINT {_sql_str(self.host)}")
        opts.append(f"URL_STYLE {_sql_str('path' if self.path_style else 'vhost')}")
        opts.append(f"USE_SSL {'true' if self.scheme == 'https' else 'false'}")
        return [
            f"LOAD {_sql_str(ext)}",
            f"CREATE OR REPLACE TEMPORARY SECRET {self.secret_name} ({', '.join(opts)})",
        ]

    def duckdb_teardown(self) -> list[str]:
        """Drop this storage's secret (when the storage is dropped or replaced)."""
        return [f"DROP TEMPORARY SECRET IF EXISTS {self.secret_name}"]

    def close(self) -> None:
        with self._lock:
            self._fs = None
