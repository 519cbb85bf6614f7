"""Laying a case out in the report: each section's ``layout`` (written next to its run function, in
harness/sections/part_a.py and part_b.py, from the image names that function writes) fills
`harness.layout.Rows` of captioned pictures, as the writeups lay them out. Any image a layout does not
place is shown under "other outputs", so nothing a case wrote is hidden (and the reproductions fail on
such an image)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from harness.layout import Assets, Row, Rows
from harness.report.cases import Case


def layout(case: Case, assets: Assets) -> list[Row]:
    """The case's rows, in its section's layout, then whatever images it wrote that the layout did not place."""
    r, rest = _laid_out(case, assets)
    r.row("other outputs", [assets.picture(case, name, name.rsplit(".", 1)[0]) for name in rest])
    return r.rows


def unplaced_images(case: Case) -> list[str]:
    """The images (PNG, GIF) a saved case wrote that its section's layout does not place: a renamed image
    the layout still looks for under its old name (the reproductions assert there are none)."""
    with tempfile.TemporaryDirectory() as tmp:
        return _laid_out(case, Assets(Path(tmp)))[1]


def _laid_out(case: Case, assets: Assets) -> tuple[Rows, list[str]]:
    r = Rows(case, assets)
    if case.section.layout is not None:
        case.section.layout(r)
    return r, sorted(p.name for p in case.folder.iterdir() if p.suffix in (".png", ".gif") and p.name not in r.used)
