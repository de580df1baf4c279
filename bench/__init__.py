"""tierd's benchmark: tierd vs PostgreSQL 15 vs DuckDB in-process. Run it with
`python bench/run.py [--smoke]` from the repository root (or `make bench` / `make bench-smoke`).

    run.py         the runner: arguments, the run loop, writing bench/results/latest.md
    harness.py     the Bench context, Measurement, attempt/bounded/median and answer checks
    servers.py     the throw-away PostgreSQL 15 cluster and tierd daemon
    data.py        the generated events rows and how they go into a table
    cold_tier.py   STORAGE … WAIT jobs, manifests' Parquet files, DuckDB over them
    report.py      the Markdown report
    workloads/     one module per workload family; WORKLOADS (the order) in its __init__.py
"""
