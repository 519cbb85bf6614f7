"""The cases on disk: every ``<root>/<section>/<backend>/metrics.json`` of a registered section, with
its golden verdict (golden.json) and its relations, in the registry's (the writeups') order."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import BadValue, HarnessError
from harness.sections import SECTIONS, Section


@dataclass
class Case:
    """One section run on one backend, as saved by ``save_outputs`` (and ``record_verdict``)."""

    section: Section
    backend: str
    folder: Path
    metrics: dict[str, float]
    meta: dict
    verdict: dict | None = None  # golden.json; None when the case had no golden
    relations: list[tuple[str, bool]] = field(default_factory=list)
    run: dict = field(default_factory=dict)  # device, threads, versions, date (metrics.json "run")

    @property
    def anchor(self) -> str:
        """The HTML id of the case: section and backend, e.g. ``A1-7-2--tiny-if``."""
        return f"{self.section.id.replace('.', '-')}--{self.backend}"

    def has(self, name: str) -> bool:
        return (self.folder / name).exists()


def find_cases(root: str | Path, backends: list[str] | None = None) -> list[Case]:
    """The saved cases under ``root`` (optionally only ``backends``), sections in registry order and each
    section's backends in its own order; BadValue naming the fix when there are none."""
    root = Path(root)
    cases = []
    for section in SECTIONS.values():
        folder = root / section.id
        found = sorted(p.name for p in folder.iterdir() if (p / "metrics.json").is_file()) if folder.is_dir() else []
        order = {b: i for i, b in enumerate(section.backends)}
        for backend in sorted(found, key=lambda b: (order.get(b, len(order)), b)):
            if backends is None or backend in backends:
                cases.append(load_case(section, backend, folder / backend))
    if not cases:
        only = f" for backend(s) {', '.join(backends)}" if backends else ""
        raise BadValue(f"no outputs under {root}/{only}: run `python -m harness run all --out {root}` first")
    return cases


def load_case(section: Section, backend: str, folder: Path) -> Case:
    """The case saved in ``folder``; HarnessError naming the fix when its files are unreadable."""
    try:
        record = json.loads((folder / "metrics.json").read_text())
        verdict = json.loads((folder / "golden.json").read_text()) if (folder / "golden.json").exists() else None
    except (json.JSONDecodeError, OSError) as e:
        raise HarnessError(f"unreadable outputs in {folder} ({e}): run that case again") from None
    metrics = record["metrics"]
    relations = [(r.text, _holds(r, metrics)) for r in section.relations if r.applies_to(backend)]
    return Case(section, backend, folder, metrics, record["meta"], verdict, relations, record.get("run", {}))


def _holds(relation, metrics: dict[str, float]) -> bool:
    try:
        return bool(relation.holds(metrics))
    except KeyError:
        return False
