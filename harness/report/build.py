"""Build the static report: ``index.html`` (Jinja2, CSS inline, no scripts, no external resources) and
the images it shows under ``img/``, all relative, so it works from ``file://`` and offline."""

from __future__ import annotations

import platform
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from harness.atomic import replace_dir
from harness.cli_args import folder
from harness.errors import BadValue
from harness.layout import Assets, Picture, Row
from harness.report import benchmarks
from harness.report.cases import Case, find_cases
from harness.report.layouts import layout
from harness.sections import SECTIONS


@dataclass
class CaseView:
    """A case as the template shows it: pictures, metrics beside their golden, failing images' triples."""

    case: Case
    rows: list[Row]
    status: str  # pass, fail, error, no golden
    metrics: list[dict]  # name, obtained, rounding (judged by the relations), golden, difference, passed
    failures: list[tuple[str, dict, list[Picture]]]  # image name, its check, golden/obtained/diff pictures


def build_report(outputs: str | Path = "out", dest: str | Path = "out/report", backends: list[str] | None = None,
                 benchmarks_root: str | Path = ".benchmarks") -> Path:
    """Write the report of the cases under ``outputs`` to ``dest`` (replacing an earlier report there: a
    Ctrl-C leaves the earlier report or the new one) and return the path of its index.html."""
    dest = folder(dest)
    cases = find_cases(outputs, backends)
    if dest.exists() and any(dest.iterdir()) and not (dest / "index.html").exists():
        raise BadValue(f"{dest} exists and is not a report (no index.html): pass another --out")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        _render(cases, tmp, benchmarks_root)
        replace_dir(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return (dest / "index.html").resolve()


def _render(cases: list[Case], dest: Path, benchmarks_root: str | Path) -> None:
    assets = Assets(dest)
    views = [_view(case, assets) for case in cases]
    by_section = {s.id: [v for v in views if v.case.section.id == s.id] for s in SECTIONS.values()}
    env = Environment(loader=PackageLoader("harness.report", "templates"), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    html = env.get_template("index.html.j2").render(
        sections=[(s, by_section[s.id]) for s in SECTIONS.values()],
        parts={"A": "Part A: the power of diffusion models (DeepFloyd IF)", "B": "Part B: diffusion models from scratch (MNIST)"},
        summary=_summary(views), bench=benchmarks.load(benchmarks_root), environment=_environment(cases))
    (dest / "index.html").write_text(html, encoding="utf-8")


def _view(case: Case, assets: Assets) -> CaseView:
    v = case.verdict
    status = "no golden" if v is None else "error" if "error" in v else "pass" if v["passed"] else "fail"
    golden_metrics, rounding = (v or {}).get("metrics", {}), set(case.meta.get("rounding_metrics", ()))
    metrics = [{"name": name, "obtained": value, "rounding": name in rounding, **golden_metrics.get(name, {})}
               for name, value in case.metrics.items()]
    failures = []
    for name, check in (v or {}).get("images", {}).items():
        if not check.get("passed", True):
            files = check.get("files", {})
            pictures = [assets.copy(case, case.folder / files[kind], f"golden-{name}-{kind}.png", caption)
                        for kind, caption in (("golden", "golden"), ("obtained", "obtained"), ("diff", "|diff| x 5"))
                        if kind in files]
            failures.append((name, check, [p for p in pictures if p is not None]))
    return CaseView(case, layout(case, assets), status, metrics, failures)


def _summary(views: list[CaseView]) -> dict:
    count = {s: sum(v.status == s for v in views) for s in ("pass", "fail", "error", "no golden")}
    broken = sum(not ok for v in views for _, ok in v.case.relations)
    return {"cases": len(views), "backends": sorted({v.case.backend for v in views}), "relations_failed": broken, **count}


def _environment(cases: list[Case]) -> dict:
    runs = [c.run for c in cases if c.run]
    return {
        "report date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run dates": _span(sorted(r.get("date", "") for r in runs if r.get("date"))),
        "devices": ", ".join(sorted({r.get("device", "?") for r in runs})) or "not recorded",
        "threads": ", ".join(sorted({str(r.get("threads")) for r in runs})) or "not recorded",
        "backends": ", ".join(dict.fromkeys(c.backend for c in cases)),
        "seeds": ", ".join(sorted({str(c.meta.get("seed")) for c in cases})),
        "versions": ", ".join(sorted({f"{k} {v}" for r in runs for k, v in r.get("versions", {}).items()})) or "not recorded",
        "report built on": f"{platform.platform()}, {platform.processor() or platform.machine()}",
    }


def _span(dates: list[str]) -> str:
    if not dates:
        return "not recorded"
    return dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"


def _num(value) -> str:
    """Numbers as the tables show them: 4 significant digits, inf and nan spelled out."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    return f"{value:.4g}"
