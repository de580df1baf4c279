"""Read a published tierd table with Daft and write what it read as an Arrow IPC file.

Run by tests/test_iceberg_daft.py with the interpreter of `.venv-readers` (Daft needs a pyarrow
older than tierd's, so it lives in a venv of its own, made by tests/install-test-deps.sh):
    python daft_reader.py CATALOG_URI IDENTIFIER COLUMNS OUT native|ray
"""
import sys

import daft
import pyarrow as pa
from pyiceberg.catalog import load_catalog


def main() -> None:
    uri, identifier, columns, out, runner = sys.argv[1:6]
    if runner == "ray":
        import ray

        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)  # a local Ray cluster
        daft.set_runner_ray()
    else:
        daft.set_runner_native()
    catalog = load_catalog("tierd", type="sql", uri=uri)
    df = daft.read_iceberg(catalog.load_table(identifier)).select(*columns.split(","))
    table = df.to_arrow()
    with pa.OSFile(out, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    if runner == "ray":
        import ray

        ray.shutdown()


if __name__ == "__main__":
    main()
