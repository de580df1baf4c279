"""Reading tierd's published Iceberg tables the way other engines do, to compare with tierd's
own SELECT: pyiceberg (`scan().to_arrow()`) and DuckDB (`iceberg_scan`, the extension loaded by
file path from the duckdb-extension-iceberg wheel, as tierd loads httpfs)."""
from __future__ import annotations

import importlib.util
import os

import duckdb
from pyiceberg.catalog import load_catalog

from tests.daemon import wait_for


def extension_path(package: str, name: str) -> str:
    spec = importlib.util.find_spec(package)
    root = list(spec.submodule_search_locations)[0]
    path = os.path.join(root, "extensions", "v" + duckdb.__version__, f"{name}.duckdb_extension")
    assert os.path.isfile(path), f"{path} is missing: pip install {package.replace('_', '-')}=={duckdb.__version__}"
    return path


class catalog:
    """The catalog tierd publishes to, opened at first use (the embedded one exists only after
    the first publish); `s3`: a tests.s3server.S3Server whose bucket holds the table."""

    def __init__(self, uri: str, s3=None):
        self.props = {"type": "sql", "uri": uri, "pool_pre_ping": "true"}
        if s3 is not None:
            self.props.update({"s3.endpoint": s3.endpoint, "s3.access-key-id": s3.access_key,
                               "s3.secret-access-key": s3.secret_key, "s3.region": s3.region,
                               "s3.force-virtual-addressing": "false"})
        self._cat = None

    def __getattr__(self, name):
        if self._cat is None:
            self._cat = load_catalog("tierd", **self.props)  # the SQL catalog keys tables by catalog name
        return getattr(self._cat, name)


def sqlite_uri(data_dir: str) -> str:
    return f"sqlite:///{os.path.join(data_dir, 'iceberg', 'catalog.db')}"


def pyiceberg_rows(cat, identifier: str, columns: list[str]) -> list[tuple]:
    table = cat.load_table(identifier).scan().to_arrow()
    rows = [tuple(r[c] for c in columns) for r in table.to_pylist()]
    return sorted(rows, key=_sort_key)


def duckdb_rows(metadata_location: str, columns: list[str], s3=None) -> list[tuple]:
    con = duckdb.connect(config={"allow_unsigned_extensions": "true", "autoinstall_known_extensions": "false",
                                 "autoload_known_extensions": "false"})
    try:
        con.execute(f"LOAD '{extension_path('duckdb_extension_avro', 'avro')}'")
        con.execute(f"LOAD '{extension_path('duckdb_extension_iceberg', 'iceberg')}'")
        if s3 is not None:
            con.execute(f"LOAD '{extension_path('duckdb_extension_httpfs', 'httpfs')}'")
            con.execute(f"CREATE SECRET (TYPE s3, KEY_ID '{s3.access_key}', SECRET '{s3.secret_key}', "
                        f"ENDPOINT '{s3.endpoint.split('://')[1]}', URL_STYLE 'path', USE_SSL false, "
                        f"REGION '{s3.region}')")
        cols = ", ".join(f'"{c}"' for c in columns)
        arrow = con.execute(f"SELECT {cols} FROM iceberg_scan('{metadata_location}')").to_arrow_table()
        rows = [tuple(r[c] for c in columns) for r in arrow.to_pylist()]
    finally:
        con.close()
    return sorted(rows, key=_sort_key)


def _sort_key(row: tuple) -> tuple:
    return tuple((v is None, "" if v is None else v) for v in row)


def wait_published(conn, qualified: str, timeout: float = 60.0) -> int:
    """Until the table's Iceberg lag is 0 and no publish job is pending; its snapshot id."""
    ns, name = qualified.split(".")

    def settled():
        row = conn.execute("SELECT iceberg_lag, iceberg_snapshot_id FROM system.tables "
                           "WHERE namespace = %s AND table_name = %s", (ns, name)).fetchone()
        busy = conn.execute("SELECT count(*) FROM system.jobs WHERE job_type = 'publish' AND table_name = %s "
                            "AND status IN ('queued', 'running', 'retrying')", (qualified,)).fetchone()[0]
        return row is not None and row[0] == 0 and row[1] is not None and not busy and row[1]

    return wait_for(settled, timeout=timeout, interval=0.1, what=f"{qualified} published to Iceberg")


def tierd_rows(conn, qualified: str, columns: list[str]) -> list[tuple]:
    cols = ", ".join(f'"{c}"' for c in columns)
    return sorted(conn.execute(f"SELECT {cols} FROM {qualified}").fetchall(), key=_sort_key)


def assert_same(conn, cat, qualified: str, columns: list[str], s3=None, identifier: str | None = None) -> list[tuple]:
    """tierd's SELECT over the wire == pyiceberg's scan == DuckDB's iceberg_scan, row for row."""
    wait_published(conn, qualified)
    want = tierd_rows(conn, qualified, columns)
    ident = identifier or qualified
    got_py = pyiceberg_rows(cat, ident, columns)
    assert got_py == want, f"pyiceberg differs from tierd for {qualified}"
    got_duck = duckdb_rows(cat.load_table(ident).metadata_location, columns, s3)
    assert got_duck == want, f"DuckDB iceberg_scan differs from tierd for {qualified}"
    return want
