"""The gradebook of a class (`batch`): per submission grade.json (its rows, the file's hash, the harness version
and parameters that made them) and, with --gradescope, Gradescope's results.json; for the class grades.csv (a
row per submission, a column per section's verdict, points) and index.html (verdicts per section, the
submissions that raised, a link to each report page). Points come from a rubric (TOML: points per section,
share per verdict; harness/data/rubric.toml is the documented default)."""

from __future__ import annotations

import csv
import io
import json
import tomllib
from collections import Counter
from pathlib import Path
from typing import Sequence

from harness.atomic import atomic_write_text
from harness.errors import BadValue
from harness.impl.run import BADGES

DEFAULT_RUBRIC = Path(__file__).parents[1] / "data" / "rubric.toml"
GRADE, GRADESCOPE = "grade.json", "gradescope/results.json"


def rubric(path: Path | None = None) -> dict:
    """{"points": {section: points}, "verdicts": {verdict: share}}; an unreadable file is a one-line error."""
    path = path or DEFAULT_RUBRIC
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        points = {str(k): float(v) for k, v in data["points"].items()}
        shares = {str(k): float(v) for k, v in data["verdicts"].items()}
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise BadValue(f"--rubric {path}: {type(e).__name__}: {e}; it needs a [points] table (section = points) and "
                       f"a [verdicts] table (verdict = share), as {DEFAULT_RUBRIC.name} shipped with the harness") from None
    return {"points": points, "verdicts": shares}


def verdicts(entry: dict, points: dict) -> dict[str, str]:
    """Each graded section's verdict (the rubric's sections, those checked only where the run chose some): its
    own row's (a rotation's rows are not graded); "error" for every section of a file that did not load,
    "skipped" where a section has no row."""
    own = {r["key"]: r["verdict"] for r in entry["rows"]}
    failed = any(r["section"] == "setup" and r["verdict"] == "error" for r in entry["rows"])
    chosen = entry["params"]["sections"]
    return {s: own.get(s, "error" if failed else "skipped") for s in points["points"] if not chosen or s in chosen}


def score(entry: dict, points: dict) -> tuple[float, float]:
    """(points earned, points possible) by the rubric."""
    shares = verdicts(entry, points)
    got = sum(points["points"][s] * points["verdicts"].get(v, 0.0) for s, v in shares.items())
    return round(got, 2), sum(points["points"][s] for s in shares)


def read(folder: Path) -> dict | None:
    """A submission's grade.json, None where there is none (or it is unreadable: it is made again)."""
    try:
        return json.loads((folder / GRADE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def record(entry: dict, folder: Path, points: dict, gradescope: bool) -> None:
    """grade.json, and with ``gradescope`` Gradescope's results.json (a test per section, its score and line)."""
    got, most = score(entry, points)
    entry.update(points=got, max_points=most)
    atomic_write_text(folder / GRADE, json.dumps(entry, indent=1) + "\n")
    if gradescope:
        rows = {r["key"]: r for r in entry["rows"]}
        tests = [{"name": section, "score": points["points"][section] * points["verdicts"].get(v, 0.0),
                  "max_score": points["points"][section], "status": "passed" if BADGES.get(v) == "pass" else "failed",
                  "output": f"{v}: {rows[section]['figures']}" if section in rows else v}
                 for section, v in verdicts(entry, points).items()]
        setup = [r["figures"] for r in entry["rows"] if r["section"] == "setup"]
        results = {"score": got, "execution_time": entry["seconds"], "tests": tests,
                   "output": "\n".join(setup) or f"check-impl {entry['version']}"}
        atomic_write_text(folder / GRADESCOPE, json.dumps(results, indent=1) + "\n")


def write(grades: Sequence[dict], out: Path, points: dict, backend: str) -> None:
    """OUT/grades.csv and OUT/index.html for the class."""
    sections = list(verdicts(grades[0], points)) if grades else []
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["submission", "file", *sections, "points", "max_points", "error"])
    for g in grades:
        got, most = score(g, points)
        raised = next((r["figures"] for r in g["rows"] if r["verdict"] == "error"), "")
        writer.writerow([g["name"], g["file"], *verdicts(g, points).values(), got, most, raised])
    atomic_write_text(out / "grades.csv", table.getvalue())
    atomic_write_text(out / "index.html", _page(grades, points, sections, backend))


def _page(grades: Sequence[dict], points: dict, sections: list[str], backend: str) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("harness.report", "templates"), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    rows = [{**g, "verdicts": verdicts(g, points), "score": score(g, points),
             "raised": [r for r in g["rows"] if r["verdict"] == "error"]} for g in grades]
    counts = {s: Counter(r["verdicts"][s] for r in rows) for s in sections}
    kinds = [v for v in points["verdicts"] if any(counts[s][v] for s in sections)]
    return env.get_template("class.html.j2").render(rows=rows, sections=sections, counts=counts, kinds=kinds,
                                                    badges=BADGES, backend=backend)
