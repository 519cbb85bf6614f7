"""The latest saved pytest-benchmark run (``make bench`` writes ``.benchmarks/<machine>/<machine id>/NNNN_*.json``):
a table per group, the efficiency ratios, and the points of a throughput-over-stride chart (drawn as
inline SVG by the template, one line per group: backend, guidance and batch)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# extra_info columns shown where a run has them: ratios from paired rounds, then what explains them
RATIOS = ("efficiency", "efficiency_loop_only", "batched_speedup", "vs_diffusers", "vs_naive_loop", "loop_ms_per_step",
          "diffusers_loop_ms_per_step", "gflops_per_s", "vs_naive_ceiling")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
WIDTH, HEIGHT, MARGIN = 640, 320, 48


@dataclass
class Series:
    name: str
    colour: str
    points: list[tuple[float, float, float, float]]  # (stride, images/s, x px, y px)


@dataclass
class Chart:
    series: list[Series]
    x_ticks: list[tuple[float, float]]  # (value, px)
    y_ticks: list[tuple[float, float]]
    width: int = WIDTH
    height: int = HEIGHT
    margin: int = MARGIN


@dataclass
class Benchmarks:
    """What the report shows of one saved run; ``path`` None means none is saved."""

    path: Path | None
    datetime: str = ""
    machine: dict = field(default_factory=dict)
    commit: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)  # name, group, params, median_s, extra
    ratio_names: list[str] = field(default_factory=list)
    chart: Chart | None = None


def latest(root: str | Path) -> Path | None:
    """The most recent saved run at any depth under ``root`` (by its recorded datetime, then file name):
    `make bench` saves to ``.benchmarks/<GPU name or cpu>/<pytest-benchmark machine id>/NNNN_*.json``."""
    runs = []
    for path in Path(root).rglob("*.json"):
        try:
            runs.append((json.loads(path.read_text()).get("datetime", ""), path.name, path))
        except (json.JSONDecodeError, OSError):
            continue
    return max(runs)[2] if runs else None


def load(root: str | Path) -> Benchmarks:
    path = latest(root)
    if path is None:
        return Benchmarks(None)
    run = json.loads(path.read_text())
    rows = [{"name": b["name"], "group": b.get("group") or "", "params": b.get("params") or {},
             "median_s": b["stats"]["median"], "extra": b.get("extra_info", {})} for b in run.get("benchmarks", [])]
    ratios = [r for r in RATIOS if any(r in row["extra"] for row in rows)]
    return Benchmarks(path, run.get("datetime", ""), run.get("machine_info", {}), run.get("commit_info", {}),
                      rows, ratios, chart(rows))


def chart(rows: list[dict]) -> Chart | None:
    """images/s over stride, one series per group; None when no benchmark has both."""
    groups: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        stride, ips = row["params"].get("stride"), row["extra"].get("images_per_s")
        if stride is not None and ips is not None:
            groups.setdefault(row["group"] or row["name"], []).append((float(stride), float(ips)))
    if not groups:
        return None
    xs = sorted({x for pts in groups.values() for x, _ in pts})
    y_max = max(y for pts in groups.values() for _, y in pts) * 1.1 or 1.0
    x_lo, x_hi = min(xs), max(xs)

    def px(x: float) -> float:
        return MARGIN + (0.5 if x_hi == x_lo else (x - x_lo) / (x_hi - x_lo)) * (WIDTH - 2 * MARGIN)

    def py(y: float) -> float:
        return HEIGHT - MARGIN - y / y_max * (HEIGHT - 2 * MARGIN)

    series = [Series(name, COLOURS[i % len(COLOURS)], [(x, y, px(x), py(y)) for x, y in sorted(pts)])
              for i, (name, pts) in enumerate(sorted(groups.items()))]
    y_ticks = [(y_max * k / 4, py(y_max * k / 4)) for k in range(5)]
    return Chart(series, [(x, px(x)) for x in xs], y_ticks)
