"""The Markdown report (bench/results/latest.md): machine and versions, one table row per
Measurement with the tierd / other ratios, extra sections, SPEC §9 targets, notes, problems."""
from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import tomllib
from pathlib import Path

import duckdb
import psycopg

from bench.harness import DUCK, PG, REPO, SYSTEMS, TIERD, Bench, Measurement
from bench.servers import TIERD_MAX_SEGMENTS, tierd_binary


def fmt_value(v: float | str | None, unit: str) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    return f"{v:,.0f} {unit}" if unit.endswith("/s") or unit == "MiB" else f"{v:,.1f} ms"


def fmt_ratio(m: Measurement, other: str) -> str:
    """Throughput: tierd/other (>1 = tierd better). Latency: time tierd/other (<1 = tierd better)."""
    t, o = m.values.get(TIERD), m.values.get(other)
    if not isinstance(t, float) or not isinstance(o, float) or o == 0:
        return "—"
    return f"{t / o:.2f}×"


def machine_info() -> str:
    """nproc, memory and CPU model: the numbers mean nothing without them."""
    mem, model = "?", "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{platform.system()} {platform.release()}, nproc {len(os.sched_getaffinity(0))}, {mem} RAM, {model}"


def tierd_version() -> str:
    """`tierd version` if the CLI has it, else the installed or pyproject version."""
    with contextlib.suppress(Exception):
        out = subprocess.run([str(tierd_binary()), "version"], capture_output=True, text=True, timeout=15)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    with contextlib.suppress(Exception):
        return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"] + " (pyproject)"
    return "unknown"


def git_rev() -> str:
    with contextlib.suppress(Exception):
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    return "unknown"


def pg_settings(b: Bench) -> str:
    with contextlib.suppress(Exception), b.pg() as conn:
        get = lambda k: conn.execute(f"SHOW {k}").fetchone()[0]  # noqa: E731
        return (f"PostgreSQL {get('server_version')} (fsync={get('fsync')}, "
                f"synchronous_commit={get('synchronous_commit')}, shared_buffers={get('shared_buffers')})")
    return "PostgreSQL ?"


def render(b: Bench, results: list[Measurement], header: dict[str, str]) -> str:
    """The Markdown report: header, table, notes, problems."""
    a = b.args
    lines = [
        f"# tierd benchmark{' (smoke)' if a.smoke else ''}",
        "",
        f"- Date: {header['date']}",
        f"- Machine: {machine_info()}",
        f"- tierd: {header['tierd']} (git {git_rev()}); {header['pg']}; DuckDB {duckdb.__version__}; "
        f"psycopg {psycopg.__version__}; Python {platform.python_version()}",
        f"- Runs: medians; queries: {a.query_runs} timed runs after 1 untimed warm-up; single-row INSERT: "
        f"{a.runs} runs; flush: {a.runs} fresh tables; loads and compaction: measured once; "
        "all traffic over TCP 127.0.0.1",
        f"- tierd config: `[compaction] max_segments = {TIERD_MAX_SEGMENTS}` (no automatic compaction; "
        "only the benchmark's STORAGE COMPACT compacts)",
        f"- tierd peak RSS (VmHWM): {header.get('rss', 'n/a')}; total harness time {header['elapsed']}",
        "",
        f"| workload | {TIERD} | {PG} | {DUCK} | tierd / PostgreSQL | tierd / DuckDB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        how = f"{m.unit}; ratio >1 = tierd faster" if m.throughput else \
            "MiB" if m.unit == "MiB" else "ms; ratio = time tierd/other, <1 = tierd faster"
        lines.append(f"| {m.name} ({how}) | " + " | ".join(fmt_value(m.values.get(s), m.unit) for s in SYSTEMS)
                     + f" | {fmt_ratio(m, PG)} | {fmt_ratio(m, DUCK)} |")
    for section in b.sections:
        lines += [""] + section
    if b.targets:
        scale = " (smoke sizes: verdicts are not meaningful)" if a.smoke else ""
        lines += ["", f"SPEC §9 targets{scale}:", "", "| target | measured | verdict |", "|---|---|---|"] + b.targets
    lines += ["", "Notes:"] + [f"- {m.name}: {m.note}" for m in results if m.note] + [f"- {n}" for n in b.notes]
    if b.problems:
        lines += ["", "**PROBLEMS (the run failed):**"] + [f"- {p}" for p in b.problems]
    return "\n".join(lines) + "\n"
