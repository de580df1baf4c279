"""The one picture of a run (bench/results/ratios.png): for every workload, how fast tierd is
next to PostgreSQL and next to DuckDB, on one log axis where right of 1 means tierd is faster.
A table of 30 ratios is hard to scan; a chart shows at once which patterns are far off."""
from __future__ import annotations

from pathlib import Path

from bench.harness import DUCK, PG, TIERD, Measurement


def speedups(m: Measurement, other: str) -> float | None:
    """tierd's speed relative to `other` (>1 = tierd faster), for rates and for times alike."""
    t, o = m.values.get(TIERD), m.values.get(other)
    if not isinstance(t, float) or not isinstance(o, float) or t <= 0 or o <= 0:
        return None
    return t / o if m.throughput else o / t


def draw(results: list[Measurement], path: Path, title: str) -> Path | None:
    """Write the chart; None when no workload has a ratio (e.g. a --skip-tierd run)."""
    rows = [(m.name, speedups(m, PG), speedups(m, DUCK)) for m in results]
    rows = [r for r in rows if r[1] is not None or r[2] is not None]
    if not rows:
        return None
    import matplotlib
    matplotlib.use("Agg")  # no display on a server or in CI
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    height = 0.38
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(rows) + 1.6))
    ys = range(len(rows))
    for offset, idx, label, color in ((-height / 2, 1, "vs PostgreSQL 15", "#336791"),
                                      (height / 2, 2, "vs DuckDB in-process", "#d4a017")):
        pairs = [(y + offset, r[idx]) for y, r in zip(ys, rows) if r[idx] is not None]
        if pairs:
            # bars grow from 1×: to the left where tierd is slower, to the right where faster
            ax.barh([p[0] for p in pairs], [p[1] - 1 for p in pairs], height=height, left=1,
                    color=color, label=label)
            for y, v in pairs:
                ax.text(v * (1.06 if v >= 1 else 0.94), y, f"{v:.2f}×", va="center", fontsize=7,
                        ha="left" if v >= 1 else "right")
    values = [v for r in rows for v in r[1:] if v is not None]
    span = max(4.0, max(values) * 2, 1 / min(values) * 2)
    ax.set_xscale("log")
    ax.set_xlim(1 / span, span)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(list(ys), [_short(r[0]) for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("tierd speed relative to the other system (log scale; >1 = tierd faster)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _short(name: str, width: int = 70) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"
